"""RFC 9457 problem details: the one shape of every error the API returns.

Each problem has a stable ``type`` (a relative URI under ``/problems/``), a ``title`` that never
changes for that type, a ``detail`` about this occurrence, and the request id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from herald_api.http.media import JSON, PROBLEM_JSON
from herald_api.http.request_context import request_id_of

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_log = structlog.get_logger(__name__)

_TYPE_BY_STATUS: dict[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    412: "precondition-failed",
    413: "content-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    428: "precondition-required",
    429: "rate-limited",
    500: "internal-error",
    503: "service-unavailable",
}


class ProblemDetail(BaseModel):
    """The body of every error response (``application/problem+json``)."""

    type: str = Field(examples=["/problems/not-found"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["No post with this id is visible to you."])
    instance: str | None = Field(default=None, examples=["/v1/posts/0b6c..."])
    request_id: str | None = Field(default=None, examples=["6f1c2b0e5d9a4f4e"])
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Field-level errors for a validation problem."
    )


class Problem(Exception):  # noqa: N818 - it is the RFC's name for the thing
    """Raise anywhere in a request to answer with a problem response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type_ = type_ or _TYPE_BY_STATUS.get(status, "error")
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.errors = [dict(e) for e in errors] if errors is not None else None


def problem_response(request: Request, problem: Problem) -> Response:
    request_id = request_id_of(request.scope)
    body: dict[str, Any] = {
        "type": f"/problems/{problem.type_}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        "request_id": request_id,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    headers = dict(problem.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return Response(
        content=json.dumps(body, separators=(",", ":"), default=str),
        status_code=problem.status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        # Never echo the input back: it may be huge, or a secret the client mistyped.
        errors.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return errors


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No resource at this path."
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on this resource."
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(request, Problem(exc.status_code, detail, headers=headers))


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # Only a route that takes a body finds fault with it: a bad path parameter of a POST without
    # a body is a 422 like any other.
    about_body = any(e["loc"][:1] == ["body"] for e in errors)
    if about_body and not (content_type == JSON or content_type.endswith("+json")):
        return problem_response(
            request,
            Problem(415, "Send the body as JSON with Content-Type: application/json."),
        )
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(
            request, Problem(400, "The request body is not valid JSON.", type_="malformed-json")
        )
    return problem_response(
        request, Problem(422, "The request did not pass validation.", errors=errors)
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    _log.error("unhandled error", exc_info=exc, path=request.url.path)
    return problem_response(request, Problem(500, "An unexpected error occurred."))


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting the problems a route can answer with."""
    return {
        status: {"model": ProblemDetail, "description": HTTPStatus(status).phrase}
        for status in statuses
    }
