"""Event-type patterns of webhook subscriptions: ``*``, an exact type, or a ``prefix.*``.

``post.*`` matches every type starting with ``post.`` (post.created, post.deleted, ...); ``*``
matches every type. A pattern must match at least one event type Herald publishes, so a typo is
refused when the subscription is made rather than silently never matching.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from herald_shared.events import EVENT_TYPES

MAX_PATTERNS = 20
_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$")


class InvalidPatternError(ValueError):
    """The pattern is malformed or matches no event type."""


def pattern_matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def matches_any(patterns: Iterable[str], event_type: str) -> bool:
    return any(pattern_matches(pattern, event_type) for pattern in patterns)


def check_pattern(pattern: str, known: Iterable[str] = EVENT_TYPES) -> str:
    """``pattern`` if it is well formed and matches a known event type; InvalidPatternError if
    not."""
    if not _PATTERN.match(pattern):
        raise InvalidPatternError(
            f"{pattern!r} is not an event type, '*', or a prefix followed by '.*'"
        )
    if not any(pattern_matches(pattern, event_type) for event_type in known):
        raise InvalidPatternError(f"{pattern!r} matches no event type Herald publishes")
    return pattern
