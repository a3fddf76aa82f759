"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import RuntimeDep
from app.api.schemas import Ready

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 with profile, device, index size and generation once warm; 503 with the reason before."""
    runtime.follow()
    service = runtime.service
    if service is None:
        status = "failed" if runtime.error else "loading"
        body = Ready(status=status, detail=runtime.error or "warming up models and index")
        return JSONResponse(body.model_dump(), status_code=503)
    body = Ready(
        status="ready",
        profile=service.pipeline.models.profile,
        device=runtime.device,
        images=service.index.count,
        generation=service.index.generation,
    )
    return JSONResponse(body.model_dump())


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
