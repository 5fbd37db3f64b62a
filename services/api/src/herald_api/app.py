"""The ASGI app: ``create_app`` builds it from settings (tests call it directly) and
``create_server_app`` is the factory each server process of ``herald-api`` calls."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from herald_api.access.edge import MeteredResponses
from herald_api.access.route_check import check_routes_spend
from herald_api.http.body_limit import BodyLimitMiddleware
from herald_api.http.errors import UnexpectedErrors
from herald_api.http.forwarded import ForwardedClient
from herald_api.http.head_sampling import sample_at_the_edge
from herald_api.http.openapi import install_exact_document, operation_id
from herald_api.http.problems import install_problem_handlers
from herald_api.http.request_context import RequestContextMiddleware
from herald_api.http.unavailable import install_unavailable_handlers
from herald_api.lifespan import create_lifespan
from herald_api.routes import contracts, health, posts, search, stats, webhooks
from herald_api.settings import Settings
from herald_shared.logs import configure_logging
from herald_shared.telemetry import configure_tracing

DESCRIPTION = """
Herald publishes posts and the events they cause.

Authenticate every `/v1` request with `Authorization: Bearer <api key>`
(create one with `herald keys create --account NAME`). Errors are
`application/problem+json` (RFC 9457). Writes accept an `Idempotency-Key`;
`PATCH` and `DELETE` honour `If-Match`.
"""


NATIVE_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Herald",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=create_lifespan(settings),
        # Requests are traced by the OpenTelemetry ASGI instrumentation below, and metered by
        # Prometheus; FastAPI's own telemetry would wrap every request and dependency again.
        telemetry=NATIVE_TELEMETRY_OFF,
        generate_unique_id_function=operation_id,
        # Off in production: the document and its viewers are for developers.
        openapi_url="/openapi.json" if settings.server.docs_enabled else None,
        docs_url="/docs" if settings.server.docs_enabled else None,
        redoc_url="/redoc" if settings.server.docs_enabled else None,
    )
    install_problem_handlers(app)
    install_unavailable_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.server.max_body_bytes)
    # Inside the request context, so refusals made before any route ran (413, 415, 422, ...)
    # and unexpected errors (500) carry a spent budget's RateLimit headers too.
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(MeteredResponses)
    app.add_middleware(RequestContextMiddleware)
    if settings.server.trusted_proxies:
        # Outside the request context: its log line names the client found here.
        app.add_middleware(ForwardedClient, trusted=settings.server.trusted_proxies)
    if settings.telemetry.enabled:
        plain_build = app.build_middleware_stack
        # Outermost, so the request's span is current in every middleware and handler.
        FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])
        # Outside even that: unsampled requests skip the instrumentation altogether.
        sample_at_the_edge(app, settings.telemetry.sample_ratio, plain_build=plain_build)
    app.include_router(health.router)
    if settings.server.docs_enabled:
        # The events' document sits beside the API's, under the same switch.
        app.include_router(contracts.router)
    app.include_router(posts.router)
    app.include_router(search.router)
    app.include_router(stats.router)
    app.include_router(webhooks.router)
    check_routes_spend(app.routes)
    install_exact_document(app)
    return app


def create_server_app() -> FastAPI:
    """The factory each server process calls: settings from the environment, logging set up."""
    settings = Settings()
    configure_logging("herald-api", settings.log)
    configure_tracing("herald-api", settings.telemetry)
    return create_app(settings)
