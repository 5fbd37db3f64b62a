"""Event-type patterns of webhook subscriptions."""

from __future__ import annotations

import pytest

from herald_shared.webhooks.matching import (
    InvalidPatternError,
    check_pattern,
    matches_any,
    pattern_matches,
)


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*", "post.created", True),
        ("*", "webhook.disabled", True),
        ("post.*", "post.created", True),
        ("post.*", "post.enriched", True),
        ("post.*", "webhook.disabled", False),
        ("post.*", "postal.created", False),
        ("post.created", "post.created", True),
        ("post.created", "post.updated", False),
        ("webhook.*", "webhook.disabled", True),
    ],
)
def test_patterns(pattern: str, event_type: str, expected: bool) -> None:
    assert pattern_matches(pattern, event_type) is expected


def test_any_of_several() -> None:
    assert matches_any(["post.created", "webhook.*"], "webhook.disabled")
    assert not matches_any(["post.created", "webhook.*"], "post.deleted")
    assert not matches_any([], "post.deleted")


@pytest.mark.parametrize("pattern", ["*", "post.*", "post.created", "webhook.disabled"])
def test_known_patterns_are_accepted(pattern: str) -> None:
    assert check_pattern(pattern) == pattern


@pytest.mark.parametrize(
    "pattern", ["", "post", "post.**", "*.created", "Post.created", "post.", "psot.*", "post.made"]
)
def test_malformed_or_unmatched_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidPatternError):
        check_pattern(pattern)
