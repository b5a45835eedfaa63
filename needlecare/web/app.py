"""FastAPI application factory. The app records and emits; it never runs a flow in-process."""

import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from needlecare.core.settings import Settings, get_settings
from needlecare.web import auth, cases, dashboard, ingress, logfilter, outbox, pages, surveys, unsubscribe

log = logging.getLogger("needlecare.web")


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    dashboard.warm_up()
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Events go to the Prefect API named in settings (never an ephemeral server).
    os.environ.setdefault("PREFECT_API_URL", settings.prefect_api_url)
    app = FastAPI(
        title="needlecare",
        version="0.1.0",
        description="Follow-up after dry needling: ingress API, outbox and pages.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    logfilter.install()  # survey and unsubscribe links are usable secrets: never in access logs
    app.include_router(ingress.router)
    app.include_router(pages.router)
    app.include_router(unsubscribe.router)
    app.include_router(surveys.router)
    app.include_router(auth.router)
    app.include_router(cases.router)
    app.include_router(dashboard.router)
    auth.install(app)
    if settings.is_development:
        app.include_router(outbox.router)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex[:12]
        # The exception type and a reference only: messages may carry request data.
        log.error("unhandled %s on %s %s (ref %s)", type(exc).__name__, request.method, request.url.path, reference)
        return JSONResponse(
            status_code=500, content={"detail": "internal error; nothing was stored half-way", "reference": reference}
        )

    return app


def app_from_env() -> FastAPI:
    """Entry point for uvicorn --factory."""
    return create_app()
