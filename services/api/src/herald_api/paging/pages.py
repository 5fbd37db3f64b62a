"""Pages of any list the API serves (posts, search results, webhooks, deliveries): the ``limit``
and ``cursor`` parameters, where a page starts, and the page a client gets.

A repository returns up to ``limit + 1`` rows, newest (or best ranked) first; the extra row only
says that another page exists, and the last row served becomes the next cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from herald_api.http.media import json_response
from herald_api.http.problems import Problem
from herald_api.paging.cursors import (
    CURSOR_PATTERN,
    MAX_CURSOR_CHARS,
    CursorCodec,
    InvalidCursorError,
    Position,
)

Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[
    str | None,
    Query(
        description="`next_cursor` of the previous page (signed: only cursors the server gave "
        "are accepted).",
        json_schema_extra={"pattern": CURSOR_PATTERN, "maxLength": MAX_CURSOR_CHARS},
    ),
]
NextCursor = Annotated[
    str | None, Field(description="Pass as `cursor` to get the next page; null on the last page.")
]


@dataclass(frozen=True, slots=True)
class Pager:
    """One page request: its cursors are signed for ``fingerprint`` (the query's filters).

    ``ranked`` pages (search) are ordered by rank first; their cursors carry the rank.
    """

    codec: CursorCodec
    fingerprint: str
    limit: int
    ranked: bool = False

    def start(self, cursor: str | None) -> Position | None:
        """Where the page starts: None for the first page; 400 ``invalid-cursor`` for a cursor
        that was altered or belongs to another query."""
        if cursor is None:
            return None
        try:
            position = self.codec.decode(cursor, self.fingerprint)
        except InvalidCursorError as exc:
            raise Problem(400, str(exc), type_="invalid-cursor") from None
        if self.ranked and position.rank is None:
            raise Problem(400, "The cursor does not belong to a search.", type_="invalid-cursor")
        return position

    def next_cursor(self, rows: Sequence[asyncpg.Record]) -> str | None:
        """The cursor after the last row served, or None when ``rows`` holds no extra row."""
        if len(rows) <= self.limit:
            return None
        last = rows[self.limit - 1]
        rank = last["rank"] if self.ranked else None
        return self.codec.encode(Position(last["created_at"], last["id"], rank), self.fingerprint)

    def response(self, page: type[BaseModel], rows: Sequence[asyncpg.Record]) -> Response:
        """``page`` (a model of ``items`` and ``next_cursor``) as the JSON response."""
        items = [dict(row) for row in rows[: self.limit]]
        return json_response(
            page.model_validate({"items": items, "next_cursor": self.next_cursor(rows)})
        )
