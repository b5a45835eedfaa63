"""Dashboard page times on a large synthetic clinic, as ratios against the same page on an empty clinic.

    .venv/bin/python -m bench.dashboard                       # 100 000 patients, SQLite (loaded once: ~8 min here)
    .venv/bin/python -m bench.dashboard --patients 10000      # ~35 s to load
    .venv/bin/python -m bench.dashboard --patients 10000 --pg-temp          # + a throwaway PostgreSQL cluster
    .venv/bin/python -m bench.dashboard --patients 10000 --pg-url postgresql+psycopg://u:p@host/db

Loading: ``needlecare.demo.cohort.iter_patients`` (episodes spread over the last ``--span-days`` days, seed
``--seed``) written by ``needlecare.demo.bulk.bulk_load`` into a SQLite file (``--sqlite``; reused when it already
holds the cohort). A PostgreSQL database gets the same rows copied from that file with executemany (faster
than generating the cohort twice) and is ANALYZEd, as autovacuum would; the SQLite file is not (the app never
runs ANALYZE). The empty clinic (the baseline) and one staff user per clinic are added to each database.

Timing: first ``needlecare dashboard refresh`` for each clinic (``report_store.refresh`` over the preset
views: what the ``refresh-dashboard-figures`` flow runs every 15 minutes), timed per view: the cost of the
figures, paid in the background. Then the real app (``create_app``) over ``TestClient`` in this process, logged
in as each clinic's staff user, with the snapshots' freshness limit raised so no background recompute runs
during the timing. Per page:

- **first**: the first request of the page's filter set with the in-process cache cleared: read from the store
  when the refresh stored that view, else computed in the request (the wait budget is raised so it waits
  instead of answering "computing");
- **stored**: the in-process cache cleared before every request, so the page reads and decodes the stored
  snapshot (a page after a restart or a refresh): median of ``--cold-repeat``;
- **warm**: the decoded snapshot kept in memory: median of ``--repeat`` (non-responders and escalation counts
  are still read live);
- **baseline**: the same page on the empty clinic in the same process and database.

Ratios are page / baseline. The outcome statements (``needlecare.outcomes.statements``) and the non-responder statements
are also timed one by one, and their query plans (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE) are saved. Results are
merged into ``bench/results/dashboard-<date>.json`` (one entry per database kind and cohort size).
"""

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, Integer, MetaData, func, insert, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from models import Clinic, ClinicCreate, Patient, Practitioner, StaffUser
from models.base import utcnow
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.demo.bulk import bulk_load
from needlecare.demo.clinic import ensure_clinic
from needlecare.demo.cohort import iter_patients
from needlecare.intake.clinics import add_clinic
from needlecare.intake.sample import DEMO_CLINIC_ID
from needlecare.outcomes import nonresponders
from needlecare.outcomes import statements as outcome_statements
from needlecare.outcomes import store as report_store
from needlecare.outcomes.filters import Filters
from needlecare.staff import auth
from needlecare.web.app import create_app
from needlecare.web.dashboard.snapshots import WAIT_STATE, report_cache

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
EMPTY_CLINIC = "bench-empty"
PASSWORD = "bench password, not a secret"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
TARGET_MS = 300.0
INJURY = "pfps"  # the most common injury of the synthetic cohort
PAGE_NAMES = (
    "overview",
    "overview_injury",
    "overview_practitioner",
    "overview_period_90d",
    "injury_page",
    "nonresponders",
    "export_csv",
)
OUTCOME_STATEMENTS = (
    "counts_stmt",
    "changes_stmt",
    "adverse_stmt",
    "escalation_counts_stmt",
    "ack_stmt",
    "recovery_stmt",
    "trajectory_stmt",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000, help="cohort size (default 100000)")
    parser.add_argument("--seed", type=int, default=7, help="cohort seed (default 7)")
    parser.add_argument("--span-days", type=float, default=330, help="episodes start over this many days (330)")
    parser.add_argument(
        "--sqlite",
        type=Path,
        default=None,
        help="SQLite file to load into / reuse (default: <tmp>/needlecare-bench/dashboard-<patients>-<seed>.db)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete the SQLite file first and load again")
    parser.add_argument("--load-only", action="store_true", help="load the SQLite file, time nothing")
    parser.add_argument("--skip-sqlite", action="store_true", help="load the SQLite file but time PostgreSQL only")
    parser.add_argument("--pg-url", default=None, help="also time PostgreSQL at this (empty) database URL")
    parser.add_argument("--pg-temp", action="store_true", help="also time PostgreSQL on a throwaway cluster")
    parser.add_argument("--repeat", type=int, default=5, help="warm requests per page (median; default 5)")
    parser.add_argument("--cold-repeat", type=int, default=3, help="stored requests per page (median; default 3)")
    parser.add_argument(
        "--pages",
        default="",
        help="comma-separated page names to time (default all: " + ", ".join(PAGE_NAMES) + ")",
    )
    parser.add_argument("--batch", type=int, default=100, help="bulk_load batch size (default 100)")
    parser.add_argument(
        "--out", type=Path, default=None, help="results file (default bench/results/dashboard-<date>.json)"
    )
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


# ------------------------------------------------------------------------------------------------- loading


def clinic_patients(engine: Engine, clinic_id: str) -> int:
    with Session(engine) as db:
        return int(db.exec(select(func.count()).select_from(Patient).where(Patient.clinic_id == clinic_id)).one())


def load_sqlite(path: Path, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The cohort in a SQLite file (loaded unless the file already holds it)."""
    url = f"sqlite:///{path}"
    if args.fresh and path.exists():
        path.unlink()
    database.upgrade(url)
    engine = database.get_engine(url)
    have = clinic_patients(engine, DEMO_CLINIC_ID)
    if have:
        log(f"reusing {path} ({have} patients)")
        return {"reused": True, "patients": have}
    now = utcnow()
    start = now - timedelta(days=args.span_days + 7)
    log(f"loading {args.patients} patients into {path} (bulk_load, batch {args.batch}) …")
    with Session(engine, expire_on_commit=False) as db:
        ensure_clinic(db, DEMO_CLINIC_ID, settings)
        result = bulk_load(
            db,
            iter_patients(args.patients, args.seed, start=start, span_days=args.span_days),
            settings=settings,
            now=now,
            batch=args.batch,
        )
    log(f"loaded {result.rows} rows in {result.seconds:.0f} s ({result.rows_per_second:.0f} rows/s)")
    return {
        "reused": False,
        "seconds": round(result.seconds, 1),
        "rows": {
            "patients": result.patients,
            "episodes": result.episodes,
            "sessions": result.sessions,
            "contacts": result.contacts,
            "responses": result.responses,
        },
        "now": now.isoformat(),
    }


def copy_database(source: Engine, target_url: str, chunk: int = 5000) -> float:
    """Every row of ``source`` into an empty, migrated ``target_url`` (executemany), then sequences and ANALYZE."""
    began = time.perf_counter()
    database.upgrade(target_url)
    target = database.get_engine(target_url)
    metadata: MetaData = SQLModel.metadata
    with source.connect() as src, target.begin() as dst:
        for table in metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            dst.execute(table.delete())
        for table in metadata.sorted_tables:
            result = src.execute(sa_select(table)).mappings()
            copied = 0
            while rows := result.fetchmany(chunk):
                dst.execute(insert(table), [dict(r) for r in rows])
                copied += len(rows)
            if copied and "id" in table.c and isinstance(table.c.id.type, Integer):
                sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
                dst.execute(text(f"SELECT setval({sequence}, (SELECT max(id) FROM {table.name}))"))
            log(f"  copied {copied} {table.name} rows")
    with target.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return time.perf_counter() - began


def prepare_clinics(engine: Engine, settings: Settings) -> dict[str, str]:
    """The empty baseline clinic and a staff user per clinic; returns {clinic id: staff email}."""
    emails = {DEMO_CLINIC_ID: f"bench@{DEMO_CLINIC_ID}.example", EMPTY_CLINIC: f"bench@{EMPTY_CLINIC}.example"}
    with Session(engine, expire_on_commit=False) as db:
        ensure_clinic(db, DEMO_CLINIC_ID, settings)
        if db.get(Clinic, EMPTY_CLINIC) is None:
            add_clinic(
                db, ClinicCreate(id=EMPTY_CLINIC, name="Empty clinic", email="empty@bench.example"), actor="bench"
            )
        for clinic_id, email in emails.items():
            if db.exec(select(StaffUser).where(StaffUser.email == email)).first() is None:
                auth.create_user(db, clinic_id, email, f"Bench {clinic_id}", PASSWORD)
    return emails


# ------------------------------------------------------------------------------------------------- timing


@contextmanager
def logged_in(settings: Settings, email: str) -> Iterator[TestClient]:
    app = create_app(settings)
    setattr(app.state, WAIT_STATE, 3600.0)  # a page without a stored snapshot waits for it (no "computing" page)
    report_cache(app).seconds = 24 * 3600.0  # no background recompute while timing
    with TestClient(app, raise_server_exceptions=True, follow_redirects=False) as client:
        page = client.get("/login")
        match = CSRF.search(page.text)
        assert match, "no CSRF field on /login"
        done = client.post("/login", data={"email": email, "password": PASSWORD, "csrf": match.group(1)})
        assert done.status_code == 303, done.text
        yield client


def timed(client: TestClient, path: str, *, cold: bool) -> tuple[float, int, int]:
    if cold:
        report_cache(client.app).clear()  # type: ignore[arg-type]
    began = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    return elapsed, response.status_code, len(response.content)


def median_ms(client: TestClient, path: str, *, cold: bool, repeat: int) -> dict[str, Any]:
    if not cold:
        timed(client, path, cold=False)  # fill the cache
    samples = [timed(client, path, cold=cold)[0] for _ in range(repeat)]
    return {"median_ms": round(statistics.median(samples), 1), "samples_ms": [round(s, 1) for s in samples]}


def pages(practitioner_id: int | None) -> list[tuple[str, str]]:
    found = [
        ("overview", "/dashboard"),
        ("overview_injury", f"/dashboard?injury={INJURY}"),
        ("overview_period_90d", "/dashboard?period=90d"),
        ("injury_page", f"/dashboard/injury/{INJURY}"),
        ("nonresponders", "/dashboard/nonresponders"),
        ("export_csv", "/dashboard/export.csv"),
    ]
    if practitioner_id is not None:
        found.insert(2, ("overview_practitioner", f"/dashboard?practitioner={practitioner_id}"))
    return found


def _note_view(views: dict[str, float], view: report_store.ReportView, result: report_store.ViewResult | None) -> None:
    if result is not None:
        views[view.name] = round(result.seconds, 2)


def refresh_views(engine: Engine) -> dict[str, Any]:
    """Precompute the preset views of both clinics (the flow's work), timed per view."""
    found: dict[str, Any] = {}
    with Session(engine, expire_on_commit=False) as db:
        for clinic_id in (DEMO_CLINIC_ID, EMPTY_CLINIC):
            clinic = db.get(Clinic, clinic_id)
            assert clinic is not None
            views: dict[str, float] = {}
            now = utcnow()
            counts = report_store.refresh(
                db, clinic_id, report_store.standard_views(clinic, now), now, partial(_note_view, views)
            )
            if counts.failed:
                raise RuntimeError(f"{counts.failed} view(s) of {clinic_id} failed (see the log)")
            found[clinic_id] = {"views_seconds": views, "total_seconds": round(counts.seconds, 1)}
            log(f"  refresh {clinic_id:18s} {counts.seconds:7.1f} s  {views}")
    return found


def time_pages(settings: Settings, emails: dict[str, str], args: argparse.Namespace, engine: Engine) -> dict[str, Any]:
    with Session(engine) as db:
        practitioner_id = db.exec(
            select(Practitioner.id).where(Practitioner.clinic_id == DEMO_CLINIC_ID).order_by(col(Practitioner.id))
        ).first()
    results: dict[str, Any] = {}
    with logged_in(settings, emails[DEMO_CLINIC_ID]) as big, logged_in(settings, emails[EMPTY_CLINIC]) as empty:
        wanted = [p for p in args.pages.split(",") if p]
        for name, path in pages(practitioner_id):
            if wanted and name not in wanted:
                continue
            baseline_path = path.replace(f"practitioner={practitioner_id}", "")
            row: dict[str, Any] = {"path": path, "first_ms": round(timed(big, path, cold=True)[0], 1)}
            timed(empty, baseline_path, cold=True)
            for kind, repeat in (("stored", args.cold_repeat), ("warm", args.repeat)):
                page = median_ms(big, path, cold=kind == "stored", repeat=repeat)
                base = median_ms(empty, baseline_path, cold=kind == "stored", repeat=repeat)
                row[kind] = page
                row[f"{kind}_baseline"] = base
                row[f"{kind}_ratio"] = round(page["median_ms"] / max(base["median_ms"], 0.001), 1)
            row["bytes"] = timed(big, path, cold=False)[2]
            results[name] = row
            log(
                f"  {name:24s} first {row['first_ms']:9.1f} ms  stored {row['stored']['median_ms']:7.1f} ms "
                f"({row['stored_ratio']:5.1f}×)  warm {row['warm']['median_ms']:7.1f} ms ({row['warm_ratio']:5.1f}×)  "
                f"baseline {row['stored_baseline']['median_ms']:.1f} / {row['warm_baseline']['median_ms']:.1f} ms"
            )
    return results


def time_statements(engine: Engine) -> dict[str, Any]:
    """Each outcome statement and the non-responder statements: time (best of 2) and the query plan."""
    sqlite = engine.dialect.name == "sqlite"
    now = utcnow()
    filters = Filters(clinic_id=DEMO_CLINIC_ID)

    def outcome_statement(name: str) -> Callable[[], Any]:
        return lambda: getattr(outcome_statements, name)(filters)

    statements: list[tuple[str, Callable[[], Any]]] = [(name, outcome_statement(name)) for name in OUTCOME_STATEMENTS]
    statements += [
        ("nonresponders.count_stmt", lambda: nonresponders.count_stmt(filters, now=now)),
        ("nonresponders.page_stmt", lambda: nonresponders.page_stmt(filters, now=now, limit=50, offset=0)),
    ]
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        for name, make in statements:
            stmt = make()
            best = min(_run(conn, stmt) for _ in range(2))
            sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
            plan = [" | ".join(str(c) for c in row) for row in conn.exec_driver_sql(prefix + sql).all()]
            found[name] = {"ms": round(best, 1), "plan": plan}
            log(f"  {name:34s} {best:9.1f} ms")
    return found


def _run(conn: Any, stmt: Any) -> float:
    began = time.perf_counter()
    conn.execute(stmt).all()
    return (time.perf_counter() - began) * 1000


def measure(kind: str, url: str, args: argparse.Namespace, data_dir: Path, loaded: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(env="test", data_dir=data_dir, database_url=url, public_base_url="http://bench.invalid")
    engine = database.get_engine(url)
    emails = prepare_clinics(engine, settings)
    log(f"{kind}: precomputing the preset views …")
    refreshed = refresh_views(engine)
    log(f"{kind}: timing pages …")
    result: dict[str, Any] = {
        "database": kind,
        "patients": clinic_patients(engine, DEMO_CLINIC_ID),
        "load": loaded,
        "refresh": refreshed,
        "pages": time_pages(settings, emails, args, engine),
    }
    log(f"{kind}: timing statements …")
    result["statements"] = time_statements(engine)
    return result


# --------------------------------------------------------------------------------------------------- main


@contextmanager
def postgres(args: argparse.Namespace) -> Iterator[str | None]:
    if args.pg_url:
        yield args.pg_url
        return
    if not args.pg_temp:
        yield None
        return
    sys.path.insert(0, str(ROOT))
    from tests.conftest import free_port
    from tests.pg import start_cluster

    cluster = start_cluster(free_port())
    try:
        yield cluster.url(cluster.create_database())
    finally:
        cluster.stop()


def save(results: list[dict[str, Any]], out: Path) -> None:
    document: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"runs": []}
    keys = {(r["database"], r["patients"]) for r in results}
    document["runs"] = [r for r in document.get("runs", []) if (r["database"], r["patients"]) not in keys] + results
    document["benchmark"] = "dashboard page times (bench/dashboard.py)"
    document["target_ms"] = TARGET_MS
    document["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    log(f"results in {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(tempfile.gettempdir()) / "needlecare-bench"
    data_dir.mkdir(parents=True, exist_ok=True)
    path = args.sqlite or data_dir / f"dashboard-{args.patients}-{args.seed}.db"
    url = f"sqlite:///{path}"
    settings = Settings(env="test", data_dir=data_dir, database_url=url, public_base_url="http://bench.invalid")
    loaded = load_sqlite(path, args, settings)
    if args.load_only:
        return 0
    started = datetime.now(UTC)
    out = args.out or RESULTS_DIR / f"dashboard-{started.date().isoformat()}.json"

    def keep(result: dict[str, Any]) -> None:
        result["date"] = started.isoformat(timespec="seconds")
        result["load_average"] = os.getloadavg()
        save([result], out)

    if not args.skip_sqlite:
        keep(measure("sqlite", url, args, data_dir, loaded))
    with postgres(args) as pg_url:
        if pg_url:
            log("postgresql: copying the rows …")
            seconds = copy_database(database.get_engine(url), pg_url)
            keep(measure("postgresql", pg_url, args, data_dir, {"copied_seconds": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
