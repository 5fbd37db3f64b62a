"""Liveness and readiness probes.

``/readyz`` never answers 500: a database that cannot answer its check, however it fails, makes
the API unready (503), with the reason in ``checks``.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from herald_api.http.unavailable import DATABASE_UNAVAILABLE
from herald_api.lifespan import StateDep
from herald_shared.migrate import current_revision, schema_readiness

router = APIRouter(tags=["health"])
_log = structlog.get_logger(__name__)


@router.get("/livez", summary="The process is up")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready for traffic: database reachable and migrated; Redis and broker state",
    responses={503: {"description": "Not ready; `checks` says why."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with state.db.writer() as conn:
            revision = await current_revision(conn)
        checks["database"] = "ok"
        checks["schema"] = schema_readiness(revision, state.schema_head)
    except DATABASE_UNAVAILABLE as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    except Exception as exc:  # whatever fails the check makes the API unready
        _log.error("readiness check failed", exc_info=exc)
        checks["database"] = f"failing: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    # Degraded dependencies do not make the API unready: writes go to the outbox and reads to
    # PostgreSQL while Redis or RabbitMQ is away. They are reported for operators.
    degraded = {
        "redis_breaker": state.redis_breaker.state,
        "broker": "connected" if state.relay is None or state.relay.connected else "unreachable",
    }
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks, "dependencies": degraded},
        status_code=200 if ready else 503,
    )
