"""Alembic environment: the URL comes from the caller (needlecare.core.db.upgrade) or from settings."""

from alembic import context
from sqlmodel import SQLModel

import models  # noqa: F401 - registers every table on SQLModel.metadata
from needlecare.core.db import get_engine
from needlecare.core.settings import get_settings

config = context.config
url = config.attributes.get("url") or get_settings().resolved_database_url
target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=url.startswith("sqlite")
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with get_engine(url).connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=url.startswith("sqlite")
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
