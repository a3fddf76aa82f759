"""Liveness (open to all), readiness and metrics (behind the read key when one is set)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.access import access_warnings
from app.api.deps import RuntimeDep
from app.api.errors import public_detail
from app.api.schemas import Ready
from app.encoders.base import LanguageModel

router = APIRouter(tags=["health"])  # /healthz: never behind a key
probes = APIRouter(tags=["health"])  # /readyz and /metrics: behind the read key when one is set


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "ok"}


@probes.get("/readyz", response_model=Ready, responses={503: {"model": Ready}}, summary="Readiness")
def readyz(runtime: RuntimeDep, request: Request) -> JSONResponse:
    """200 with profile, device, index size and generation once warm; 503 with the reason before."""
    service = runtime.service
    read_key, warnings = runtime.settings.read_key is not None, access_warnings(runtime.settings)
    if service is None:
        status = "failed" if runtime.error else "loading"
        body = Ready(
            status=status,
            detail=public_detail(
                runtime.error or "warming up models and index", runtime.settings, request.app.router.routes
            ),
            read_key=read_key,
            warnings=warnings,
        )
        return JSONResponse(body.model_dump(), status_code=503)
    body = Ready(
        status="ready",
        profile=service.pipeline.models.profile,
        device=runtime.device,
        images=service.count,
        generation=service.generation,
        describe=_describe_status(service.models.lm),
        read_key=read_key,
        warnings=warnings,
    )
    return JSONResponse(body.model_dump())


def _describe_status(lm: LanguageModel | None) -> str:
    """Whether the language model is loaded, still loading in the background, failed, or not used."""
    if lm is None:
        return "off"
    if lm.loaded:
        return "ready"
    return "failed" if lm.error else "loading"


@probes.get("/metrics", response_class=Response, summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
