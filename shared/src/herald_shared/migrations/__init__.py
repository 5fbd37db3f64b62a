"""Alembic migration scripts for Herald's PostgreSQL schema (applied by ``herald migrate``)."""
