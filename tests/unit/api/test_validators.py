"""The patterns the OpenAPI document states say exactly what the server's checks accept."""

from __future__ import annotations

import re

import pytest

from herald_api.http.preconditions import ENTITY_TAGS_PATTERN, if_match_fails
from herald_api.http.problems import Problem
from herald_api.idempotency import KEY_PATTERN, validate_key
from herald_api.validators import NO_NUL_PATTERN, NOT_BLANK_PATTERN, no_nul, not_blank
from herald_api.webhooks.schemas import subscribable_patterns
from herald_shared.webhooks.matching import InvalidPatternError, check_pattern

SPACES = [chr(c) for c in range(0x3100) if chr(c).isspace()]
OTHERS = ["a", "\x00", "\x1b", "\u200b", "\ufeff", "é", "\U0001f600", "\x7f"]


def _passes(check: object, value: str) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except (ValueError, Problem):
        return False
    return True


@pytest.mark.parametrize(
    "text",
    ["", *SPACES, *OTHERS, *(s + "x" + s for s in SPACES), "a\x00", " \x00 ", "\n\nx\t"],
)
def test_the_not_blank_pattern_is_the_title_validators(text: str) -> None:
    valid = _passes(no_nul, text) and _passes(not_blank, text)
    assert (re.fullmatch(NOT_BLANK_PATTERN, text) is not None) == valid


@pytest.mark.parametrize("text", ["", "abc", "a\x00b", "\x00", *SPACES])
def test_the_no_nul_pattern_is_the_no_nul_validator(text: str) -> None:
    assert (re.fullmatch(NO_NUL_PATTERN, text) is not None) == _passes(no_nul, text)


@pytest.mark.parametrize(
    "key",
    ["a", "a b", " a", "a ", "x" * 255, "x" * 256, "", "\t", "é", "a\x7f", "~!@#"],
)
def test_the_idempotency_key_pattern_is_the_servers(key: str) -> None:
    assert (re.fullmatch(KEY_PATTERN, key) is not None) == _passes(validate_key, key)


@pytest.mark.parametrize(
    "header",
    ['"1"', 'W/"1"', '"1", "2-e"', '"1" ,W/"x"', "*", '"a,b"', '"1"x', "1", '""', '"1",', "null"],
)
def test_the_entity_tag_pattern_is_the_servers(header: str) -> None:
    assert (re.fullmatch(ENTITY_TAGS_PATTERN, header) is not None) == _passes(
        lambda value: if_match_fails(value, 1), header
    )


def test_the_event_pattern_enum_is_what_check_pattern_accepts() -> None:
    enum = subscribable_patterns()
    for pattern in enum:
        assert check_pattern(pattern) == pattern
    for pattern in ("post", "post.", "post.created.*", "webhook.disabled.*", "x.*", "**"):
        with pytest.raises(InvalidPatternError):
            check_pattern(pattern)
