from __future__ import annotations

import pytest

from herald_api.http.preconditions import etag_for, if_match_fails, if_none_match_hits
from herald_api.http.problems import Problem

VERSION = 3
CURRENT = etag_for(VERSION)


def test_etag_is_the_quoted_version() -> None:
    assert etag_for(1) == '"1"'
    assert etag_for(42) == '"42"'


def test_etag_marks_an_enriched_version() -> None:
    assert etag_for(3, enriched=True) == '"3-e"'
    assert etag_for(3, enriched=True) != etag_for(3)


@pytest.mark.parametrize(
    ("header", "fails"),
    [
        pytest.param(None, False, id="absent"),
        pytest.param('"3"', False, id="current"),
        pytest.param('"2"', True, id="stale"),
        pytest.param(' "3" ', False, id="padded"),
        pytest.param('"1", "3"', False, id="list-containing-current"),
        pytest.param('"1","2"', True, id="list-without-current"),
        pytest.param('W/"3"', True, id="weak-never-matches-strongly"),
        pytest.param('W/"3", "3"', False, id="weak-and-strong"),
        pytest.param("*", False, id="star"),
        pytest.param(" * ", False, id="padded-star"),
        pytest.param('"03"', True, id="different-opaque-tag"),
        pytest.param('""', True, id="empty-tag"),
        pytest.param('"3-e"', False, id="enriched-tag-of-the-current-version"),
        pytest.param('"2-e"', True, id="enriched-tag-of-an-older-version"),
    ],
)
def test_if_match(header: str | None, fails: bool) -> None:
    assert if_match_fails(header, VERSION) is fails


@pytest.mark.parametrize(
    ("header", "hits"),
    [
        pytest.param(None, False, id="absent"),
        pytest.param('"3"', True, id="current"),
        pytest.param('W/"3"', True, id="weak-matches-weakly"),
        pytest.param('"2"', False, id="stale"),
        pytest.param('"1", W/"3"', True, id="list-containing-current"),
        pytest.param('"1", "2"', False, id="list-without-current"),
        pytest.param("*", True, id="star"),
    ],
)
def test_if_none_match(header: str | None, hits: bool) -> None:
    assert if_none_match_hits(header, CURRENT) is hits


MALFORMED = [
    pytest.param("3", id="unquoted"),
    pytest.param('"3', id="unterminated"),
    pytest.param('3"', id="no-opening-quote"),
    pytest.param('"3",', id="trailing-comma"),
    pytest.param('w/"3"', id="lowercase-weak-prefix"),
    pytest.param('W/ "3"', id="space-after-weak-prefix"),
    pytest.param('"a b"', id="space-inside"),
    pytest.param('"a"b"', id="quote-inside"),
    pytest.param('"3", *', id="star-in-list"),
    pytest.param('"é"', id="non-ascii"),
]


def test_an_empty_list_matches_nothing() -> None:
    # RFC 9110: If-Match = "*" / #entity-tag, and #rule lists may be empty.
    assert if_match_fails("", VERSION) is True
    assert if_none_match_hits("", CURRENT) is False


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_if_match_is_a_400_problem(header: str) -> None:
    with pytest.raises(Problem) as caught:
        if_match_fails(header, VERSION)
    assert caught.value.status == 400


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_if_none_match_is_a_400_problem(header: str) -> None:
    with pytest.raises(Problem) as caught:
        if_none_match_hits(header, CURRENT)
    assert caught.value.status == 400
