"""The API's own pages, /docs (Swagger UI) and /redoc (ReDoc), served with their assets.

FastAPI's pages load Swagger UI and ReDoc from a CDN, and fonts and a favicon from other
hosts, so they stay blank without internet. These load everything from this package
(vendored from npm: static/vendor.toml, `make vendor`), and no other host. The assets are
routes of the app like every endpoint, so whatever guards the API guards them too.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from tidings.server.http.errors import HttpError

STATIC = Path(__file__).parent / "static"
ASSETS = {path.relative_to(STATIC).as_posix(): path for path in STATIC.glob("*/*")}
"""The files the pages load (and their licences), by their path under /docs/assets/."""
NO_ICON = "data:,"
"""An empty favicon, so the browser asks no host (this one included) for one."""

router = APIRouter(include_in_schema=False)


def base(request: Request) -> str:
    """Where the app is mounted: its root path, without a trailing slash."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def openapi_url(request: Request) -> str:
    """The URL of the app's OpenAPI document."""
    app: FastAPI = request.app
    return f"{base(request)}{app.openapi_url}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: the endpoints, to read and to try."""
    assets = f"{base(request)}/docs/assets/swagger-ui"
    return get_swagger_ui_html(
        openapi_url=openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=NO_ICON,
        # the badge of swagger.io's validator would be an image from swagger.io
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc: the endpoints as one page to read."""
    return get_redoc_html(
        openapi_url=openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{base(request)}/docs/assets/redoc/redoc.standalone.js",
        redoc_favicon_url=NO_ICON,
        with_google_fonts=False,
    )


@router.get("/docs/assets/{name:path}")
async def asset(name: str) -> FileResponse:
    """A file of Swagger UI or ReDoc from the package."""
    path = ASSETS.get(name)
    if path is None:
        raise HttpError(
            404,
            "not_found",
            f"no asset {name!r} of the API's pages; /docs and /redoc load theirs by themselves",
        )
    return FileResponse(path)


def install(app: FastAPI) -> None:
    """Serve /docs and /redoc on `app`, which must be made with docs_url=redoc_url=None."""
    assert app.docs_url is None and app.redoc_url is None, "FastAPI's own pages would shadow these"
    app.include_router(router)
