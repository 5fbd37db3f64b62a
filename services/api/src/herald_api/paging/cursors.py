"""Opaque, tamper-evident keyset cursors.

A cursor is ``base64url(json) "." base64url(hmac)``: the position (created_at, id) of the last
item served and a fingerprint of the query's filters, signed with the server's cursor secret.
A cursor that was altered, or that belongs to another query, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

_MAC_BYTES = 16
MAX_CURSOR_CHARS = 512
#: The shape of every cursor: two base64url parts joined by a dot.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
_CURSOR_RE = re.compile(CURSOR_PATTERN)


class InvalidCursorError(ValueError):
    """The cursor is malformed, was tampered with, or belongs to another query."""


@dataclass(frozen=True, slots=True)
class Position:
    created_at: datetime
    id: uuid.UUID
    #: The search rank of the item, for pages ordered by relevance first.
    rank: float | None = None


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def filter_fingerprint(*parts: object) -> str:
    """A short digest of the filters a cursor is valid for."""
    canonical = json.dumps([None if p is None else str(p) for p in parts])
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class CursorCodec:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, position: Position, fingerprint: str) -> str:
        fields: dict[str, object] = {
            "c": position.created_at.isoformat(),
            "i": str(position.id),
            "f": fingerprint,
        }
        if position.rank is not None:
            fields["r"] = position.rank
        payload = json.dumps(fields, separators=(",", ":")).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def decode(self, cursor: str, fingerprint: str) -> Position:
        if len(cursor) > MAX_CURSOR_CHARS or _CURSOR_RE.fullmatch(cursor) is None:
            raise InvalidCursorError("The cursor is malformed.")
        encoded_payload, encoded_mac = cursor.split(".")
        try:
            payload = _b64decode(encoded_payload)
            mac = _b64decode(encoded_mac)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursorError("The cursor is malformed.") from exc
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidCursorError("The cursor is not valid.")
        try:
            data = json.loads(payload)
            created_at, post_id, cursor_fingerprint = data["c"], data["i"], data["f"]
            if not all(isinstance(v, str) for v in (created_at, post_id, cursor_fingerprint)):
                raise TypeError("cursor fields must be strings")
            rank = data.get("r")
            if rank is not None and not isinstance(rank, float | int):
                raise TypeError("the rank must be a number")
            position = Position(
                datetime.fromisoformat(created_at),
                uuid.UUID(post_id),
                None if rank is None else float(rank),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidCursorError("The cursor is malformed.") from exc
        if cursor_fingerprint != fingerprint or position.created_at.tzinfo is None:
            raise InvalidCursorError("The cursor belongs to a different query.")
        return position
