"""The dashboard's figures from stored snapshots, recomputed in the background.

Figures come from :func:`needlecare.outcomes.reports.build_report` (suppressed per the report policy), which reads
every answer of the clinic (seconds at 10k patients, tens of seconds at 100k), so pages never compute them in the
request: they read a stored snapshot (table ``report_snapshot``, :mod:`needlecare.outcomes.store`) for the filters,
the exact injury's first and then the all-injuries one (an injury's figures do not depend on the others). The
``refresh-dashboard-figures`` flow precomputes every preset period for all injuries and practitioners; other
filter sets are stored the first time they are asked for. A process keeps the newest decoded snapshots
(:class:`SnapshotCache`) so a chart is drawn once per snapshot.

- A snapshot younger than :data:`CACHE_SECONDS` is served as it is.
- An older one is served too, while a background thread (one per view and process) computes and stores its
  replacement.
- Without one, a background thread computes it and the page waits up to :data:`WAIT_SECONDS`
  (``app.state.dashboard_wait_seconds`` overrides it): if the figures are ready by then the page shows them,
  otherwise it answers "Computing these figures", which reloads itself every few seconds. A computation that
  failed is reported by the next page (503, logged with the clinic, view key and exception type only); the page
  after that tries again.

Downloads use a snapshot of exactly their filters no older than :data:`CACHE_SECONDS`, or compute (and store) one
while the request waits. Each page says when its figures were computed.

Every computation asked for by a page or download is followed by :func:`needlecare.outcomes.store.trim`: besides
the precomputed views of today, a clinic keeps at most ``dashboard_custom_snapshots`` (a setting) other snapshots,
the most recently computed, so custom periods do not add a stored row per request without end.
"""

import logging
import threading
import time as timer
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlmodel import Session

from models import Clinic
from models.base import utcnow
from needlecare.core.db import get_engine
from needlecare.outcomes import store as report_store
from needlecare.outcomes.reports import ReportData
from needlecare.web.dashboard.filters import View
from needlecare.web.dashboard.views import NO_STORE, Page
from needlecare.web.templating import templates

log = logging.getLogger(__name__)

CACHE_SECONDS = 900.0
"""Figures older than this are recomputed in the background (pages) or before a download. The same 15 minutes
as the ``refresh-dashboard-figures`` schedule: a shorter limit would have pages recompute the preset views
between two flow runs (tens of seconds of database work each at 100k patients)."""
CACHE_ENTRIES = 32
WAIT_SECONDS = 1.0
"""How long a page without a stored snapshot waits for its computation before answering "computing"."""
WAIT_STATE = "dashboard_wait_seconds"
REFRESH_SECONDS = 5


@dataclass
class Entry:
    """A decoded snapshot, and the charts drawn from it."""

    data: ReportData
    computed_at: datetime
    charts: dict[str, str] = field(default_factory=dict)


@dataclass
class Job:
    """One background computation of a snapshot."""

    started_at: datetime
    done: threading.Event = field(default_factory=threading.Event)
    entry: Entry | None = None
    error: str | None = None  # the exception's type name when it failed
    failed_at: datetime | None = None


Compute = Callable[[], ReportData]
_JobKey = tuple[str, str, str]  # (database, clinic, view key)


class SnapshotCache:
    """One app's decoded snapshots and the background computations of new ones.

    Decoded snapshots are kept per (database, clinic, view key, computed_at), the ``entries`` most recently used
    (an entry is replaced when a newer snapshot of its view is read). At most one computation per (database,
    clinic, view key) runs at a time in this process; the last failure of a view is kept until a page shows it.
    """

    def __init__(self, seconds: float = CACHE_SECONDS, entries: int = CACHE_ENTRIES) -> None:
        self.seconds = seconds
        self.entries = entries
        self._items: OrderedDict[tuple[str, str, str, datetime], Entry] = OrderedDict()
        self._jobs: dict[_JobKey, Job] = {}
        self._threads: dict[_JobKey, threading.Thread] = {}
        self._failed: OrderedDict[_JobKey, Job] = OrderedDict()
        self._lock = threading.Lock()

    def stale(self, computed_at: datetime, now: datetime) -> bool:
        """True when figures computed at ``computed_at`` are older than ``seconds`` at ``now``."""
        return (now - computed_at).total_seconds() > self.seconds

    def entry(self, db: Session, database: str, clinic_id: str, key: str, found: report_store.Stamp) -> Entry | None:
        """The snapshot ``found`` refers to, decoded once; None when it is gone or no longer decodes."""
        with self._lock:
            entry = self._items.get((database, clinic_id, key, found.computed_at))
            if entry is not None:
                self._items.move_to_end((database, clinic_id, key, found.computed_at))
                return entry
        stored = report_store.get(db, clinic_id, key)
        if stored is None:
            return None
        return self.remember(database, clinic_id, key, stored.data, stored.computed_at)

    def remember(self, database: str, clinic_id: str, key: str, data: ReportData, computed_at: datetime) -> Entry:
        entry = Entry(data=data, computed_at=computed_at)
        with self._lock:
            for old in [k for k in self._items if k[:3] == (database, clinic_id, key)]:
                del self._items[old]
            self._items[(database, clinic_id, key, computed_at)] = entry
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return entry

    def start(self, database: str, clinic_id: str, key: str, compute: Compute) -> Job:
        """The computation of this view under way in this process, or a new one in a background thread.

        ``compute`` stores the snapshot and returns the report; the job then holds it as a decoded entry.
        """
        job_key = (database, clinic_id, key)
        with self._lock:
            job = self._jobs.get(job_key)
            if job is not None:
                return job
            job = Job(started_at=utcnow())
            thread = threading.Thread(target=self._run, args=(job_key, job, compute), name="dashboard-figures")
            thread.daemon = True
            self._jobs[job_key] = job
            self._threads[job_key] = thread
            self._failed.pop(job_key, None)
        thread.start()
        return job

    def _run(self, job_key: _JobKey, job: Job, compute: Compute) -> None:
        database, clinic_id, key = job_key
        try:
            data = compute()
            job.entry = self.remember(database, clinic_id, key, data, data.generated_at)
        except Exception as exc:  # shown by the next page without figures; a stale snapshot stays in use
            job.error = type(exc).__name__
            job.failed_at = utcnow()
            log.error("dashboard figures for clinic %s, view %s failed: %s", clinic_id, key, job.error)
        finally:
            with self._lock:
                self._jobs.pop(job_key, None)
                self._threads.pop(job_key, None)
                if job.error is not None:
                    self._failed[job_key] = job
                    while len(self._failed) > self.entries:
                        self._failed.popitem(last=False)
            job.done.set()

    def take_failure(self, database: str, clinic_id: str, key: str) -> Job | None:
        """The view's last failed computation, once (the page after the one that shows it tries again)."""
        with self._lock:
            return self._failed.pop((database, clinic_id, key), None)

    def wait(self, timeout: float = 60.0) -> None:
        """Until no computation is under way (tests and benchmarks)."""
        deadline = timer.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._threads.values())
            if not threads:
                return
            for thread in threads:
                thread.join(max(0.0, deadline - timer.monotonic()))
            if timer.monotonic() >= deadline:
                raise TimeoutError("dashboard figures still being computed")

    def clear(self) -> None:
        """Forget the decoded snapshots and failures (the stored snapshots stay)."""
        with self._lock:
            self._items.clear()
            self._failed.clear()


def report_cache(app: FastAPI) -> SnapshotCache:
    """The app's snapshot cache (created on first use); benchmarks clear it to time a page that decodes."""
    cache = getattr(app.state, "dashboard_cache", None)
    if not isinstance(cache, SnapshotCache):
        cache = SnapshotCache()
        app.state.dashboard_cache = cache
    return cache


def _wait_seconds(request: Request) -> float:
    return float(getattr(request.app.state, WAIT_STATE, WAIT_SECONDS))


def _filters(view: View, injury: str | None) -> dict[str, Any]:
    return {"injury": injury, "practitioner_id": view.practitioner_id, "since": view.since, "until": view.until}


def _key(view: View, injury: str | None) -> str:
    return report_store.view_key(injury, view.practitioner_id, view.since, view.until)


def _trim(db: Session, clinic_id: str, limit: int) -> None:
    """Keep today's precomputed views and at most ``limit`` other snapshots of the clinic."""
    clinic = db.get(Clinic, clinic_id)
    if clinic is None:
        return
    keep = [view.key for view in report_store.standard_views(clinic, utcnow())]
    removed = report_store.trim(db, clinic_id, keep, limit)
    if removed:
        log.info("removed %d older dashboard snapshots of clinic %s", removed, clinic_id)


def _custom_limit(request: Request) -> int:
    return int(request.app.state.settings.dashboard_custom_snapshots)


def _computation(database: str, clinic_id: str, view: View, injury: str | None, limit: int) -> Compute:
    """Compute and store the snapshot of these filters, in a session of its own (for a background thread)."""

    def compute() -> ReportData:
        with Session(get_engine(database), expire_on_commit=False) as own:
            data, seconds = report_store.compute(own, clinic_id, **_filters(view, injury))
            report_store.put(own, clinic_id, _key(view, injury), data, seconds)
            _trim(own, clinic_id, limit)
        return data

    return compute


def page_report(page: Page, db: Session, database: str, view: View) -> Entry | Response:
    """The figures of a page, or the "computing" / "failed" page while there are none (see the module docstring).

    The exact injury's snapshot is read first, then the all-injuries one; a snapshot older than ``seconds`` is
    shown while its replacement is computed in the background.
    """
    cache = report_cache(page.request.app)
    clinic_id = page.clinic.id
    limit = _custom_limit(page.request)
    for injury in [view.injury] if view.injury is None else [view.injury, None]:
        key = _key(view, injury)
        found = report_store.stamp(db, clinic_id, key)
        if found is None:
            continue
        entry = cache.entry(db, database, clinic_id, key, found)
        if entry is None:  # no longer decodes: as if missing
            continue
        if cache.stale(found.computed_at, page.now):
            cache.start(database, clinic_id, key, _computation(database, clinic_id, view, injury, limit))
        return entry
    key = _key(view, view.injury)
    failed = cache.take_failure(database, clinic_id, key)
    if failed is not None:
        return _failed(page, failed)
    job = cache.start(database, clinic_id, key, _computation(database, clinic_id, view, view.injury, limit))
    if job.done.wait(max(0.0, _wait_seconds(page.request))):
        if job.entry is not None:
            return job.entry
        cache.take_failure(database, clinic_id, key)  # shown now; the next page tries again
        return _failed(page, job)
    return _computing(page, job)


def fresh_report(page: Page, db: Session, database: str, view: View) -> Entry:
    """A download's figures: the snapshot of exactly these filters if it is fresh, else computed now (and stored)."""
    cache = report_cache(page.request.app)
    clinic_id = page.clinic.id
    key = _key(view, view.injury)
    found = report_store.stamp(db, clinic_id, key)
    if found is not None and not cache.stale(found.computed_at, page.now):
        entry = cache.entry(db, database, clinic_id, key, found)
        if entry is not None:
            return entry
    data, seconds = report_store.compute(db, clinic_id, **_filters(view, view.injury))
    try:
        report_store.put(db, clinic_id, key, data, seconds)
        _trim(db, clinic_id, _custom_limit(page.request))
    except Exception as exc:  # the download does not need the stored copy
        log.warning("storing dashboard figures for clinic %s, view %s failed: %s", clinic_id, key, type(exc).__name__)
    return cache.remember(database, clinic_id, key, data, data.generated_at)


def _computing(page: Page, job: Job) -> Response:
    context = page.context(started_at=job.started_at, refresh_seconds=REFRESH_SECONDS)
    return templates.TemplateResponse(page.request, "dashboard_computing.html.j2", context, headers=NO_STORE)


def _failed(page: Page, job: Job) -> Response:
    context = page.context(started_at=job.started_at, failed_at=job.failed_at or job.started_at)
    headers = {**NO_STORE, "Retry-After": str(REFRESH_SECONDS)}
    return templates.TemplateResponse(
        page.request, "dashboard_failed.html.j2", context, status_code=503, headers=headers
    )
