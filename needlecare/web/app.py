"""FastAPI application factory. The app records and emits; it never runs a flow in-process."""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from needlecare.core.settings import Settings, get_settings
from needlecare.web import (
    auth,
    bodies,
    cases,
    errors,
    headers,
    ingress,
    logfilter,
    openapi,
    outbox,
    pages,
    sms,
    surveys,
    undelivered,
    unsubscribe,
)
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
        # Swagger UI and ReDoc load their scripts from a CDN: development and test only
        docs_url="/docs" if settings.serves_api_docs else None,
        redoc_url="/redoc" if settings.serves_api_docs else None,
    )
    app.state.settings = settings
    logfilter.install()  # survey and unsubscribe links are usable secrets: never in any log
    app.include_router(ingress.router)
    app.include_router(pages.router)
    app.include_router(unsubscribe.router)
    app.include_router(surveys.router)
    app.include_router(sms.router)
    app.include_router(auth.router)
    app.include_router(cases.router)
    app.include_router(undelivered.router)
    app.include_router(dashboard.router)
    auth.install(app)
    if settings.serves_outbox:  # patients' addresses and live links: development on loopback only
        app.include_router(outbox.router)

    openapi.install(app)  # adds the survey form and login pages to /openapi.json
    app.add_middleware(errors.ErrorBoundary)  # 503 database down, 422 unreadable value, else 500; IDs-only logs
    app.add_middleware(bodies.InputBoundary)  # outermost: size limit while streaming, clean URLs and forms
    headers.register(surveys.templates.env)  # the patient pages' own environment
    app.add_middleware(headers.SecurityHeaders, settings=settings)  # on every response, errors included
    return app


def app_from_env() -> FastAPI:
    """Entry point for uvicorn --factory. Unsafe settings (e.g. the development SECRET_KEY outside development on
    loopback) stop the process with the reason and the fix, and no traceback."""
    from pydantic import ValidationError

    try:
        settings = get_settings()
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SystemExit(f"needlecare web: refusing to start: {reasons}") from None
    return create_app(settings)
