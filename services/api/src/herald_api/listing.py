"""What list and search pages share: the filters a viewer may apply, cursors, page assembly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Query
from fastapi.responses import Response

from herald_api.auth import Principal
from herald_api.cursors import CursorCodec, InvalidCursorError, Position, filter_fingerprint
from herald_api.problems import Problem
from herald_api.repositories import ListQuery
from herald_api.schemas import TAG_PATTERN, PostOut, PostPage, Status

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class PageParams:
    author: uuid.UUID | None
    tag: str | None
    status: Status | None
    limit: int
    cursor: str | None


async def page_params(
    author: Annotated[uuid.UUID | None, Query(description="Author's account id")] = None,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN)] = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> PageParams:
    return PageParams(author, tag, status, limit, cursor)


PageParamsDep = Annotated[PageParams, Depends(page_params)]


def visible_query(
    principal: Principal, params: PageParams, after: Position | None
) -> ListQuery | None:
    """Narrow the filters to what the principal may see; None when nothing can match."""
    limit, author, tag, status = params.limit, params.author, params.tag, params.status
    if principal.is_admin or status == "published":
        return ListQuery(limit, after, author, tag, status)
    me = principal.account_id
    if status == "draft":
        if author is not None and author != me:
            return None
        return ListQuery(limit, after, me, tag, "draft")
    if author == me:
        return ListQuery(limit, after, me, tag)
    if author is not None:
        return ListQuery(limit, after, author, tag, "published")
    return ListQuery(limit, after, tag=tag, visible_to=me)


def fingerprint_of(params: PageParams, *extra: object) -> str:
    return filter_fingerprint(params.author, params.tag, params.status, *extra)


def decode_cursor(codec: CursorCodec, params: PageParams, fingerprint: str) -> Position | None:
    if params.cursor is None:
        return None
    try:
        return codec.decode(params.cursor, fingerprint)
    except InvalidCursorError as exc:
        raise Problem(400, str(exc), type_="invalid-cursor") from None


def page_response(
    rows: list[asyncpg.Record], limit: int, codec: CursorCodec, fingerprint: str, *, ranked: bool
) -> Response:
    """The page as JSON bytes; ``rows`` holds up to ``limit + 1`` rows (the extra means more)."""
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        position = Position(last["created_at"], last["id"], last["rank"] if ranked else None)
        next_cursor = codec.encode(position, fingerprint)
    page = PostPage(items=[PostOut.model_validate(dict(r)) for r in rows], next_cursor=next_cursor)
    return Response(page.model_dump_json().encode(), media_type=JSON)
