"""Fixtures of the deployment tests: an empty database of the test's own."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from herald_shared.settings import DatabaseSettings
from tests.support.databases import create_database, drop_database, dsn_for


@pytest.fixture
async def empty_database_dsn(database_dsn: str) -> AsyncIterator[str]:
    """A database of this test's own with no migration applied yet."""
    admin_dsn = os.environ.get("HERALD_DB_DSN", DatabaseSettings().dsn)
    name = f"herald_test_deploy_{uuid.uuid4().hex[:8]}"
    await create_database(admin_dsn, name)
    try:
        yield dsn_for(database_dsn, name)
    finally:
        await drop_database(admin_dsn, name)
