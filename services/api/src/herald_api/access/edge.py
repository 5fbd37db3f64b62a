"""Every ``/v1`` response spends a budget and carries its RateLimit headers — refusals made
before any route ran too.

A route spends its budget through the dependency that hands it its principal (decision 0018),
and a cached read fetches its entry in that same Redis call. But some answers come before any
route dependency has run, or instead of it: a declared ``Content-Length`` over the limit (413),
a body that is not JSON (400, 415), a path or query that fails validation (422), a cursor of
another list (400), an unknown path (404, 405), an unexpected error (500). ``MeteredResponses``
looks at each ``/v1`` response as it starts: if it has not spent a budget, it authenticates the
request then (the anonymous budget of the client IP when that fails) and spends the budget of
the method — so no answer is free, and over the limit the answer becomes 429.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald_api.access.principals import is_metered_scope, meter_late
from herald_api.http.problems import problem_response


def _is_v1(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class MeteredResponses:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_v1(scope["path"]):
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_metered(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the rest of a response that was answered with 429 instead
            if message["type"] == "http.response.start" and not is_metered_scope(scope):
                request = Request(scope)
                refusal = await meter_late(request)
                if refusal is not None:
                    replaced = True
                    response = problem_response(request, refusal)
                    await send(
                        {
                            "type": "http.response.start",
                            "status": response.status_code,
                            "headers": response.raw_headers,
                        }
                    )
                    await send({"type": "http.response.body", "body": response.body})
                    return
            await send(message)

        await self.app(scope, receive, send_metered)
