from __future__ import annotations

import pytest

from herald_api.http.problems import Problem
from herald_api.idempotency import StoredResponse, decide, request_fingerprint, validate_key

BODY = {"title": "Hello", "body": "World", "tags": ["a", "b"], "status": "draft"}


def test_fingerprint_ignores_key_order() -> None:
    reordered = dict(reversed(list(BODY.items())))
    assert list(reordered) != list(BODY)
    assert request_fingerprint("POST", "/v1/posts", reordered) == request_fingerprint(
        "POST", "/v1/posts", BODY
    )


def test_fingerprint_ignores_nested_key_order() -> None:
    one = {"outer": {"a": 1, "b": 2}}
    other = {"outer": {"b": 2, "a": 1}}
    assert request_fingerprint("POST", "/p", one) == request_fingerprint("POST", "/p", other)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(BODY | {"title": "Hello!"}, id="other-title"),
        pytest.param(BODY | {"tags": ["b", "a"]}, id="tag-order"),
        pytest.param(BODY | {"status": "published"}, id="other-status"),
        pytest.param({k: v for k, v in BODY.items() if k != "tags"}, id="field-missing"),
    ],
)
def test_fingerprint_differs_for_a_different_body(changed: dict[str, object]) -> None:
    assert request_fingerprint("POST", "/v1/posts", changed) != request_fingerprint(
        "POST", "/v1/posts", BODY
    )


def test_fingerprint_covers_method_and_path() -> None:
    original = request_fingerprint("POST", "/v1/posts", BODY)
    assert request_fingerprint("PATCH", "/v1/posts", BODY) != original
    assert request_fingerprint("POST", "/v1/other", BODY) != original


def test_fingerprint_is_deterministic_bytes() -> None:
    first = request_fingerprint("POST", "/v1/posts", BODY)
    assert isinstance(first, bytes)
    assert len(first) == 32
    assert request_fingerprint("POST", "/v1/posts", dict(BODY)) == first


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k", id="one-char"),
        pytest.param("a" * 255, id="255-chars"),
        pytest.param("2f1d9c1e-create-post-42", id="typical"),
        pytest.param("with space and !#$%&'()*+,./:;<=>?@[]^_`{|}~", id="printable-punctuation"),
    ],
)
def test_valid_keys_are_returned(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 256, id="256-chars"),
        pytest.param("ключ", id="non-ascii"),
        pytest.param("tab\there", id="control-char"),
        pytest.param("nul\x00", id="nul"),
        pytest.param("del\x7f", id="del"),
        pytest.param("new\nline", id="newline"),
    ],
)
def test_invalid_keys_are_a_400_problem(key: str) -> None:
    with pytest.raises(Problem) as caught:
        validate_key(key)
    assert caught.value.status == 400
    assert caught.value.type_ == "invalid-idempotency-key"


def _result(**columns: object) -> dict[str, object]:
    """A one-statement create's result row."""
    row: dict[str, object] = {
        "locked": True,
        "claimed": False,
        "request_hash": None,
        "response_status": None,
        "response_body": None,
        "response_headers": None,
    }
    return row | columns


FINGERPRINT = request_fingerprint("POST", "/v1/posts", BODY)


def test_a_claimed_key_means_this_statement_created() -> None:
    assert decide(_result(claimed=True), FINGERPRINT) is None


def test_a_key_locked_by_another_request_is_in_flight() -> None:
    with pytest.raises(Problem) as raised:
        decide(_result(locked=False), FINGERPRINT)
    assert raised.value.status == 409
    assert raised.value.headers["Retry-After"] == "1"


def test_a_key_neither_claimed_nor_stored_in_view_is_in_flight() -> None:
    """The record committed after the statement's snapshot: its request counts as running."""
    with pytest.raises(Problem) as raised:
        decide(_result(), FINGERPRINT)
    assert raised.value.status == 409


def test_a_stored_record_of_another_request_is_422() -> None:
    other = request_fingerprint("POST", "/v1/posts", BODY | {"title": "Other"})
    stored = _result(
        request_hash=other, response_status=201, response_body=b"{}", response_headers="{}"
    )
    with pytest.raises(Problem) as raised:
        decide(stored, FINGERPRINT)
    assert raised.value.status == 422


def test_a_stored_record_of_the_same_request_replays() -> None:
    stored = _result(
        request_hash=FINGERPRINT,
        response_status=201,
        response_body=b'{"id":"1"}',
        response_headers='{"Location": "/v1/posts/1"}',
    )
    replay = decide(stored, FINGERPRINT)
    assert replay == StoredResponse(201, b'{"id":"1"}', {"Location": "/v1/posts/1"})
