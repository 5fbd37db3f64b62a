"""The API's operations as clients see them in the OpenAPI document: paths, methods, operation
ids, parameters, request bodies and every status with its media type.

A change to this table is a change to the API's contract: make it on purpose, never as a side
effect of moving code around.
"""

from __future__ import annotations

from typing import Any

from herald_api.app import create_app
from herald_api.settings import Settings

_MEDIA = {"application/json": "json", "application/problem+json": "problem"}

# "METHOD path": (operation id, parameters (in:name, "?" when optional), body, responses)
OPERATIONS = {
    "GET /livez": (
        "livez",
        "",
        "",
        "200:json",
    ),
    "GET /readyz": (
        "readyz",
        "",
        "",
        "200:json 503",
    ),
    "POST /v1/posts": (
        "create_post",
        "header:Idempotency-Key?",
        "application/json:PostCreate",
        "201:json 400:problem 401:problem 409:problem 413:problem 415:problem "
        "422:problem 429:problem 503:problem",
    ),
    "GET /v1/posts": (
        "list_posts",
        "query:author? query:tag? query:status? query:limit? query:cursor?",
        "",
        "200:json 400:problem 401:problem 413:problem 422:problem 429:problem 503:problem",
    ),
    "GET /v1/posts/{post_id}": (
        "get_post",
        "path:post_id header:If-None-Match?",
        "",
        "200:json 304 400:problem 401:problem 404:problem 413:problem 422:problem "
        "429:problem 503:problem",
    ),
    "PATCH /v1/posts/{post_id}": (
        "update_post",
        "path:post_id header:If-Match?",
        "application/json:PostPatch",
        "200:json 400:problem 401:problem 403:problem 404:problem 412:problem "
        "413:problem 415:problem 422:problem 429:problem 503:problem",
    ),
    "DELETE /v1/posts/{post_id}": (
        "delete_post",
        "path:post_id header:If-Match?",
        "",
        "204 400:problem 401:problem 403:problem 404:problem 412:problem 413:problem "
        "422:problem 429:problem 503:problem",
    ),
    "GET /v1/search": (
        "search_posts",
        "query:q query:author? query:tag? query:status? query:limit? query:cursor?",
        "",
        "200:json 400:problem 401:problem 413:problem 422:problem 429:problem 503:problem",
    ),
    "GET /v1/stats": (
        "get_account_stats",
        "",
        "",
        "200:json 401:problem 413:problem 429:problem 503:problem",
    ),
    "POST /v1/webhooks": (
        "create_webhook",
        "header:Idempotency-Key?",
        "application/json:WebhookCreate",
        "201:json 400:problem 401:problem 409:problem 413:problem 415:problem "
        "422:problem 429:problem 503:problem",
    ),
    "GET /v1/webhooks": (
        "list_webhooks",
        "query:limit? query:cursor?",
        "",
        "200:json 400:problem 401:problem 413:problem 422:problem 429:problem 503:problem",
    ),
    "GET /v1/webhooks/{webhook_id}": (
        "get_webhook",
        "path:webhook_id",
        "",
        "200:json 401:problem 404:problem 413:problem 422:problem 429:problem 503:problem",
    ),
    "PATCH /v1/webhooks/{webhook_id}": (
        "update_webhook",
        "path:webhook_id",
        "application/json:WebhookPatch",
        "200:json 400:problem 401:problem 404:problem 413:problem 415:problem "
        "422:problem 429:problem 503:problem",
    ),
    "DELETE /v1/webhooks/{webhook_id}": (
        "delete_webhook",
        "path:webhook_id",
        "",
        "204 401:problem 404:problem 413:problem 422:problem 429:problem 503:problem",
    ),
    "POST /v1/webhooks/{webhook_id}/rotate-secret": (
        "rotate_webhook_secret",
        "path:webhook_id",
        "",
        "200:json 401:problem 404:problem 413:problem 422:problem 429:problem 503:problem",
    ),
    "GET /v1/webhooks/{webhook_id}/deliveries": (
        "list_webhook_deliveries",
        "path:webhook_id query:status? query:limit? query:cursor?",
        "",
        "200:json 400:problem 401:problem 404:problem 413:problem 422:problem "
        "429:problem 503:problem",
    ),
}

SCHEMAS = {
    "AccountStats",
    "DeliveryOut",
    "DeliveryPage",
    "PostCreate",
    "PostOut",
    "PostPage",
    "PostPatch",
    "ProblemDetail",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookOut",
    "WebhookPage",
    "WebhookPatch",
    "WebhookSecret",
}


def _summary(operation: dict[str, Any]) -> tuple[str, str, str, str]:
    parameters = " ".join(
        f"{p['in']}:{p['name']}{'' if p.get('required') else '?'}"
        for p in operation.get("parameters", [])
    )
    body = " ".join(
        f"{media}:{content['schema']['$ref'].rsplit('/', 1)[1]}"
        for media, content in operation.get("requestBody", {}).get("content", {}).items()
    )
    responses = " ".join(
        status + "".join(f":{_MEDIA.get(media, media)}" for media in response.get("content", {}))
        for status, response in operation["responses"].items()
    )
    return operation["operationId"], parameters, body, responses


def test_the_openapi_document_lists_the_same_operations() -> None:
    document = create_app(Settings()).openapi()
    operations = {
        f"{method.upper()} {path}": _summary(operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    assert operations == OPERATIONS
    assert set(document["components"]["schemas"]) == SCHEMAS
