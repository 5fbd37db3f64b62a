from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pytest

from herald_shared.apikeys import (
    TOKEN_PREFIX,
    Role,
    generate_key,
    hash_token,
    parse_key_id,
    token_matches,
)


def test_generated_token_has_the_documented_shape() -> None:
    key = generate_key()
    assert re.fullmatch(r"hrld_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key.token), key.token
    assert key.token.startswith(f"{TOKEN_PREFIX}_{key.key_id}_")


def test_generated_keys_differ() -> None:
    keys = [generate_key() for _ in range(50)]
    assert len({k.token for k in keys}) == 50
    assert len({k.key_id for k in keys}) == 50


def test_generated_key_parses_back_to_its_id() -> None:
    key = generate_key()
    assert parse_key_id(key.token) == key.key_id


def test_generated_key_hash_is_the_sha256_of_the_token() -> None:
    key = generate_key()
    assert key.token_hash == hashlib.sha256(key.token.encode()).digest()
    assert key.token_hash == hash_token(key.token)
    assert key.token not in key.token_hash.hex()


def test_hash_is_deterministic_and_distinguishes_tokens() -> None:
    one, other = generate_key(), generate_key()
    assert hash_token(one.token) == hash_token(one.token)
    assert hash_token(one.token) != hash_token(other.token)


def test_token_matches_its_own_hash() -> None:
    key = generate_key()
    assert token_matches(key.token, key.token_hash)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="last-char"),
        pytest.param(lambda t: t[:-1], id="truncated"),
        pytest.param(lambda t: t + "x", id="extended"),
        pytest.param(lambda t: t.upper(), id="case"),
    ],
)
def test_near_miss_tokens_do_not_match(mutate: Callable[[str], str]) -> None:
    key = generate_key()
    assert not token_matches(mutate(key.token), key.token_hash)


def test_token_does_not_match_another_keys_hash() -> None:
    assert not token_matches(generate_key().token, generate_key().token_hash)


@pytest.mark.parametrize(
    "stored",
    [pytest.param(b"", id="empty"), pytest.param(b"\x00" * 16, id="short")],
)
def test_hash_of_another_length_does_not_match(stored: bytes) -> None:
    assert not token_matches(generate_key().token, stored)


def test_parse_accepts_the_bounds_of_the_format() -> None:
    assert parse_key_id(f"hrld_{'a' * 8}_{'s' * 40}") == "a" * 8
    assert parse_key_id(f"hrld_{'B' * 16}_{'-' * 64}") == "B" * 16


VALID_SECRET = "s" * 43


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param(f"hrlx_abcdef012345_{VALID_SECRET}", id="wrong-prefix"),
        pytest.param(f"HRLD_abcdef012345_{VALID_SECRET}", id="prefix-case"),
        pytest.param(f"abcdef012345_{VALID_SECRET}", id="no-prefix"),
        pytest.param(f"hrld_abc_{VALID_SECRET}", id="key-id-too-short"),
        pytest.param(f"hrld_{'a' * 17}_{VALID_SECRET}", id="key-id-too-long"),
        pytest.param(f"hrld_abc-def0123_{VALID_SECRET}", id="key-id-dash"),
        pytest.param("hrld_abcdef012345_" + "s" * 39, id="secret-too-short"),
        pytest.param("hrld_abcdef012345_" + "s" * 65, id="secret-too-long"),
        pytest.param("hrld_abcdef012345_" + "s" * 42 + "=", id="secret-padding"),
        pytest.param("hrld_abcdef012345_" + "é" * 43, id="secret-non-ascii"),
        pytest.param(f" hrld_abcdef012345_{VALID_SECRET}", id="leading-space"),
        pytest.param(f"hrld_abcdef012345_{VALID_SECRET} ", id="trailing-space"),
        pytest.param(f"hrld_abcdef012345_{VALID_SECRET}\n", id="trailing-newline"),
    ],
)
def test_parse_rejects_malformed_tokens(token: str) -> None:
    assert parse_key_id(token) is None


def test_roles_are_member_and_admin() -> None:
    assert {role.value for role in Role} == {"member", "admin"}
    assert Role("admin") is Role.ADMIN
