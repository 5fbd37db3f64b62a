"""The media types the API speaks, and a JSON response from a model."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel
from starlette.responses import Response

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


def json_response(
    model: BaseModel, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``model`` serialised once, by pydantic, straight into the response body."""
    return Response(model.model_dump_json().encode(), status_code, headers, media_type=JSON)
