"""``/asyncapi.json``: the AsyncAPI 3 document of the events Herald publishes, served beside the
OpenAPI document. It is the committed file of ``herald_shared`` (generated from the committed
event schemas), sent as it is: what clients download is what the repository reviews."""

from __future__ import annotations

import functools

from fastapi import APIRouter
from fastapi.responses import Response

from herald_shared.asyncapi import DOCUMENT_PATH

router = APIRouter(tags=["contracts"])


@functools.cache
def _document() -> bytes:
    return DOCUMENT_PATH.read_bytes()


@router.get(
    "/asyncapi.json",
    summary="The AsyncAPI document of the events Herald publishes",
    include_in_schema=False,
)
async def asyncapi_document() -> Response:
    return Response(
        _document(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
