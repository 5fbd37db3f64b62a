"""``/metrics``: Prometheus exposition of this API (all its server processes together)."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from herald_api.lifespan import StateDep
from herald_shared.metrics import DB_POOL_IN_USE, DB_POOL_SIZE

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    for name, pool in (("primary", state.db.primary), ("replica", state.db.replica)):
        DB_POOL_SIZE.labels(name).set(pool.get_size())
        DB_POOL_IN_USE.labels(name).set(pool.get_size() - pool.get_idle_size())
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
