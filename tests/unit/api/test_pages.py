"""The pager every list shares: where a page starts, the next cursor, the page body."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import pytest
from pydantic import BaseModel

from herald_api.http.problems import Problem
from herald_api.paging.cursors import CursorCodec, Position
from herald_api.paging.pages import NextCursor, Pager

CODEC = CursorCodec("a cursor secret for tests")
START = datetime(2026, 1, 1, tzinfo=UTC)


class Item(BaseModel):
    id: uuid.UUID
    created_at: datetime


class ItemPage(BaseModel):
    items: list[Item]
    next_cursor: NextCursor


def _rows(count: int, *, ranked: bool = False) -> Sequence[asyncpg.Record]:
    """Rows as a repository returns them, newest first (dicts stand in for records)."""
    rows: list[dict[str, Any]] = []
    for n in range(count):
        row: dict[str, Any] = {"id": uuid.uuid4(), "created_at": START - timedelta(minutes=n)}
        if ranked:
            row["rank"] = 1.0 / (n + 1)
        rows.append(row)
    return cast(Sequence[asyncpg.Record], rows)


def test_the_first_page_starts_at_the_top() -> None:
    assert Pager(CODEC, "filters", 2).start(None) is None


def test_a_page_starts_after_the_last_row_served() -> None:
    rows = _rows(3)
    pager = Pager(CODEC, "filters", 2)
    cursor = pager.next_cursor(rows)
    assert cursor is not None
    assert pager.start(cursor) == Position(rows[1]["created_at"], rows[1]["id"])


def test_there_is_no_next_page_without_an_extra_row() -> None:
    assert Pager(CODEC, "filters", 2).next_cursor(_rows(2)) is None
    assert Pager(CODEC, "filters", 2).next_cursor(_rows(0)) is None


def test_a_ranked_cursor_carries_the_rank() -> None:
    rows = _rows(3, ranked=True)
    pager = Pager(CODEC, "search", 2, ranked=True)
    cursor = pager.next_cursor(rows)
    assert cursor is not None
    position = pager.start(cursor)
    assert position is not None
    assert position.rank == rows[1]["rank"]


@pytest.mark.parametrize(
    ("pager", "cursor"),
    [
        pytest.param(Pager(CODEC, "filters", 2), "abc.def", id="malformed"),
        pytest.param(
            Pager(CODEC, "other filters", 2),
            CODEC.encode(Position(START, uuid.uuid4()), "filters"),
            id="another-query",
        ),
        pytest.param(
            Pager(CODEC, "search", 2, ranked=True),
            CODEC.encode(Position(START, uuid.uuid4()), "search"),
            id="unranked-for-a-search",
        ),
    ],
)
def test_a_cursor_not_of_this_query_is_a_400(pager: Pager, cursor: str) -> None:
    with pytest.raises(Problem) as refused:
        pager.start(cursor)
    assert refused.value.status == 400
    assert refused.value.type_ == "invalid-cursor"


def test_the_page_holds_at_most_limit_items_and_the_cursor_to_the_rest() -> None:
    rows = _rows(3)
    pager = Pager(CODEC, "filters", 2)
    response = pager.response(ItemPage, rows)
    assert response.media_type == "application/json"
    page = json.loads(bytes(response.body))
    assert [item["id"] for item in page["items"]] == [str(row["id"]) for row in rows[:2]]
    assert page["next_cursor"] == pager.next_cursor(rows)
    last = pager.response(ItemPage, rows[:2])
    assert json.loads(bytes(last.body))["next_cursor"] is None
