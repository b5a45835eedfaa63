"""FastAPI application factory. The app records and emits; it never runs a flow in-process."""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from needlecare.core.settings import Settings, get_settings
from needlecare.web import auth, cases, errors, ingress, logfilter, outbox, pages, surveys, undelivered, unsubscribe
from needlecare.web.dashboard import routes as dashboard

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
    app.include_router(undelivered.router)
    app.include_router(dashboard.router)
    auth.install(app)
    if settings.is_development:
        app.include_router(outbox.router)

    app.add_middleware(errors.ErrorBoundary)  # 503 when the database is down, 500 otherwise; IDs-only logs
    return app


def app_from_env() -> FastAPI:
    """Entry point for uvicorn --factory."""
    return create_app()
