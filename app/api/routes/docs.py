"""Interactive API docs (Swagger UI at /docs, ReDoc at /redoc) from files installed with the project."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

# fastapi-offline ships Swagger UI and ReDoc's bundles: the docs need no CDN, and work offline.
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
ASSETS = "docs-assets"  # relative URLs: the docs also work behind a path prefix
TITLE = "imgsearch API"
# Nothing leaves the machine: ReDoc's footer logo (a CDN image) and any other outside request are
# refused by the browser. The pages' own inline start-up scripts and styles stay allowed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
def openapi(request: Request) -> JSONResponse:
    """The OpenAPI document of this service."""
    return JSONResponse(request.app.openapi())


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui() -> HTMLResponse:
    """Swagger UI over /openapi.json."""
    page = get_swagger_ui_html(
        openapi_url="openapi.json",
        title=f"{TITLE} – Swagger UI",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url="static/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers.update(HEADERS)
    return page


@router.get("/redoc", response_class=HTMLResponse)
def redoc() -> HTMLResponse:
    """ReDoc over /openapi.json, without Google Fonts."""
    page = get_redoc_html(
        openapi_url="openapi.json",
        title=f"{TITLE} – ReDoc",
        redoc_js_url=f"{ASSETS}/redoc.standalone.js",
        redoc_favicon_url="static/favicon.svg",
        with_google_fonts=False,
    )
    page.headers.update(HEADERS)
    return page


def mount_assets(app: FastAPI) -> None:
    """Serve the docs' JavaScript and CSS (public files of the package, no data)."""
    app.mount(f"/{ASSETS}", StaticFiles(directory=ASSETS_DIR), name="docs-assets")
