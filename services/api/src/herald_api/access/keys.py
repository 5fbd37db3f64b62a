"""Authentication by bearer API key, and the principal every route acts for.

Looked-up keys are trusted for a short, configurable time (``HERALD_API_AUTH_CACHE_TTL_SECONDS``)
so a hot read path does not touch PostgreSQL for every request; a revocation takes effect within
that time. Tokens found not to be valid are remembered in Redis (``access.unknown_keys``), and
``access.principals`` decides when a lookup may happen at all.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from herald_shared.accounts import StoredKey, find_key
from herald_shared.apikeys import Role, parse_key_id, token_matches
from herald_shared.db import Connection, Database

_CHALLENGE = 'Bearer realm="herald"'


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: uuid.UUID
    key_id: str
    role: Role
    #: Per-account overrides of the rate limits; None means the configured default.
    read_limit: int | None = None
    write_limit: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_see(self, author_id: uuid.UUID, status: str) -> bool:
        return status == "published" or self.is_admin or author_id == self.account_id

    def may_change(self, author_id: uuid.UUID) -> bool:
        return self.is_admin or author_id == self.account_id


class AuthenticationError(Exception):
    """The request carries no usable credentials; ``reason`` goes to the client."""

    def __init__(self, reason: str, error_code: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        challenge = _CHALLENGE if error_code is None else f'{_CHALLENGE}, error="{error_code}"'
        self.challenge = challenge


class KeyCache:
    """A bounded in-process map of key id → stored key, each entry trusted for ``ttl`` seconds."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, StoredKey]] = OrderedDict()

    def get(self, key_id: str) -> StoredKey | None:
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        stored_at, key = entry
        if time.monotonic() - stored_at > self._ttl:
            del self._entries[key_id]
            return None
        return key

    def put(self, key: StoredKey) -> None:
        if self._ttl <= 0:
            return
        self._entries[key.key_id] = (time.monotonic(), key)
        self._entries.move_to_end(key.key_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("An API key is required: Authorization: Bearer <key>.", None)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "Use the Bearer scheme: Authorization: Bearer <key>.", "invalid_request"
        )
    return token.strip()


@dataclass(frozen=True, slots=True)
class Credentials:
    """A well-formed bearer token and the key id it names (not yet verified)."""

    token: str
    key_id: str


def credentials_of(authorization: str | None) -> Credentials:
    """The request's credentials, read without any I/O; AuthenticationError when malformed."""
    token = bearer_token(authorization)
    key_id = parse_key_id(token)
    if key_id is None:
        raise AuthenticationError("The API key is malformed.", "invalid_token")
    return Credentials(token, key_id)


INVALID = "The API key is not valid."
REVOKED = "The API key has been revoked."


def verify(credentials: Credentials, stored: StoredKey | None) -> Principal:
    """The principal of ``credentials`` when ``stored`` is their key and it is in force."""
    if stored is None or not token_matches(credentials.token, stored.token_hash):
        raise AuthenticationError(INVALID, "invalid_token")
    if stored.revoked_at is not None:
        raise AuthenticationError(REVOKED, "invalid_token")
    return Principal(
        account_id=stored.account_id,
        key_id=stored.key_id,
        role=stored.role,
        read_limit=stored.read_limit,
        write_limit=stored.write_limit,
    )


class KeyLookup(Protocol):
    async def __call__(self, conn: Connection, key_id: str) -> StoredKey | None: ...


@dataclass(slots=True)
class KeyDirectory:
    """Where keys are found: keys looked up lately (``cache``), else PostgreSQL's primary."""

    db: Database
    cache: KeyCache
    #: The repository function that reads a key (a seam for counting lookups in tests).
    find: KeyLookup = find_key

    def cached(self, key_id: str) -> StoredKey | None:
        return self.cache.get(key_id)

    async def look_up(self, key_id: str) -> StoredKey | None:
        async with (
            self.db.writer() as conn
        ):  # keys are read from the primary: a new key works at once
            stored = await self.find(conn, key_id)
        if stored is not None:
            self.cache.put(stored)
        return stored
