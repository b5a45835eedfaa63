"""Holding the write lock a sender's outcome commit needs: the whole database on SQLite, one notification row
on PostgreSQL. Taken once (a second call does nothing), released with ``release``."""

import sqlite3
from typing import Any

from sqlalchemy import create_engine, make_url, text


class OutcomeLock:
    def __init__(self, database_url: str, notification_id: int) -> None:
        self.url, self.notification_id = make_url(database_url), notification_id
        self.holder: Any = None

    @property
    def taken(self) -> bool:
        return self.holder is not None

    def take(self) -> None:
        if self.holder is not None:
            return
        if self.url.get_backend_name() == "sqlite":
            self.holder = sqlite3.connect(str(self.url.database), isolation_level=None, check_same_thread=False)
            self.holder.execute("BEGIN IMMEDIATE")
        else:
            self.holder = create_engine(self.url).connect()
            self.holder.execute(
                text("SELECT id FROM notification WHERE id = :id FOR UPDATE"), {"id": self.notification_id}
            )

    def release(self) -> None:
        if self.holder:
            self.holder.rollback()
            self.holder.close()
            if not isinstance(self.holder, sqlite3.Connection):
                self.holder.engine.dispose()
            self.holder = False
