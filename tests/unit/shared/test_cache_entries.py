"""The cache entry format: a small header (version, status, author) before the JSON bytes."""

from __future__ import annotations

import uuid

import pytest

from herald_shared.cache import CachedPost, CacheKeys, decode_entry, encode_entry

AUTHOR = uuid.UUID("8a0e3c1e-5b7a-4c59-9a51-0f6b1f1d2c3e")


def test_an_entry_round_trips_with_its_body_bytes_unchanged() -> None:
    # The body may itself contain the separator: only the first three are the header's.
    body = '{"title":"a|b|c","body":"ünï|cødé 🎉"}'.encode()
    raw = encode_entry(42, "draft", AUTHOR, body)
    assert raw.startswith(b"42|draft|" + str(AUTHOR).encode() + b"|")
    assert decode_entry(raw) == CachedPost(42, "draft", AUTHOR, body)


def test_an_empty_body_round_trips() -> None:
    assert decode_entry(encode_entry(1, "published", AUTHOR, b"")) == CachedPost(
        1, "published", AUTHOR, b""
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        b"1|published|" + str(AUTHOR).encode(),  # no body separator
        b"x|published|" + str(AUTHOR).encode() + b"|{}",  # version not a number
        b"1|published|not-a-uuid|{}",
        b"1|\xff\xfe|" + str(AUTHOR).encode() + b"|{}",  # status not UTF-8
    ],
)
def test_a_malformed_entry_decodes_to_none(raw: bytes) -> None:
    """A foreign or corrupted value is treated as a miss, never as an error."""
    assert decode_entry(raw) is None


def test_keys_share_the_prefix_and_the_post_id() -> None:
    keys = CacheKeys("run:1:")
    post_id = uuid.uuid4()
    assert keys.post(post_id) == f"run:1:{{post:{post_id}}}"
    assert keys.post_invalidated(post_id) == f"run:1:{{post:{post_id}}}:inv"
    assert keys.list_generation() == "run:1:{lists}:gen"
    assert keys.list_page("abc") == "run:1:{lists}:page:abc"
    assert keys.rate_limit("key:abc:r", 7) == "run:1:{rl:key:abc:r}:7"
