"""Typed FastAPI dependencies, swapped in tests through the settings on app.state."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from needlecare.core.db import get_engine
from needlecare.core.settings import Settings


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    with Session(get_engine(settings.resolved_database_url), expire_on_commit=False) as db:
        yield db


DbDep = Annotated[Session, Depends(get_db)]
