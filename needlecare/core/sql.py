"""SQL helpers shared by every stage: statements that differ between PostgreSQL and SQLite."""

from functools import lru_cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session


def insert_ignore(db: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING, on PostgreSQL and SQLite, in the session's transaction.

    One statement per table and dialect, built once and run with the rows as parameters (SQLAlchemy sends them as
    one multi-row INSERT): building a new statement from the rows' values each time was most of an insert's cost.
    Pending ORM changes are flushed first, as an ORM statement would."""
    if not rows:
        return
    db.flush()
    statement = _ignore_statement(model.__table__, db.get_bind().dialect.name)
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_shape.setdefault(tuple(sorted(row)), []).append(row)
    connection = db.connection()
    for same in by_shape.values():
        connection.execute(statement, same)


@lru_cache(maxsize=32)
def _ignore_statement(table: Table, dialect: str) -> Insert:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=["idempotency_key"])
