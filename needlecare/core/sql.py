"""SQL helpers shared by every stage: statements that differ between PostgreSQL and SQLite."""

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session


def insert_ignore(db: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING, on PostgreSQL and SQLite."""
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.exec(insert(model).values(rows).on_conflict_do_nothing(index_elements=["idempotency_key"]))
