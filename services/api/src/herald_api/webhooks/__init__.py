"""Webhook subscriptions as the API manages them: request and response bodies, and their SQL
(always scoped to the owning account)."""
