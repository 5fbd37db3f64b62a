from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from herald_api.paging.cursors import CursorCodec, InvalidCursorError, Position, filter_fingerprint

SECRET = "unit-test-secret"
FINGERPRINT = filter_fingerprint(None, "news", "published")
POSITION = Position(datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC), uuid.uuid4())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signed(payload: bytes, secret: str = SECRET) -> str:
    """A cursor carrying ``payload`` with a valid MAC, as only the server could make it."""
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(mac)}"


@pytest.fixture
def codec() -> CursorCodec:
    return CursorCodec(SECRET)


def test_round_trip_returns_the_position(codec: CursorCodec) -> None:
    cursor = codec.encode(POSITION, FINGERPRINT)
    assert codec.decode(cursor, FINGERPRINT) == POSITION


def test_round_trip_keeps_the_offset_instant(codec: CursorCodec) -> None:
    position = Position(
        datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=-5))), uuid.uuid4()
    )
    decoded = codec.decode(codec.encode(position, FINGERPRINT), FINGERPRINT)
    assert decoded.created_at == position.created_at
    assert decoded.created_at.utcoffset() == timedelta(hours=-5)


def test_cursor_is_url_safe_and_opaque(codec: CursorCodec) -> None:
    cursor = codec.encode(POSITION, FINGERPRINT)
    assert all(c.isalnum() or c in "-_." for c in cursor)
    assert str(POSITION.id) not in cursor


def test_tampered_payload_is_refused(codec: CursorCodec) -> None:
    payload, mac = codec.encode(POSITION, FINGERPRINT).split(".")
    data = json.loads(_unb64(payload))
    data["i"] = str(uuid.uuid4())
    forged = _b64(json.dumps(data, separators=(",", ":")).encode())
    with pytest.raises(InvalidCursorError, match="not valid"):
        codec.decode(f"{forged}.{mac}", FINGERPRINT)


def test_tampered_mac_is_refused(codec: CursorCodec) -> None:
    payload, mac = codec.encode(POSITION, FINGERPRINT).split(".")
    raw = bytearray(_unb64(mac))
    raw[0] ^= 0x01
    with pytest.raises(InvalidCursorError, match="not valid"):
        codec.decode(f"{payload}.{_b64(bytes(raw))}", FINGERPRINT)


def test_truncated_mac_is_refused(codec: CursorCodec) -> None:
    payload, mac = codec.encode(POSITION, FINGERPRINT).split(".")
    with pytest.raises(InvalidCursorError):
        codec.decode(f"{payload}.{mac[:8]}", FINGERPRINT)


def test_cursor_signed_with_another_secret_is_refused(codec: CursorCodec) -> None:
    cursor = CursorCodec("another-secret").encode(POSITION, FINGERPRINT)
    with pytest.raises(InvalidCursorError, match="not valid"):
        codec.decode(cursor, FINGERPRINT)


def test_cursor_for_other_filters_is_refused(codec: CursorCodec) -> None:
    cursor = codec.encode(POSITION, FINGERPRINT)
    other = filter_fingerprint(None, "news", "draft")
    with pytest.raises(InvalidCursorError, match="different query"):
        codec.decode(cursor, other)


def test_fingerprint_depends_on_every_filter() -> None:
    author = uuid.uuid4()
    fingerprints = {
        filter_fingerprint(None, None, None),
        filter_fingerprint(author, None, None),
        filter_fingerprint(None, "news", None),
        filter_fingerprint(None, None, "draft"),
        filter_fingerprint(None, None, "published"),
        filter_fingerprint(author, "news", "draft"),
    }
    assert len(fingerprints) == 6
    assert filter_fingerprint(author, "news", None) == filter_fingerprint(author, "news", None)


def test_fingerprint_tells_a_missing_filter_from_the_string_none() -> None:
    assert filter_fingerprint(None, None, None) != filter_fingerprint(None, "None", None)


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("no-dot-at-all", id="no-separator"),
        pytest.param("a.b.c", id="two-separators"),
        pytest.param("a", id="one-char"),
        pytest.param("%%%.%%%", id="not-base64"),
        pytest.param("abcde.abcde", id="bad-padding"),
        pytest.param("é.é", id="non-ascii"),
        pytest.param("x" * 600 + "." + "y", id="too-long"),
        pytest.param(".", id="only-separator"),
    ],
)
def test_garbage_is_refused(codec: CursorCodec, cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        codec.decode(cursor, FINGERPRINT)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[1, 2]", id="json-array"),
        pytest.param(b'"text"', id="json-string"),
        pytest.param(b"null", id="json-null"),
        pytest.param(b'{"i": "00000000-0000-0000-0000-000000000000", "f": "x"}', id="no-time"),
        pytest.param(b'{"c": "2026-01-01T00:00:00+00:00", "f": "x"}', id="no-id"),
        pytest.param(
            b'{"c": "2026-01-01T00:00:00+00:00", "i": "00000000-0000-0000-0000-000000000000"}',
            id="no-fingerprint",
        ),
        pytest.param(
            b'{"c": 12, "i": "00000000-0000-0000-0000-000000000000", "f": "x"}', id="time-int"
        ),
        pytest.param(
            b'{"c": "yesterday", "i": "00000000-0000-0000-0000-000000000000", "f": "x"}',
            id="time-word",
        ),
        pytest.param(b'{"c": "2026-01-01T00:00:00+00:00", "i": "nope", "f": "x"}', id="bad-uuid"),
        pytest.param(b'{"c": "2026-01-01T00:00:00+00:00", "i": 7, "f": "x"}', id="uuid-int"),
    ],
)
def test_signed_but_malformed_payload_is_refused(codec: CursorCodec, payload: bytes) -> None:
    with pytest.raises(InvalidCursorError):
        codec.decode(_signed(payload), FINGERPRINT)


def test_naive_timestamp_is_refused(codec: CursorCodec) -> None:
    payload = json.dumps(
        {"c": "2026-01-01T00:00:00", "i": str(uuid.uuid4()), "f": FINGERPRINT}
    ).encode()
    with pytest.raises(InvalidCursorError):
        codec.decode(_signed(payload), FINGERPRINT)


def test_naive_position_cannot_round_trip(codec: CursorCodec) -> None:
    naive = Position(datetime(2026, 1, 1), uuid.uuid4())
    with pytest.raises(InvalidCursorError):
        codec.decode(codec.encode(naive, FINGERPRINT), FINGERPRINT)
