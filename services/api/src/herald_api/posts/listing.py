"""Lists of posts (the list and search): the filters a viewer may apply, narrowed to what the
viewer may see, and the plan of a list page (its pager, its query, its cache key)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from herald_api.access.keys import Principal
from herald_api.access.principals import Authenticated
from herald_api.lifespan import get_state
from herald_api.paging.cursors import Position, filter_fingerprint
from herald_api.paging.pages import Cursor, Limit, Pager
from herald_api.posts.reads import list_page_keys
from herald_api.posts.repository import ListQuery
from herald_api.posts.schemas import TAG_PATTERN, Status


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
    limit: Limit = 20,
    cursor: Cursor = None,
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


@dataclass(frozen=True, slots=True)
class ListPlan:
    """A page of the post list: None for ``query`` when nothing can match; ``cache_keys`` for a
    first page every viewer sees alike (see ``list_page_keys``)."""

    pager: Pager
    query: ListQuery | None
    cache_keys: tuple[str, ...]


async def plan_list(request: Request, principal: Authenticated, params: PageParamsDep) -> ListPlan:
    """The plan of a list page, for ``read_through_cache``; 400 for a cursor not of this list."""
    state = await get_state(request)
    pager = Pager(state.cursors, fingerprint_of(params), params.limit)
    query = visible_query(principal, params, pager.start(params.cursor))
    return ListPlan(
        pager, query, list_page_keys(state, query, pager.fingerprint, principal.account_id)
    )
