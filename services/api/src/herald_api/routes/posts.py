"""``/v1/posts``: create, read, update, delete and list posts.

Every write runs in one transaction that also inserts its event into the outbox and, when the
client sent an ``Idempotency-Key``, stores the response for replays.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header
from fastapi.responses import Response

from herald_api.access.keys import Principal
from herald_api.access.principals import CachedRead, WritePrincipal, read_through_cache
from herald_api.http.media import JSON
from herald_api.http.openapi import declared_headers, links_to
from herald_api.http.preconditions import (
    ENTITY_TAGS_PATTERN,
    etag_for,
    if_match_fails,
    if_none_match_hits,
)
from herald_api.http.problems import Problem, problem_responses
from herald_api.idempotency import IdempotencyKey, create_in_one_statement
from herald_api.lifespan import AppState, StateDep
from herald_api.posts.creation import post_creation
from herald_api.posts.listing import ListPlan, plan_list
from herald_api.posts.reads import (
    PostLookup,
    fill_list_page,
    invalidate_after_write,
    list_page,
    load_post,
    post_json,
    post_lookup,
)
from herald_api.posts.repository import (
    delete_post,
    is_enriched,
    list_posts,
    lock_post,
    update_post,
)
from herald_api.posts.schemas import PostCreate, PostOut, PostPage, PostPatch
from herald_api.replica import (
    commit_position,
    has_replica,
    primary_position,
    reading,
    remember_write,
    write_fence,
)
from herald_shared.cache import decode_entry, version_of
from herald_shared.events import EventEnvelope, PostDeleted, PostUpdated
from herald_shared.metrics import CACHE_LOOKUPS
from herald_shared.outbox import enqueue_event
from herald_shared.tracecontext import current_trace_headers

router = APIRouter(prefix="/v1/posts", tags=["posts"])

_NOT_FOUND = "No post with this id is visible to you."

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="Apply only if the post's ETag is still this one (or `*`).",
        json_schema_extra={"pattern": ENTITY_TAGS_PATTERN},
    ),
]
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description="Answer 304 if the post's ETag is one of these (or `*`).",
        json_schema_extra={"pattern": ENTITY_TAGS_PATTERN},
    ),
]
PostRead = Annotated[CachedRead[PostLookup], Depends(read_through_cache(post_lookup))]
PostListRead = Annotated[CachedRead[ListPlan], Depends(read_through_cache(plan_list))]


async def _after_write(
    state: AppState,
    principal: Principal,
    post_id: uuid.UUID,
    version: int,
    position: int | None = None,
    *,
    created: bool = False,
) -> None:
    """Before the answer: wake the relay, invalidate, and fence the writer's later reads
    (``position``: the primary's, read after the commit). A post just created has nothing
    cached to invalidate (list pages are the cache-invalidator's, decision 0039): only the
    fence is written for it."""
    state.events_committed()
    if created:
        await remember_write(state, principal.account_id, position)
        return
    await asyncio.gather(
        invalidate_after_write(state, post_id, version),
        remember_write(state, principal.account_id, position),
    )


def _snapshot(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "author_id": row["author_id"],
        "status": row["status"],
        "title": row["title"],
        "tags": list(row["tags"]),
        "published_at": row["published_at"],
    }


def _check_visible(principal: Principal, row: asyncpg.Record | None) -> asyncpg.Record:
    if row is None or not principal.may_see(row["author_id"], row["status"]):
        raise Problem(404, _NOT_FOUND)
    return row


def _check_changeable(principal: Principal, row: asyncpg.Record | None) -> asyncpg.Record:
    row = _check_visible(principal, row)
    if not principal.may_change(row["author_id"]):
        raise Problem(403, "Only the author or an admin may change this post.")
    return row


def _etag(row: asyncpg.Record) -> str:
    return etag_for(row["version"], is_enriched(row))


def _check_if_match(if_match: str | None, row: asyncpg.Record) -> None:
    current = _etag(row)
    if if_match_fails(if_match, row["version"]):
        raise Problem(
            412,
            f"The post has changed: its ETag is now {current}.",
            headers={"ETag": current},
        )


@router.post(
    "",
    status_code=201,
    response_model=PostOut,
    operation_id="create_post",
    summary="Create a post",
    responses={
        201: {
            "headers": declared_headers("Location", "ETag", optional=("Idempotent-Replayed",)),
            "links": links_to("post_id", "get_post", "update_post", "delete_post"),
        },
        **problem_responses(400, 401, 409, 413, 422, 429, 503),
    },
)
async def create_post(
    payload: PostCreate,
    state: StateDep,
    principal: WritePrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    write = post_creation(
        principal.account_id,
        payload,
        location_prefix=router.prefix,
        trace_headers=current_trace_headers(),
    )
    outcome = await create_in_one_statement(
        state, principal, idempotency_key, path=router.prefix, payload=payload, write=write
    )
    if outcome.created is not None:
        await _after_write(
            state, principal, outcome.created["id"], outcome.created["version"], created=True
        )
    return outcome.response


@router.get(
    "/{post_id}",
    response_model=PostOut,
    operation_id="get_post",
    summary="Read a post",
    responses={
        200: {"headers": declared_headers("ETag", "Cache-Control", "X-Cache")},
        304: {
            "description": "Not modified (If-None-Match)",
            "headers": declared_headers("ETag", "Cache-Control", "X-Cache"),
        },
        **problem_responses(400, 401, 404, 422, 429, 503),
    },
)
async def read_post(
    read: PostRead,
    if_none_match: IfNoneMatch = None,
) -> Response:
    entry = decode_entry(read.cached) if read.cached is not None else None
    outcome = "hit"
    if entry is None:
        outcome = "miss"
        entry = await load_post(read.state, read.plan.post_id)
    CACHE_LOOKUPS.labels(outcome).inc()
    if entry is None or not read.principal.may_see(entry.author_id, entry.status):
        raise Problem(404, _NOT_FOUND)
    etag = etag_for(*version_of(entry.version))
    headers = {"ETag": etag, "Cache-Control": "private, no-cache", "X-Cache": outcome}
    if if_none_match_hits(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(entry.body, headers=headers, media_type=JSON)


@router.patch(
    "/{post_id}",
    response_model=PostOut,
    operation_id="update_post",
    summary="Change some fields of a post",
    responses={
        200: {"headers": declared_headers("ETag")},
        **problem_responses(400, 401, 403, 404, 412, 413, 422, 429, 503),
    },
)
async def patch_post(
    post_id: uuid.UUID,
    payload: PostPatch,
    state: StateDep,
    principal: WritePrincipal,
    if_match: IfMatch = None,
) -> Response:
    changes = payload.model_dump(exclude_unset=True)
    async with state.db.writer() as conn:
        async with conn.transaction():
            current = _check_changeable(principal, await lock_post(conn, post_id))
            _check_if_match(if_match, current)
            if all(
                (list(current[name]) if name == "tags" else current[name]) == value
                for name, value in changes.items()
            ):
                row = current  # nothing changes: no new version, no event
            else:
                row = await update_post(conn, post_id, changes)
                event = EventEnvelope.wrap(
                    PostUpdated.model_validate(
                        _snapshot(row) | {"previous_status": current["status"]}
                    ),
                    aggregate_id=post_id,
                    aggregate_version=row["version"],
                )
                await enqueue_event(conn, event, current_trace_headers())
        position = await commit_position(state, conn) if row is not current else None
    if row is not current:
        await _after_write(state, principal, post_id, row["version"], position)
    return Response(post_json(row), headers={"ETag": _etag(row)}, media_type=JSON)


@router.delete(
    "/{post_id}",
    status_code=204,
    operation_id="delete_post",
    summary="Delete a post",
    responses=problem_responses(400, 401, 403, 404, 412, 422, 429, 503),
)
async def remove_post(
    post_id: uuid.UUID,
    state: StateDep,
    principal: WritePrincipal,
    if_match: IfMatch = None,
) -> Response:
    async with state.db.writer() as conn:
        async with conn.transaction():
            current = _check_changeable(principal, await lock_post(conn, post_id))
            _check_if_match(if_match, current)
            await delete_post(conn, post_id)
            event = EventEnvelope.wrap(
                PostDeleted(author_id=current["author_id"], status=current["status"]),
                aggregate_id=post_id,
                # Deletion is the post's last version: anything cached at an older one is stale.
                aggregate_version=current["version"] + 1,
            )
            await enqueue_event(conn, event, current_trace_headers())
        position = await commit_position(state, conn)
    await _after_write(state, principal, post_id, event.aggregate_version, position)
    return Response(status_code=204)


@router.get(
    "",
    response_model=PostPage,
    operation_id="list_posts",
    summary="List posts, newest first",
    description="Keyset pagination: follow `next_cursor` until it is null.",
    responses={
        200: {"headers": declared_headers(optional=("X-Cache",))},
        **problem_responses(400, 401, 422, 429, 503),
    },
)
async def list_posts_page(read: PostListRead) -> Response:
    state, plan = read.state, read.plan
    lookup = list_page(read.values)
    if lookup.page is not None:
        CACHE_LOOKUPS.labels("hit").inc()
        return Response(lookup.page, media_type=JSON, headers={"X-Cache": "hit"})
    generation = lookup.generation
    rows: list[asyncpg.Record] = []
    current = True
    if plan.query is not None:
        fence = (
            lookup.fence
            if generation is not None
            else await write_fence(state, read.principal.account_id)
        )
        # A page filled from the replica must hold every change its generation announced:
        # those committed before the primary's present position.
        current_at = (
            await primary_position(state) if generation is not None and has_replica(state) else None
        )
        async with reading(state, fence=fence, current_at=current_at) as read_from:
            rows = await list_posts(read_from.conn, plan.query)
            current = read_from.current
    response = plan.pager.response(PostPage, rows)
    if plan.cache_keys:
        CACHE_LOOKUPS.labels("miss").inc()
        response.headers["X-Cache"] = "miss"
        if generation is not None and current:
            await fill_list_page(state, plan.cache_keys[0], generation, bytes(response.body))
    return response
