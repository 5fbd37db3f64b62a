"""API key tokens: their format, generation and hashing (pure logic, no I/O).

A token reads ``hrld_<key id>_<secret>``. The key id is public (it names the key in logs and in
``herald keys revoke``); the secret is 256 bits from the OS CSPRNG. Only the SHA-256 of the
whole token is stored: with that much entropy a slow password hash would buy nothing, and a
fast one keeps authentication off the hot path's critical section.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

TOKEN_PREFIX = "hrld"  # noqa: S105 - a public marker, not a secret
_KEY_ID_BYTES = 6
_SECRET_BYTES = 32
_TOKEN_RE = re.compile(r"hrld_([A-Za-z0-9]{8,16})_([A-Za-z0-9_-]{40,64})")


class Role(StrEnum):
    MEMBER = "member"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: the token is shown once and never stored."""

    key_id: str
    token: str
    token_hash: bytes


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def generate_key() -> NewKey:
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return NewKey(key_id=key_id, token=token, token_hash=hash_token(token))


def parse_key_id(token: str) -> str | None:
    """The key id of a well-formed token, or None for anything else."""
    match = _TOKEN_RE.fullmatch(token)
    return match.group(1) if match else None


def token_matches(token: str, stored_hash: bytes) -> bool:
    """Compare in constant time, so timing does not reveal how much of a guess was right."""
    return hmac.compare_digest(hash_token(token), stored_hash)
