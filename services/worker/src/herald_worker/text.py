"""Pure text measures used by enrichment and stats: words, excerpt, reading time."""

from __future__ import annotations

import math
import re

WORDS_PER_MINUTE = 200
EXCERPT_CHARS = 200
_WORD = re.compile(r"\w+(?:['\u2019-]\w+)*")  # "don't", "don\u2019t" and "co-op" are one word
_SPACE = re.compile(r"\s+")


def count_words(text: str) -> int:
    return sum(1 for _ in _WORD.finditer(text))


def reading_time_seconds(words: int) -> int:
    """At 200 words a minute, rounded up to a whole second; 0 for an empty post."""
    return math.ceil(words * 60 / WORDS_PER_MINUTE)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` characters with whitespace folded, cut at a word boundary."""
    folded = _SPACE.sub(" ", text).strip()
    if len(folded) <= limit:
        return folded
    cut = folded[: limit + 1]
    boundary = cut.rfind(" ")
    return (cut[:boundary] if boundary > 0 else folded[:limit]).rstrip(" ,.;:") + "…"
