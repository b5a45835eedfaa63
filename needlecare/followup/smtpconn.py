"""SMTP connections for Apprise's email plugin: each send's conversation tracked, connections optionally reused.

Tracking: :class:`TrackedSMTP` records, per send, whether ``DATA`` was handed over and any refusal code
(``smtp_state``), and calls ``on_accepted`` the instant the server answers 250 to ``DATA``.

Reuse: inside :func:`reusing_connections` (one sender thread's stretch of work), a connection whose send went
through is kept open instead of closed, and the next send to the same URL from the same thread takes it: a
``NOOP`` must be answered 250 first, and a connection is closed after ``max_messages`` messages, after
``idle_seconds`` unused, on any error, and when the block ends. Outside the block every send opens and closes
its own connection, as Apprise does. A reused connection skips ``STARTTLS`` and ``AUTH`` (already done on it);
every socket operation keeps the send's timeout.
"""

import contextlib
import hashlib
import smtplib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# What the current send saw of the SMTP conversation: whether DATA was started, and a reply code if refused.
smtp_state: ContextVar[dict[str, Any] | None] = ContextVar("needlecare_smtp_state", default=None)
# Called the moment the SMTP server accepts the message (its 250 reply to DATA), before anything else runs.
on_accepted: ContextVar[Callable[[], object] | None] = ContextVar("needlecare_on_accepted", default=None)
# Which connections the current send may share: a digest of the Apprise URL (credentials included), or None.
reuse_key: ContextVar[str | None] = ContextVar("needlecare_smtp_reuse_key", default=None)
_SMTP_ERRORS = (OSError, smtplib.SMTPException)


def url_key(url: str) -> str:
    """What identifies a sender's connection: the URL's digest (the URL itself carries credentials)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _note_refusal(error: smtplib.SMTPException) -> None:
    state = smtp_state.get()
    if state is None:
        return
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        state["code"] = min(codes) if codes else None
    elif isinstance(error, smtplib.SMTPResponseException):
        state["code"] = error.smtp_code


class TrackedSMTP(smtplib.SMTP):
    """smtplib.SMTP that records how far each send got, and that can go back to a :class:`_Pool` for reuse."""

    pool: "_Pool | None" = None
    pool_key: tuple[object, ...] = ()
    uses = 0
    broken = False
    secured = False
    authenticated = False
    reused = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        state = smtp_state.get()
        if state is not None:
            state["handover"] = True
        try:
            reply: tuple[int, bytes] = super().data(msg)
        except smtplib.SMTPException as error:
            _note_refusal(error)
            raise
        accepted = on_accepted.get()
        if reply[0] == 250 and accepted is not None:
            accepted()
        return reply

    def sendmail(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = super().sendmail(*args, **kwargs)
        except smtplib.SMTPException as error:
            self.broken = True
            _note_refusal(error)
            raise
        except OSError:
            self.broken = True
            raise
        self.uses += 1
        if result:  # some recipient refused: do not carry its state over
            self.broken = True
        return result

    def starttls(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        if self.reused and self.secured:
            return 220, b"already secured"
        try:
            reply: tuple[int, bytes] = super().starttls(*args, **kwargs)
        except _SMTP_ERRORS:
            self.broken = True
            raise
        self.secured = True
        return reply

    def login(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        if self.reused and self.authenticated:
            return 235, b"already authenticated"
        try:
            reply: tuple[int, bytes] = super().login(*args, **kwargs)
        except _SMTP_ERRORS:
            self.broken = True
            raise
        self.authenticated = True
        return reply

    def quit(self) -> Any:
        if self.pool is not None and not self.broken and self.pool.give(self):
            return 221, b"kept for the next message"
        if self.broken:  # the conversation is in an unknown state: no QUIT that could wait out another timeout
            self.close()
            return 221, b"closed"
        with contextlib.suppress(*_SMTP_ERRORS):
            return super().quit()
        self.close()
        return 221, b"closed"

    def check(self, timeout: float) -> bool:
        """Whether this idle connection still answers (``NOOP`` → 250), with ``timeout`` for the next send."""
        self.timeout = timeout
        try:
            if self.sock is not None:
                self.sock.settimeout(timeout)
            code, _ = self.noop()
        except _SMTP_ERRORS:
            return False
        return code == 250


class TrackedSMTPSSL(TrackedSMTP, smtplib.SMTP_SSL):
    pass


class _Pool:
    """One thread's idle connections, by (class, host, port, URL digest)."""

    def __init__(self, max_messages: int, idle_seconds: float) -> None:
        self.max_messages, self.idle_seconds = max_messages, idle_seconds
        self.idle: dict[tuple[object, ...], tuple[TrackedSMTP, float]] = {}
        self.opened = 0
        self.reuses = 0

    def take(self, key: tuple[object, ...], timeout: float) -> TrackedSMTP | None:
        conn, since = self.idle.pop(key, (None, 0.0))
        if conn is None:
            return None
        if time.monotonic() - since > self.idle_seconds or not conn.check(timeout):
            _close(conn)
            return None
        conn.reused = True
        self.reuses += 1
        return conn

    def give(self, conn: TrackedSMTP) -> bool:
        if conn.uses >= self.max_messages or conn.pool_key in self.idle:
            return False
        self.idle[conn.pool_key] = (conn, time.monotonic())
        return True

    def close_all(self) -> None:
        for conn, _ in self.idle.values():
            conn.pool = None
            with contextlib.suppress(*_SMTP_ERRORS):
                smtplib.SMTP.quit(conn)
            _close(conn)
        self.idle.clear()


def _close(conn: TrackedSMTP) -> None:
    conn.pool = None
    with contextlib.suppress(*_SMTP_ERRORS):
        conn.close()


_pool: ContextVar[_Pool | None] = ContextVar("needlecare_smtp_pool", default=None)


@contextmanager
def reusing_connections(*, max_messages: int = 100, idle_seconds: float = 20.0) -> Iterator[_Pool | None]:
    """Within the block, sends from this thread keep and share their SMTP connections (see the module's
    docstring); every connection still open is closed when it ends. ``max_messages`` 0: no reuse."""
    if max_messages <= 0:
        yield None
        return
    pool = _Pool(max_messages, idle_seconds)
    token = _pool.set(pool)
    try:
        yield pool
    finally:
        _pool.reset(token)
        pool.close_all()


def _opener(cls: type[TrackedSMTP]) -> Callable[..., TrackedSMTP]:
    def open_connection(host: str = "", port: int = 0, *args: Any, **kwargs: Any) -> TrackedSMTP:
        pool, key = _pool.get(), reuse_key.get()
        if pool is None or key is None:
            return cls(host, port, *args, **kwargs)
        pool_key = (cls.__name__, host, port, key)
        conn = pool.take(pool_key, float(kwargs.get("timeout") or 15))
        if conn is None:
            conn = cls(host, port, *args, **kwargs)
            pool.opened += 1
            conn.pool, conn.pool_key = pool, pool_key
        return conn

    return open_connection


class TrackedSmtplib:
    """Stand-in for the ``smtplib`` module inside Apprise's email plugin."""

    SMTP = staticmethod(_opener(TrackedSMTP))
    SMTP_SSL = staticmethod(_opener(TrackedSMTPSSL))

    def __getattr__(self, name: str) -> Any:
        return getattr(smtplib, name)
