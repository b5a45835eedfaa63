"""Delivery receipts: a small file that says a provider accepted a message, kept until its row says so.

The moment a provider accepts a message (an SMTP server's reply to ``DATA``; an alert's routes reporting
success), the sender writes the message's receipt; once the row's outcome is committed it removes it. A
sender killed in between leaves the receipt behind, and whoever claims the row next records the message as
sent from the receipt instead of sending it again.

Why a file: writing one takes microseconds and waits for no lock, while the commit after a send can wait for
the database's write lock (SQLite has one for the whole database, shared with every other writer), so without
it a sender killed during a busy burst often leaves an accepted message that is sent a second time. What
remains is the time between the provider's reply arriving and the file being written, and a provider that
accepted a message whose reply never arrived (counted as ambiguous, as before).

A receipt helps only a sender that can read the directory the killed one wrote to: the same machine (the
embedded stack, workers on one host) or a shared directory. Its name is a digest of the database URL, the
table, the row id and a key that is stable for the row (the ``Message-ID`` for a patient notice), so two
databases that share a directory never read each other's receipts. Receipts are not fsynced: a killed
process's writes survive, a power cut's may not (then the message counts as ambiguous and is sent again).
"""

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Receipt:
    """Where one message's receipt lives."""

    path: Path

    @classmethod
    def at(cls, directory: Path, *, database_url: str, table: str, row_id: int, key: str) -> "Receipt":
        digest = hashlib.sha256(f"{database_url}\n{table}\n{row_id}\n{key}".encode()).hexdigest()[:32]
        return cls(directory / f"{table}-{row_id}-{digest}.json")

    def write(self, accepted_at: datetime) -> bool:
        """Record that the provider accepted the message at ``accepted_at``. False (and nothing raised) when
        the directory cannot be written: the send stands, only the receipt's protection is lost."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps({"accepted_at": accepted_at.isoformat()}).encode())
            finally:
                os.close(fd)
        except OSError:
            return False
        return True

    def accepted_at(self) -> datetime | None:
        """When the provider accepted the message, if a receipt says it did."""
        try:
            data = json.loads(self.path.read_text())
            return datetime.fromisoformat(str(data["accepted_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
