"""A real API process for the contract tests, on a database of its own.

What a fuzzer writes (hundreds of posts, webhooks to whatever URLs pass the registration checks,
their events) must never reach the rest of the run: the API gets its own migrated database,
dropped at the end; its relay is off, so no event leaves that database for a broker where a later
test's worker could act on it (and call those webhooks); its rate-limit counters have a Redis
prefix of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import pytest

from herald_shared import accounts
from herald_shared.apikeys import Role
from tests.support.databases import own_database
from tests.support.services import Processes


@dataclass(frozen=True, slots=True)
class ContractApi:
    base_url: str
    #: A member key of an account of the API's own database.
    token: str


StartContractApi = Callable[[str, Mapping[str, str]], Awaitable[ContractApi]]


@pytest.fixture
async def start_contract_api(
    processes: Processes, redis_prefix: str
) -> AsyncIterator[StartContractApi]:
    """Start the API (``label`` names its counters, ``env`` adds settings) on a database of its
    own; stopped, and its database dropped, when the test ends."""
    async with AsyncExitStack() as stack:

        async def start(label: str, env: Mapping[str, str]) -> ContractApi:
            dsn = await stack.enter_async_context(own_database(label))
            service, base_url = await processes.start_api(
                {
                    "HERALD_DB_DSN": dsn,
                    "HERALD_RELAY_ENABLED": "false",
                    "HERALD_REDIS_KEY_PREFIX": f"{redis_prefix}{label}:",
                    "HERALD_LOG_LEVEL": "WARNING",
                    **env,
                }
            )
            stack.push_async_callback(service.stop)
            conn = await asyncpg.connect(dsn)
            try:
                key = await accounts.create_key(conn, f"{label}-account", Role.MEMBER)
            finally:
                await conn.close()
            return ContractApi(base_url, key.token)

        yield start
