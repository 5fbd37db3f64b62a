"""The OpenAPI document: what FastAPI generates from the routes, made exact for generators and
fuzzers.

Rules applied to the whole document, so that a new route cannot forget them:

- every ``/v1`` operation requires the bearer scheme (``apiKey``), and declares the problems
  every ``/v1`` request can answer with: 401 (credentials), 413 (a body over the limit, refused
  on its ``Content-Length`` whatever the method), 429 (budget spent) and 503 (a backing service
  down); 422 when it takes parameters or a body; 400 and 415 when it takes a body;
- every error is ``application/problem+json`` with the ``ProblemDetail`` schema;
- every ``/v1`` response declares the headers sent with it (``X-Request-ID`` always,
  ``traceparent`` and the ``RateLimit-*`` state when known), and the status's own ones
  (``Retry-After`` on 429 and 503, ``WWW-Authenticate`` on 401, ``ETag`` on 412);
- parameters are never ``null`` (a query string or header cannot say null); a parameter marked
  ``x-required`` in its schema is required (the route answers its absence itself).

Statuses only some routes answer (400 for a cursor or a precondition header, 403, 404, 409, 412,
304) and success headers (``Location``, ``ETag``) are declared on the route, with ``responses``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from herald_api.http.media import JSON, PROBLEM_JSON

SECURITY_SCHEME = "apiKey"
PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetail"}

_INTEGER = {"type": "integer", "minimum": 0}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id (the one sent, when valid); in every log line.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    },
    "traceparent": {
        "description": "The W3C trace context of the request's trace (when tracing is on).",
        "schema": {
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        },
    },
    "RateLimit-Limit": {"description": "Requests allowed per window.", "schema": _INTEGER},
    "RateLimit-Policy": {
        "description": "The limit and its window in seconds (`1200;w=60`).",
        "schema": {"type": "string", "pattern": "^[0-9]+;w=[0-9]+$"},
    },
    "RateLimit-Remaining": {"description": "Requests left in the window.", "schema": _INTEGER},
    "RateLimit-Reset": {"description": "Seconds until the window ends.", "schema": _INTEGER},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": _INTEGER},
    "WWW-Authenticate": {"description": "The Bearer challenge.", "schema": {"type": "string"}},
    "ETag": {
        "description": "The post's entity tag (its version; `-e` once enriched).",
        "schema": {"type": "string", "pattern": '^"[0-9]+(-e)?"$'},
    },
    "Location": {"description": "The path of the created resource.", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "X-Cache": {
        "description": "Whether the response came from the cache.",
        "schema": {"type": "string", "enum": ["hit", "miss"]},
    },
    "Cache-Control": {"description": "`private, no-cache`.", "schema": {"type": "string"}},
}
#: Headers on every response of a /v1 operation, required or not.
_EVERY_RESPONSE = {
    "X-Request-ID": True,
    "traceparent": False,
    "RateLimit-Limit": False,
    "RateLimit-Policy": False,
    "RateLimit-Remaining": False,
    "RateLimit-Reset": False,
}
_BY_STATUS = {
    "401": {"WWW-Authenticate": True},
    "409": {"Retry-After": False},
    "412": {"ETag": True},
    "429": {"Retry-After": True},
    "503": {"Retry-After": True},
}
_COMMON_PROBLEMS = (401, 413, 429, 503)
_INPUT_PROBLEMS = (422,)
_BODY_PROBLEMS = (400, 415, 422)


def declared_headers(*required: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``headers`` of a route's response in ``responses=``: names from ``HEADERS``."""
    return {
        **{name: _header(name, True) for name in required},
        **{name: _header(name, False) for name in optional},
    }


def links_to(parameter: str, *operation_ids: str) -> dict[str, Any]:
    """``links`` of a create's response: the operations taking the new resource's ``id`` as
    ``parameter`` (what generators and stateful fuzzers follow)."""
    return {
        "".join(part.title() for part in operation_id.split("_")): {
            "operationId": operation_id,
            "parameters": {parameter: "$response.body#/id"},
        }
        for operation_id in operation_ids
    }


def _header(name: str, required: bool) -> dict[str, Any]:
    # Inline, not a $ref: a reference object's siblings (``required``) would be ignored.
    return {**HEADERS[name], "required": required}


def _not_null(schema: dict[str, Any]) -> None:
    branches = schema.pop("anyOf", None)
    if branches is not None:
        kept = [branch for branch in branches if branch.get("type") != "null"]
        if len(kept) == 1:
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept


def _exact_parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        _not_null(schema)
        if schema.pop("x-required", False):
            parameter["required"] = True


def _declare_problems(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    statuses = set(_COMMON_PROBLEMS)
    if operation.get("parameters"):
        statuses.update(_INPUT_PROBLEMS)
    if "requestBody" in operation:
        statuses.update(_BODY_PROBLEMS)
    for status in statuses:
        responses.setdefault(str(status), {"description": HTTPStatus(status).phrase})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    operation["responses"] = dict(sorted(responses.items()))


def _declare_headers(operation: dict[str, Any]) -> None:
    for status, response in operation["responses"].items():
        headers = response.setdefault("headers", {})
        for name, required in {**_EVERY_RESPONSE, **_BY_STATUS.get(status, {})}.items():
            headers.setdefault(name, _header(name, required))


def _errors_as_problem_json(operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        content = response.get("content", {})
        if status.isdigit() and int(status) >= 400 and JSON in content:
            content[PROBLEM_JSON] = content.pop(JSON)


def _drop_unused_schemas(document: dict[str, Any]) -> None:
    """FastAPI's own validation-error schemas, which no response of this API uses any more."""
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def exact_document(document: dict[str, Any]) -> dict[str, Any]:
    """Apply the rules of this module to a document FastAPI generated."""
    components = document.setdefault("components", {})
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "hrld_<key id>_<secret>",
            "description": "An API key: `herald keys create --account NAME` prints one.",
        }
    }
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            _exact_parameters(operation)
            _errors_as_problem_json(operation)
            if (path + "/").startswith("/v1/"):
                operation["security"] = [{SECURITY_SCHEME: []}]
                _declare_problems(operation)
                _declare_headers(operation)
    _drop_unused_schemas(document)
    return document


def operation_id(route: APIRoute) -> str:
    """An operation's id: its route's name (the handler function's, or ``name=``), which reads
    well in generated clients (``create_post``, not ``create_post_v1_posts_post``)."""
    return route.name


def install_exact_document(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) serve the exact document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = exact_document(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
