"""Standard Webhooks signatures (https://www.standardwebhooks.com): secrets and headers.

A secret is ``whsec_`` followed by the base64 of 32 random bytes; the HMAC key is those bytes.
Each request carries ``webhook-id`` (the same on every retry of one delivery, so receivers can
drop duplicates), ``webhook-timestamp`` (Unix seconds of this attempt; receivers refuse stale
ones) and ``webhook-signature``: ``v1,`` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
During a secret rotation's overlap the header holds one such signature per secret, separated by
spaces, the newest first: a receiver verifying with either secret accepts the request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 32


class InvalidSecretError(ValueError):
    """The string is not a ``whsec_`` secret this module could have generated."""


def generate_secret() -> str:
    """A new random signing secret, in the form receivers paste into their verifier."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecretError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise InvalidSecretError("a webhook secret is base64 after its prefix") from exc
    if not key:
        raise InvalidSecretError("a webhook secret must not be empty")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for ``body`` sent as ``message_id`` at ``timestamp``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(
    secret: str,
    message_id: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    also: Sequence[str] = (),
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (timestamp: now unless given).

    ``also``: more secrets to sign with (a rotated secret still within its overlap); their
    signatures follow ``secret``'s in ``webhook-signature``, space-separated.
    """
    when = int(time.time()) if timestamp is None else timestamp
    signatures = [sign(key, message_id, when, body) for key in (secret, *also)]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(when),
        "webhook-signature": " ".join(signatures),
    }
