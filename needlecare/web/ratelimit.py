"""Rate limits shared by every web worker: token buckets and growing delays in the application database.

A route opts in with one dependency, named after its limit::

    @router.post("/api/v1/events/session-completed", dependencies=[rate_limited("webhook")])

==========  ===========================================================  ===================================
limit       keyed by                                                     settings (defaults in settings.py)
==========  ===========================================================  ===================================
webhook     the ``clinic_id`` the body names, with the sending address   ``webhook_rate`` / ``webhook_burst``
survey      the survey link (token), and separately the client address   ``survey_token_*``, ``survey_client_*``
login       the client address                                           ``login_client_rate`` / ``_burst``
==========  ===========================================================  ===================================

Over a limit the request is answered 429 with ``Retry-After`` (whole seconds) before any work is done. The
login route calls :func:`login_client` itself, so its 429 is the login page with a message. Logins
also wait per email (:func:`attempt` / :func:`succeeded`, used by ``needlecare.web.loginguard``): after
``login_free_failures`` attempts without a success, each further attempt has to wait ``login_delay_seconds``,
doubling up to ``login_delay_max_seconds``; never a lockout, and a browser that logged in to the account before
(a signed device cookie) is not held up by strangers' attempts.

The state is one row per key (``models.RateBucket``), changed by one atomic statement (INSERT … ON CONFLICT DO
UPDATE … RETURNING) or, for delays, under the row's lock, so several workers share one limit on SQLite and
PostgreSQL alike. Keys are HMACs under the secret key: no address, token, clinic or email is stored. Rows
untouched for a day are pruned now and then. Behind a reverse proxy, run uvicorn with ``--proxy-headers`` (and
``--forwarded-allow-ips``) so the client address is the real one.

:class:`Slots` bounds concurrent expensive work in one process (password hashing, PDF printing).
"""

import hashlib
import hmac
import math
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models import RateBucket
from needlecare.core.db import get_engine
from needlecare.core.settings import Settings
from needlecare.web.bodies import BodyTooLarge, read_limited
from needlecare.web.deps import SettingsDep

PRUNE_AFTER_SECONDS = 86_400.0
PRUNE_CHANCE = 0.002
CLINIC_IN_BODY = re.compile(rb'"clinic_id"\s*:\s*"([^"\\]{1,64})"')
WEBHOOK_BODY_BYTES = 64 * 1024
LIMITS = ("webhook", "survey", "login")

TOO_MANY: dict[str, Any] = {
    "description": "Too many requests for this limit: wait the seconds in Retry-After, then send again",
    "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
}
"""The OpenAPI description of a 429, for the ``responses`` of a limited route."""

_TABLE: Any = RateBucket.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Verdict:
    """Whether a request may go on; ``retry_after`` whole seconds to wait when not."""

    allowed: bool
    retry_after: int = 0


def key_for(settings: Settings, scope: str, value: str) -> str:
    """The stored key of one limited thing: the scope and an HMAC of the value (never the value itself)."""
    secret = settings.secret_key.get_secret_value().encode("utf-8")
    digest = hmac.new(secret, f"needlecare-ratelimit\x00{scope}\x00{value}".encode(), hashlib.sha256)
    return f"{scope}:{digest.hexdigest()[:40]}"


def _insert(engine: Engine) -> Any:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(_TABLE)
    if dialect == "sqlite":
        return sqlite.insert(_TABLE)
    raise RuntimeError(f"rate limits are not supported on {dialect}")  # pragma: no cover


def _maybe_prune(engine: Engine, now: float) -> None:
    if random.random() < PRUNE_CHANCE:
        prune(engine, now - PRUNE_AFTER_SECONDS)


def prune(engine: Engine, older_than: float) -> int:
    """Delete the keys not used since ``older_than`` (unix seconds) and not waiting; returns how many."""
    with engine.begin() as connection:
        result = connection.execute(delete(_TABLE).where(_TABLE.c.stamp < older_than, _TABLE.c.until < older_than))
    return int(result.rowcount or 0)


def hit(engine: Engine, key: str, rate: float, burst: int, now: float | None = None) -> Verdict:
    """Take one request from the key's token bucket (``burst`` deep, refilled at ``rate`` per second).

    One statement: the refill, the check and the take happen atomically in the database.
    """
    now = time.time() if now is None else now
    elapsed = case((_TABLE.c.stamp > now, 0.0), else_=now - _TABLE.c.stamp)
    grown = _TABLE.c.tokens + elapsed * rate
    refilled = case((grown > burst, float(burst)), else_=grown)
    statement = (
        _insert(engine)
        .values(key=key, tokens=float(burst) - 1.0, stamp=now, allowed=True, strikes=0, until=0.0)
        .on_conflict_do_update(
            index_elements=["key"],
            set_={
                "tokens": case((refilled >= 1.0, refilled - 1.0), else_=refilled),
                "stamp": case((_TABLE.c.stamp > now, _TABLE.c.stamp), else_=now),
                "allowed": refilled >= 1.0,
            },
        )
        .returning(_TABLE.c.tokens, _TABLE.c.allowed)
    )
    with engine.begin() as connection:
        tokens, allowed = connection.execute(statement).one()
    _maybe_prune(engine, now)
    if allowed:
        return Verdict(True)
    return Verdict(False, max(1, math.ceil((1.0 - float(tokens)) / rate)))


def delay_for(strikes: int, free: int, first: float, longest: float) -> float:
    """Seconds the attempt after ``strikes`` attempts without a success must wait."""
    if strikes < free:
        return 0.0
    return min(longest, first * 2.0 ** min(strikes - free, 60))


def attempt(engine: Engine, key: str, *, free: int, first: float, longest: float, now: float | None = None) -> Verdict:
    """Count an attempt against the key's growing delay; refused (with the wait) while the delay runs.

    Every attempt counts as a failure until :func:`succeeded` clears the key, so parallel attempts cannot slip
    past the count. A key idle for ``PRUNE_AFTER_SECONDS`` starts again from zero.
    """
    now = time.time() if now is None else now
    with engine.begin() as connection:  # the insert takes SQLite's write lock; FOR UPDATE the row's on PostgreSQL
        connection.execute(
            _insert(engine)
            .values(key=key, tokens=0.0, stamp=now, allowed=True, strikes=0, until=0.0)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        strikes, until, stamp = connection.execute(
            select(_TABLE.c.strikes, _TABLE.c.until, _TABLE.c.stamp).where(_TABLE.c.key == key).with_for_update()
        ).one()
        if until > now:
            connection.execute(update(_TABLE).where(_TABLE.c.key == key).values(allowed=False))
            return Verdict(False, max(1, math.ceil(until - now)))
        if now - stamp > PRUNE_AFTER_SECONDS:
            strikes = 0
        strikes += 1
        wait = delay_for(strikes, free, first, longest)
        connection.execute(
            update(_TABLE)
            .where(_TABLE.c.key == key)
            .values(strikes=strikes, until=now + wait if wait > 0 else 0.0, stamp=now, allowed=True)
        )
    _maybe_prune(engine, now)
    return Verdict(True)


def succeeded(engine: Engine, key: str) -> None:
    """Clear the key's growing delay (a successful login)."""
    with engine.begin() as connection:
        connection.execute(update(_TABLE).where(_TABLE.c.key == key).values(strikes=0, until=0.0, allowed=True))


def too_many(verdict: Verdict, what: str) -> HTTPException:
    """The 429 for a refused request, with Retry-After."""
    return HTTPException(
        status_code=429,
        detail=f"too many {what}; try again in {verdict.retry_after} s",
        headers={"Retry-After": str(verdict.retry_after)},
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def _webhook_keys(request: Request, settings: Settings) -> list[tuple[str, float, int]]:
    try:
        raw = await read_limited(request, WEBHOOK_BODY_BYTES)
    except BodyTooLarge:
        return []  # the route answers 413
    match = CLINIC_IN_BODY.search(raw)
    clinic = match.group(1).decode("utf-8", "replace") if match else ""
    value = f"{clinic}\x00{client_address(request)}"
    return [(key_for(settings, "webhook", value), settings.webhook_rate, settings.webhook_burst)]


def _survey_keys(request: Request, settings: Settings) -> list[tuple[str, float, int]]:
    token = str(request.path_params.get("token", ""))
    return [
        (key_for(settings, "survey-client", client_address(request)), settings.survey_client_rate,
         settings.survey_client_burst),
        (key_for(settings, "survey-token", token), settings.survey_token_rate, settings.survey_token_burst),
    ]  # fmt: skip


def _login_keys(request: Request, settings: Settings) -> list[tuple[str, float, int]]:
    address = client_address(request)
    return [(key_for(settings, "login-client", address), settings.login_client_rate, settings.login_client_burst)]


def login_client(request: Request, settings: Settings) -> Verdict:
    """The login limit per client address (the login page renders its own 429 page with it)."""
    if not settings.rate_limits:
        return Verdict(True)
    return _check(settings, _login_keys(request, settings))


def _check(settings: Settings, keys: list[tuple[str, float, int]]) -> Verdict:
    engine = get_engine(settings.resolved_database_url)
    for key, rate, burst in keys:
        verdict = hit(engine, key, rate, burst)
        if not verdict.allowed:
            return verdict
    return Verdict(True)


def rate_limited(limit: str) -> Any:
    """A route dependency applying one of :data:`LIMITS` (429 with Retry-After when over it)."""
    if limit not in LIMITS:
        raise ValueError(f"unknown rate limit {limit!r}; one of {', '.join(LIMITS)}")

    async def check(request: Request, settings: SettingsDep) -> None:
        if not settings.rate_limits:
            return
        if limit == "webhook":
            keys = await _webhook_keys(request, settings)
        elif limit == "survey":
            keys = _survey_keys(request, settings)
        else:
            keys = _login_keys(request, settings)
        verdict = await run_in_threadpool(_check, settings, keys)
        if not verdict.allowed:
            raise too_many(verdict, "requests")

    return Depends(check)


class Slots:
    """At most ``size`` holders at once in this process; :meth:`take` waits up to a timeout for a free slot.

    ``busy`` is how many are held now and ``peak`` the most ever held at once (for logs and tests).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self.peak = 0
        self._semaphore = threading.BoundedSemaphore(size)
        self._count = threading.Lock()

    def take(self, timeout: float) -> bool:
        """True once a slot is held (give it back with :meth:`give_back`); False after ``timeout`` seconds."""
        if not self._semaphore.acquire(timeout=timeout):
            return False
        with self._count:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
        return True

    def give_back(self) -> None:
        with self._count:
            self.busy -= 1
        self._semaphore.release()


_SLOTS_LOCK = threading.Lock()


def slots(app: FastAPI, name: str, size: int) -> Slots:
    """The app's :class:`Slots` called ``name`` (created with ``size`` on first use)."""
    attribute = f"slots_{name}"
    with _SLOTS_LOCK:
        found = getattr(app.state, attribute, None)
        if not isinstance(found, Slots):
            found = Slots(size)
            setattr(app.state, attribute, found)
    return found
