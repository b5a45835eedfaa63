"""Engines and sessions for the application database (SQLite by default, PostgreSQL by URL)."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.orm import ORMExecuteState
from sqlmodel import Session, create_engine

from needlecare.core.settings import get_settings

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def get_engine(url: str | None = None) -> Engine:
    """The engine of ``url`` (default: the settings' database), one per URL per process.

    Engines hide bound parameters from their error messages: an exception (logged, stored or shown) never
    carries a patient's name, email or phone from the statement that failed.

    The default is resolved before the cache is consulted, so a change of settings (tests, CLI invocations in
    one process) reaches the database it names."""
    return _engine(url or get_settings().resolved_database_url)


def dispose_engines() -> None:
    """Close every engine this process opened and forget them (before a database goes away, e.g. in a bench)."""
    for url in list(_opened):
        _engine(url).dispose()
    _opened.clear()
    _engine.cache_clear()


_opened: set[str] = set()


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    _opened.add(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},  # a stopped database fails the request fast (503), not after minutes
        hide_parameters=True,
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@event.listens_for(Session, "do_orm_execute")
def _synchronize_by_returning(state: ORMExecuteState) -> None:
    """A bulk UPDATE or DELETE refreshes only the loaded rows it matched, found by their primary keys (RETURNING).

    SQLAlchemy's default ("evaluate") tests the statement's criteria against every object in the session, so a
    session that holds many rows (a dispatch pass) paid for each UPDATE in proportion to all of them. A statement
    that names its own ``synchronize_session`` keeps it."""
    if (state.is_update or state.is_delete) and "synchronize_session" not in state.execution_options:
        state.update_execution_options(synchronize_session="fetch")


def get_remembered(db: Session, model: type[T], key: Any) -> T | None:
    """``db.get``, read once per session: for rows that stay put while one short-lived session runs (a clinic's
    settings during a dispatch pass). The session keeps them in ``db.info`` until it closes."""
    remembered: dict[tuple[type[Any], Any], Any] = db.info.setdefault("remembered", {})
    if (model, key) not in remembered:
        remembered[(model, key)] = db.get(model, key)
    row: T | None = remembered[(model, key)]
    return row


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def upgrade(url: str | None = None) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url or get_settings().resolved_database_url
    command.upgrade(config, "head")
