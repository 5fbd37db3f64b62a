"""Standard Webhooks signing, checked against the independent ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from herald_shared.webhooks.signing import (
    InvalidSecretError,
    generate_secret,
    secret_key,
    sign,
    signature_headers,
)

BODY = b'{"id":"3f1c","type":"post.created","data":{"title":"Caf\xc3\xa9"}}'


def test_a_secret_is_whsec_and_the_base64_of_32_random_bytes() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_the_receiver_library_verifies_our_headers() -> None:
    secret = generate_secret()
    headers = signature_headers(secret, "msg_2b1c", BODY)
    assert headers["webhook-id"] == "msg_2b1c"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert Webhook(secret).verify(BODY, headers)["data"]["title"] == "Café"


def test_our_signature_is_the_receiver_librarys() -> None:
    secret = generate_secret()
    at = 1_700_000_000
    expected = Webhook(secret).sign("msg_1", datetime.fromtimestamp(at, UTC), BODY.decode())
    assert sign(secret, "msg_1", at, BODY) == expected
    assert expected.startswith("v1,")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "webhook-id": "msg_other"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: ({**h, "webhook-signature": "v1," + "A" * 44}, b),
    ],
)
def test_any_change_breaks_the_signature(tamper) -> None:
    secret = generate_secret()
    headers, body = tamper(signature_headers(secret, "msg_1", BODY), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_another_secret_does_not_verify_and_stale_timestamps_are_refused() -> None:
    secret = generate_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, signature_headers(secret, "msg_1", BODY))
    stale = signature_headers(secret, "msg_1", BODY, timestamp=int(time.time()) - 600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, stale)


@pytest.mark.parametrize("bad", ["", "whsec_", "sk_abc", "whsec_not base64!", "whsec_@@@@"])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSecretError):
        secret_key(bad)


def test_during_a_rotation_each_secret_signs_and_either_verifies() -> None:
    new, old, stranger = generate_secret(), generate_secret(), generate_secret()
    headers = signature_headers(new, "msg_1", BODY, also=[old])
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    at = int(headers["webhook-timestamp"])
    assert signatures == [sign(new, "msg_1", at, BODY), sign(old, "msg_1", at, BODY)]
    for secret in (new, old):
        assert Webhook(secret).verify(BODY, headers)["type"] == "post.created"
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(BODY, headers)
    # Without another secret, one signature only.
    assert " " not in signature_headers(new, "msg_1", BODY)["webhook-signature"]
