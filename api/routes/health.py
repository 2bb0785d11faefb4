"""``/healthz`` (alive), ``/readyz`` (index loaded and reachable), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api import metrics
from api.deps import IndexDep, TenantDep
from api.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the worker's event loop answers. Never touches S3, Bedrock or DynamoDB."""
    return {"status": "ok"}


@router.get(
    "/readyz", response_model=Readiness, response_model_exclude_none=True, responses={503: {"model": Readiness}}
)
async def readyz(index: IndexDep, tenant: TenantDep) -> Response | Readiness:
    """Readiness: 200 with the index version once an index is loaded (and, with pgvector, the
    database answers), else 503."""
    current = index.get()
    if current is None:
        body = Readiness(status="not_ready", tenant=tenant, message=index.last_error or "index not loaded yet")
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    problem = await index.unavailable()
    if problem is not None:  # pgvector: the database is down or slow; traffic goes to other pods
        body = Readiness(status="not_ready", tenant=tenant, message=problem)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    manifest = current.version.manifest
    return Readiness(
        status="ready",
        tenant=tenant,
        index_version=current.version.version,
        embedding_model=manifest.embedding_model,
        chunks=manifest.count,
    )


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    """Prometheus exposition format (aggregated across gunicorn workers in multiprocess mode)."""
    body, content_type = await run_in_threadpool(metrics.render)
    return Response(body, media_type=content_type)
