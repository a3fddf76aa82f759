"""The FastAPI application: `app.main:app`, built by `create_app()`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from app import __version__
from app.api import access, errors
from app.api.middleware import BodyLimit, Metrics
from app.api.routes import admin, describe, docs, folders, health, images, page, people, search, session
from app.api.runtime import Runtime
from app.assembly import ServiceFactory, serve_service
from app.errors import BadSetting
from app.settings import Settings, load_settings

log = logging.getLogger(__name__)


class ModelTimeCollector(Collector):
    """Exports cumulative inference seconds and calls per model role."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """Read the models' counters at scrape time."""
        seconds = CounterMetricFamily(
            "imgsearch_model_inference_seconds", "Time inside model calls", labels=["role"]
        )
        calls = CounterMetricFamily("imgsearch_model_calls", "Model calls", labels=["role"])
        service = self.runtime.service
        if service is not None:
            models = service.pipeline.models
            for role, model in (("image", models.image), ("text", models.text), ("lm", models.lm)):
                if model is not None:
                    seconds.add_metric([role], model.seconds_in_inference)
                    calls.add_metric([role], model.calls)
        yield seconds
        yield calls


def create_app(settings: Settings | None = None, factory: ServiceFactory | None = None) -> FastAPI:
    """Assemble the app; models load in the lifespan, in a background thread."""
    settings = settings or Settings()
    runtime = Runtime(settings, factory or serve_service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        access.warn_if_exposed(settings)
        runtime.start()
        yield
        runtime.close()

    app = FastAPI(
        title="imgsearch",
        version=__version__,
        summary="Search images by text or by image, and describe them.",
        lifespan=lifespan,
        # /docs, /redoc and /openapi.json come from app/api/routes/docs.py: offline, behind the read key.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.runtime = runtime
    app.state.key_guard = access.KeyGuard()  # failed key checks per client, this app's own
    registry = CollectorRegistry()
    registry.register(ModelTimeCollector(runtime))
    app.state.metrics_registry = registry
    errors.install(app)
    app.include_router(health.router)  # /healthz: open to all
    read_gate = access.read_dependencies(settings)  # empty while no IMGSEARCH_READ_KEY is set
    read_errors = access.read_responses(settings)  # and the 401/429 it may answer, in the OpenAPI document
    routers = (health.probes, search.router, describe.router, images.router, people.router, folders.router)
    for router in (*routers, admin.router, docs.router):
        app.include_router(router, dependencies=read_gate, responses=read_errors)
    if settings.read_key is not None:
        app.include_router(session.router)  # sign in with the read key: the page's session cookie
    page.install(app)  # the search page at / and its assets under /static (no data: open to all)
    docs.mount_assets(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            # A cross-origin client sends the read key as a bearer token; the admin key's
            # X-API-Key header stays same-origin.
            allow_headers=["content-type", "if-none-match", "authorization"],
        )
    app.add_middleware(Metrics, registry=registry)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_upload_bytes + 64 * 1024, limit_mb=settings.max_upload_mb
    )
    return app


def __getattr__(name: str) -> FastAPI:
    """`app.main:app` for uvicorn, created on first access (not at import of this module)."""
    if name == "app":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            settings = load_settings()
        except BadSetting as exc:  # one line and a non-zero exit instead of pydantic's traceback
            log.error("cannot start: %s", exc)
            raise SystemExit(1) from None
        application = create_app(settings)
        globals()["app"] = application
        return application
    raise AttributeError(name)
