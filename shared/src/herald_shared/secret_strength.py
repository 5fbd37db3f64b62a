"""Telling a generated secret from a placeholder: what production requires of its secrets.

A production secret is at least ``MIN_SECRET_BYTES`` random bytes, written as hex or base64
(standard or URL-safe, padding optional), as ``openssl rand -base64 32`` or
``python -c 'import secrets; print(secrets.token_urlsafe(32))'`` print them. Text that merely
has the length (``replace-with-64-random-characters``) is refused: it does not decode to enough
bytes, or its symbols are too few and too regular to have come from a random source, or its
bytes repeat (they compress), or it contains a word placeholders are made of. The thresholds
refuse a real random value with a probability below one in a billion.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

MIN_SECRET_BYTES = 32

_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]+={0,2}")
_PLACEHOLDER_WORDS = (
    "replace",
    "change",
    "example",
    "placeholder",
    "secret",
    "password",
    "dev-only",
)
#: Fewest distinct symbols a random encoding of ``MIN_SECRET_BYTES`` shows: 64 random hex digits
#: use about 16 of 16, 43 random base64 characters about 31 of 64.
_MIN_DISTINCT = {"hex": 10, "base64": 20}


def _decode(secret: str) -> tuple[str, bytes] | None:
    """(encoding, bytes) of a hex or base64 text, or None when it is neither."""
    if _HEX.fullmatch(secret) and len(secret) % 2 == 0:
        return "hex", bytes.fromhex(secret)
    if not _BASE64.fullmatch(secret):
        return None
    body = secret.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    altchars = b"-_" if ("-" in body or "_" in body) else b"+/"
    try:
        return "base64", base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def secret_weakness(secret: str) -> str | None:
    """Why ``secret`` is not fit for production, or None when it is."""
    lowered = secret.lower()
    for word in _PLACEHOLDER_WORDS:
        if word in lowered:
            return f"it contains {word!r}, as placeholders do"
    decoded = _decode(secret)
    if decoded is None:
        return "it is neither hex nor base64"
    encoding, raw = decoded
    if len(raw) < MIN_SECRET_BYTES:
        return f"it decodes to {len(raw)} bytes, fewer than {MIN_SECRET_BYTES}"
    if len(set(secret.rstrip("="))) < _MIN_DISTINCT[encoding]:
        return "its symbols are too few to be random"
    if len(zlib.compress(raw, 9)) < len(raw):
        return "it repeats itself (it compresses)"
    if encoding == "base64" and (secret.lower() == secret or secret.upper() == secret):
        return "it has letters of one case only, which random base64 never has"
    return None
