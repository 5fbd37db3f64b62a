"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from herald_api.lifespan import StateDep
from herald_shared.db import UNAVAILABLE_ERRORS
from herald_shared.migrate import current_revision, schema_readiness

router = APIRouter(tags=["health"])


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
    except UNAVAILABLE_ERRORS as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
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
