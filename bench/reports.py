"""Outcome report compile time: grouped SQL (the product) against a pure-Python baseline over the same rows.

    .venv/bin/python -m bench.reports --patients 10000                    # new SQLite file, loaded (~35 s)
    .venv/bin/python -m bench.reports --sqlite /tmp/reportbench-100k.db --clinic riverside-physio
    .venv/bin/python -m bench.reports --sqlite /tmp/reportbench-100k.db --clinic riverside-physio --pg-temp
    .venv/bin/python -m bench.reports --database-url postgresql+psycopg://u:p@host/db --patients 10000

Database (not timed). ``--sqlite PATH`` measures that file, ``--database-url URL`` that database, neither a new
SQLite file in a temp dir. The schema is brought to the newest migration first (``needlecare.core.db.upgrade``, as
the app and the CLI do) and compared with the models (Alembic's ``compare_metadata``): a difference in a table
the benchmark reads stops it; one elsewhere (e.g. a newer table such as ``report_snapshot``, or a migration
that does not apply) is printed and recorded, not fatal. The cohort is loaded only when ``--clinic`` holds no
patient yet: ``needlecare.demo.cohort.iter_patients(--patients, --seed)``, episodes starting over the ``--span-days``
(330) days up to a week ago, as ``bench/dashboard.py`` loads it, written by ``needlecare.demo.bulk.bulk_load``. A
database that already holds the clinic is used as it is (whatever its size; the counts are recorded).
``--pg-temp``: the SQLite file (loaded if needed) is copied into a throwaway PostgreSQL cluster (``tests/pg.py``;
``bench.dashboard.copy_database``: executemany, then ANALYZE) and PostgreSQL is measured.
``--indexes FILE`` runs the ``upgrade()`` of a migration file (index operations, e.g. one not yet in the chain)
on the measured database, then ANALYZE (PostgreSQL: VACUUM ANALYZE); index-only differences from the models are
then printed, not fatal.

The two sides, each in its own ``Session``, over the whole clinic (no filters):

* product — ``needlecare.outcomes.reports.build_report(db, clinic, now=...)``, what the dashboard and the report
  CLI call: the clinic's own report policy, ``compute_outcomes`` (six grouped statements) then ``trajectory`` with
  ``rates=step_rates(report)`` (one statement); Python only finishes the aggregates;
* baseline — the straightforward way: every contact and answer row of the clinic into Python, then the core
  figures (per injury × step: contacts due and answered; paired pain change n, mean, SD, quartiles,
  responders) with ``statistics``.

Order, all in this process: one run of each side (warm-up: page cache, statement compilation), whose figures
are cross-checked (every injury × step group; any difference stops the benchmark with exit code 1 and writes
no result); then ``--repeat`` timed runs of each side, alternating product / baseline, reported as the median;
then one run of each side under tracemalloc, for the peak of Python allocations (tracemalloc slows Python-heavy
code far more than SQL, so it never runs during a timed run). SQLite's and PostgreSQL's own memory (sorts,
page cache) is not a Python allocation: to see it, each side also runs once in a fresh child process that
reports its max RSS (``--no-rss-children`` skips that). The process's own max RSS is recorded too.

Results: ``bench/results/reports-<date>-<database>-<patients>.json`` (or ``--out``).
"""

import argparse
import gc
import json
import math
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, col, func, select

from models import Contact, Episode, Patient, SurveyResponse, TreatmentSession
from models.base import utcnow
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.demo.bulk import bulk_load
from needlecare.demo.cohort import iter_patients
from needlecare.outcomes.reports import ReportData, build_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
CLINIC = "bench-clinic"
DUE = ("sent", "answered", "expired")
SIDES = ("product", "baseline")
PRODUCT_CALL = "needlecare.outcomes.reports.build_report(db, clinic, now=utcnow())"
# Tables read by build_report (needlecare.outcomes.statements), by the baseline and by the row counts below.
READS = frozenset(
    {
        "clinic",
        "patient",
        "practitioner",
        "episode",
        "treatment_session",
        "contact",
        "survey_response",
        "escalation_case",
        "case_rule",
    }
)

Baseline = dict[tuple[str, str], dict[str, Any]]


class Mismatch(Exception):
    """The baseline's figures differ from the product's."""


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000, help="cohort size when loading (default 100000)")
    parser.add_argument("--seed", type=int, default=7, help="cohort seed when loading (default 7)")
    parser.add_argument("--span-days", type=float, default=330, help="episodes start over this many days (330)")
    parser.add_argument("--clinic", default=CLINIC, help=f"clinic to report on / load into (default {CLINIC})")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--sqlite", type=Path, default=None, help="SQLite file to measure (loaded if the clinic is empty)"
    )
    where.add_argument("--database-url", default=None, help="database to measure (loaded if the clinic is empty)")
    parser.add_argument(
        "--pg-temp", action="store_true", help="copy the SQLite file into a throwaway PostgreSQL cluster, measure that"
    )
    parser.add_argument(
        "--indexes",
        type=Path,
        default=None,
        help="a migration file whose upgrade() (index operations) is applied before measuring, e.g. one not yet in "
        "the chain; then ANALYZE (PostgreSQL: VACUUM ANALYZE)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per side, median reported (default 1)")
    parser.add_argument("--no-rss-children", action="store_true", help="skip the per-side max RSS child runs")
    parser.add_argument("--out", type=Path, default=None, help="results file (default bench/results/reports-…json)")
    parser.add_argument("--rss-side", choices=SIDES, default=None, help=argparse.SUPPRESS)  # child run, internal
    args = parser.parse_args(argv)
    if args.pg_temp and args.database_url:
        parser.error("--pg-temp copies a SQLite file (--sqlite or a new one); it does not take --database-url")
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    return args


# ------------------------------------------------------------------------------------------------ the two sides


def product(db: Session, clinic: str) -> ReportData:
    return build_report(db, clinic, now=utcnow())


def baseline(db: Session, clinic: str) -> Baseline:
    """Every row into Python, then the figures."""
    contacts = db.exec(
        select(col(Contact.id), col(Contact.injury), col(Contact.step_id), col(Contact.status))
        .join(Episode, col(Episode.id) == col(Contact.episode_id))
        .where(Episode.clinic_id == clinic)
    ).all()
    answers = db.exec(
        select(SurveyResponse.contact_id, SurveyResponse.nprs_usual, Episode.baseline_pain_nprs)
        .join(Episode, col(Episode.id) == col(SurveyResponse.episode_id))
        .where(Episode.clinic_id == clinic)
    ).all()
    pain: dict[int | None, tuple[int | None, int | None]] = {c: (usual, base) for c, usual, base in answers}
    groups: Baseline = defaultdict(lambda: {"due": 0, "answered": 0, "changes": []})
    for contact_id, injury, step_id, status in contacts:
        if status not in DUE:
            continue
        group = groups[(injury, step_id)]
        group["due"] += 1
        if status == "answered":
            group["answered"] += 1
            usual, base = pain.get(contact_id, (None, None))
            if usual is not None and base is not None:
                group["changes"].append((usual - base, base))
    for group in groups.values():
        changes = [c for c, _ in group["changes"]]
        group["n"] = len(changes)
        if changes:
            group["mean"] = statistics.fmean(changes)
        if len(changes) >= 2:
            q = statistics.quantiles(changes, n=4, method="inclusive")
            group.update(sd=statistics.stdev(changes), q1=q[0], median=q[1], q3=q[2])
        group["responders"] = sum(1 for c, b in group["changes"] if -c >= 2 and -c * 100 >= 30 * b)
        del group["changes"]
    return dict(groups)


RUNS: dict[str, Callable[[Session, str], Any]] = {"product": product, "baseline": baseline}


def run(engine: Engine, side: str, clinic: str) -> Any:
    with Session(engine) as db:
        return RUNS[side](db, clinic)


def timed(engine: Engine, side: str, clinic: str) -> tuple[Any, float]:
    gc.collect()
    began = time.perf_counter()
    result = run(engine, side, clinic)
    return result, time.perf_counter() - began


def traced_peak_mib(engine: Engine, side: str, clinic: str) -> float:
    """Peak of Python allocations during one run (tracemalloc on for this run only)."""
    gc.collect()
    tracemalloc.start()
    try:
        run(engine, side, clinic)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def cross_check(report: ReportData, base: Baseline) -> dict[str, int]:
    """Every baseline figure against the product's raw figures; raises :class:`Mismatch` listing every difference."""
    problems: list[str] = []
    rows = {(row.injury, row.step_id): row for row in report.outcomes.rows}
    if set(rows) != set(base):
        problems.append(
            f"groups differ: only in product {sorted(set(rows) - set(base))}, only in baseline "
            f"{sorted(set(base) - set(rows))}"
        )
    pain_groups = 0
    for key in sorted(set(rows) & set(base)):
        row, b = rows[key], base[key]
        got = (row.raw.contacts_due, row.raw.contacts_answered)
        if got != (b["due"], b["answered"]):
            problems.append(f"{key}: due/answered product {got}, baseline {(b['due'], b['answered'])}")
        if b["n"] == 0:
            if row.pain is not None and row.pain.raw.n:
                problems.append(f"{key}: product has {row.pain.raw.n} paired pain answers, baseline none")
            continue
        if row.pain is None:
            problems.append(f"{key}: product has no pain change, baseline n={b['n']}")
            continue
        raw = row.pain.raw
        pain_groups += 1
        if (raw.n, raw.responders) != (b["n"], b["responders"]):
            problems.append(
                f"{key}: pain n/responders product {(raw.n, raw.responders)}, baseline {b['n'], b['responders']}"
            )
        for name in ("mean", "sd", "q1", "median", "q3"):
            if name not in b:
                continue
            value = getattr(raw.summary, name)
            if value is None or not math.isclose(value, b[name], rel_tol=1e-9, abs_tol=1e-9):
                problems.append(f"{key}: pain {name} product {value}, baseline {b[name]}")
    if problems:
        raise Mismatch(f"{len(problems)} difference(s) between product and baseline:\n  " + "\n  ".join(problems))
    return {"groups": len(rows), "pain_groups": pain_groups}


# ------------------------------------------------------------------------------------------ database and rows


def check_schema(url: str) -> dict[str, Any]:
    """Upgrade to the newest migration, then compare with the models; stops on a difference in a table read here."""
    engine = database.get_engine(url)
    with engine.connect() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
    upgrade_error = None
    try:
        database.upgrade(url)
    except Exception as exc:  # a migration being written elsewhere must not stop the benchmark
        upgrade_error = f"{type(exc).__name__}: {exc}"
        log(f"WARNING: upgrade failed, going on with the schema as it is: {upgrade_error}")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        after = context.get_current_revision()
        differences = compare_metadata(context, SQLModel.metadata)
    relevant: list[str] = []
    other: list[str] = []
    for diff in differences:
        is_index = not isinstance(diff, list) and diff[0] in ("add_index", "remove_index")
        (relevant if _diff_table(diff) in READS and not is_index else other).append(_describe(diff))
    if relevant:
        raise SystemExit(
            f"the schema of {_safe(url)} (revision {after}) differs from the models in tables this benchmark reads:\n  "
            + "\n  ".join(relevant)
        )
    for line in other:
        log(f"note: schema differs from the models outside the tables read here: {line}")
    return {"revision_before": before, "revision": after, "upgrade_error": upgrade_error, "other_differences": other}


def _diff_table(diff: Any) -> str | None:
    """The table an Alembic ``compare_metadata`` entry is about."""
    if isinstance(diff, list):  # modify_* entries come as a list of (op, schema, table, column, ...)
        return str(diff[0][2]) if diff else None
    op, subject = diff[0], diff[1]
    if op in ("add_table", "remove_table"):
        return str(subject.name)
    if op in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        return str(subject.table.name)
    if op in ("add_fk", "remove_fk"):
        return str(subject.parent.name)
    if op in ("add_column", "remove_column"):
        return str(diff[2])
    return None


def _describe(diff: Any) -> str:
    entries = diff if isinstance(diff, list) else [diff]
    return "; ".join(f"{entry[0]} {_diff_table(diff)}: {str(entry[1:])[:200]}" for entry in entries)


def _safe(url: str) -> str:
    return sqlalchemy.make_url(url).render_as_string(hide_password=True)


def clinic_patients(engine: Engine, clinic: str) -> int:
    with Session(engine) as db:
        return int(db.exec(select(func.count()).select_from(Patient).where(Patient.clinic_id == clinic)).one())


def prepare(url: str, args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """Schema checked; the cohort loaded unless the clinic already holds patients."""
    schema = check_schema(url)
    engine = database.get_engine(url)
    have = clinic_patients(engine, args.clinic)
    if have:
        if have != args.patients:
            log(f"note: {args.clinic} holds {have} patients (--patients {args.patients} is only used when loading)")
        log(f"reusing {_safe(url)}: {args.clinic} holds {have} patients")
        return {"schema": schema, "load": {"reused": True}}
    settings = Settings(env="test", data_dir=data_dir, database_url=url)
    now = utcnow()
    start = now - timedelta(days=args.span_days + 7)
    log(f"loading {args.patients} synthetic patients into {_safe(url)} (clinic {args.clinic}) …")
    with Session(engine, expire_on_commit=False) as db:
        loaded = bulk_load(
            db,
            iter_patients(args.patients, args.seed, start=start, span_days=args.span_days),
            settings=settings,
            clinic_id=args.clinic,
            now=now,
        )
    log(f"loaded {loaded.rows} rows in {loaded.seconds:.0f} s")
    load = {
        "reused": False,
        "seconds": round(loaded.seconds, 1),
        "seed": args.seed,
        "span_days": args.span_days,
        "now": now.isoformat(),
    }
    return {"schema": schema, "load": load}


def apply_indexes(url: str, path: Path) -> dict[str, Any]:
    """Run the ``upgrade()`` of the migration file at ``path`` on ``url`` (Alembic operations), then ANALYZE."""
    import importlib.util

    from alembic.operations import Operations

    spec = importlib.util.spec_from_file_location("bench_indexes", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--indexes {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    engine = database.get_engine(url)
    began = time.perf_counter()
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        module.upgrade()
    with engine.connect() as conn:
        analyze = "ANALYZE" if engine.dialect.name == "sqlite" else "VACUUM ANALYZE"
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(analyze)
    seconds = round(time.perf_counter() - began, 1)
    log(f"applied the indexes of {path.name} and {analyze} in {seconds} s")
    return {"file": path.name, "seconds": seconds}


def row_counts(engine: Engine, clinic: str) -> dict[str, int]:
    """The clinic's rows: what the report covers."""

    def count(stmt: Any) -> int:
        with Session(engine) as db:
            return int(db.exec(stmt).one())

    by_episode = col(Episode.clinic_id) == clinic
    return {
        "patients": clinic_patients(engine, clinic),
        "episodes": count(select(func.count()).select_from(Episode).where(by_episode)),
        "sessions": count(
            select(func.count()).select_from(TreatmentSession).where(TreatmentSession.clinic_id == clinic)
        ),
        "contacts": count(
            select(func.count())
            .select_from(Contact)
            .join(Episode, col(Episode.id) == col(Contact.episode_id))
            .where(by_episode)
        ),
        "contacts_due": count(
            select(func.count())
            .select_from(Contact)
            .join(Episode, col(Episode.id) == col(Contact.episode_id))
            .where(by_episode, col(Contact.status).in_(DUE))
        ),
        "answers": count(
            select(func.count())
            .select_from(SurveyResponse)
            .join(Episode, col(Episode.id) == col(SurveyResponse.episode_id))
            .where(by_episode)
        ),
    }


def versions(engine: Engine) -> dict[str, str]:
    found = {"python": platform.python_version(), "sqlalchemy": sqlalchemy.__version__}
    if engine.dialect.name == "sqlite":
        found["sqlite"] = sqlite3.sqlite_version
    else:
        with engine.connect() as conn:
            found[engine.dialect.name] = str(conn.exec_driver_sql("SHOW server_version").scalar())
    return found


def max_rss_mib() -> float:
    """Peak RSS of this process: VmHWM on Linux (``ru_maxrss`` survives fork + exec, so a child would report its
    parent's peak), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------------- measuring


def rss_child(url: str, side: str, clinic: str) -> dict[str, float]:
    """Max RSS of a fresh process that runs one side once."""
    command = [sys.executable, "-m", "bench.reports", "--rss-side", side, "--database-url", url, "--clinic", clinic]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {side} RSS run failed ({done.returncode}): {done.stderr[-2000:]}")
    found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def child_main(url: str, side: str, clinic: str) -> int:
    engine = database.get_engine(url)
    with engine.connect():
        pass
    before = max_rss_mib()
    began = time.perf_counter()
    run(engine, side, clinic)
    seconds = time.perf_counter() - began
    print(json.dumps({"rss_before_mib": round(before, 1), "max_rss_mib": round(max_rss_mib(), 1), "seconds": seconds}))
    return 0


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = database.get_engine(url)
    clinic = args.clinic
    rows = row_counts(engine, clinic)
    log(f"{args.clinic}: " + ", ".join(f"{v} {k}" for k, v in rows.items()))
    load_before = load_average()
    log(f"load average before: {load_before}")
    sides: dict[str, dict[str, Any]] = {side: {} for side in SIDES}

    log("warm-up run of each side, then the cross-check …")
    report, sides["product"]["warmup_seconds"] = timed(engine, "product", clinic)
    base, sides["baseline"]["warmup_seconds"] = timed(engine, "baseline", clinic)
    checked = cross_check(report, base)
    trajectory_points = len(report.trajectory)
    del report, base
    log(f"cross-check: {checked['groups']} groups agree ({checked['pain_groups']} with pain changes)")

    samples: dict[str, list[float]] = {side: [] for side in SIDES}
    loads: list[float] = []
    for i in range(args.repeat):
        for side in SIDES:
            _, seconds = timed(engine, side, clinic)
            samples[side].append(seconds)
            loads.append(load_average()[0])
            log(f"  run {i + 1}/{args.repeat} {side:8s} {seconds:8.2f} s   (load {loads[-1]})")
    rss_after_timing = max_rss_mib()

    for side in SIDES:
        sides[side]["peak_traced_mib"] = round(traced_peak_mib(engine, side, clinic), 1)
        log(f"  {side:8s} peak Python allocations {sides[side]['peak_traced_mib']} MiB (tracemalloc run)")
    if not args.no_rss_children:
        for side in SIDES:
            sides[side]["child_process"] = rss_child(url, side, clinic)
            log(f"  {side:8s} fresh process: max RSS {sides[side]['child_process']['max_rss_mib']} MiB")

    for side in SIDES:
        sides[side]["seconds"] = round(statistics.median(samples[side]), 3)
        sides[side]["samples_seconds"] = [round(s, 3) for s in samples[side]]
        sides[side]["warmup_seconds"] = round(sides[side]["warmup_seconds"], 3)
    sides["product"]["what"] = PRODUCT_CALL
    sides["baseline"]["what"] = "every contact and answer row of the clinic into Python, figures with statistics"
    product_s, baseline_s = sides["product"]["seconds"], sides["baseline"]["seconds"]
    result: dict[str, Any] = {
        "benchmark": "outcome report compile (bench/reports.py)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": engine.dialect.name,
        "clinic": clinic,
        "rows": rows,
        "repeat": args.repeat,
        "product": sides["product"],
        "baseline": sides["baseline"],
        "time_ratio_baseline_over_product": round(baseline_s / product_s, 3),
        "faster": "product" if product_s < baseline_s else "baseline",
        "peak_traced_ratio_baseline_over_product": round(
            sides["baseline"]["peak_traced_mib"] / max(sides["product"]["peak_traced_mib"], 0.01), 1
        ),
        "cross_checked": checked,
        "trajectory_points": trajectory_points,
        "max_rss_mib": {"after_timed_runs": round(rss_after_timing, 1), "at_end": round(max_rss_mib(), 1)},
        "load_average": {"before": load_before, "after": load_average(), "during_timed_runs_1min": loads},
        "versions": versions(engine),
        "cpus": os.cpu_count(),
    }
    return result


@contextmanager
def postgres_copy(sqlite_url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A throwaway PostgreSQL cluster holding a copy of the SQLite database."""
    sys.path.insert(0, str(ROOT))
    from bench.dashboard import copy_database
    from tests.conftest import free_port
    from tests.pg import start_cluster

    cluster = start_cluster(free_port())
    try:
        url = cluster.url(cluster.create_database())
        schema = check_schema(url)  # on the empty database: stop before a long copy if it cannot work
        log("copying the SQLite rows into PostgreSQL …")
        seconds = copy_database(database.get_engine(sqlite_url), url)
        log(f"copied in {seconds:.0f} s")
        yield url, schema
    finally:
        database.dispose_engines()
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rss_side:
        return child_main(args.database_url, args.rss_side, args.clinic)
    if args.database_url:
        url, source = args.database_url, _safe(args.database_url)
        data_dir = Path(tempfile.gettempdir())
    else:
        path = args.sqlite or Path(tempfile.mkdtemp(prefix="needlecare-bench-reports-")) / "bench.db"
        url, source, data_dir = f"sqlite:///{path}", str(path), path.parent
    prepared = prepare(url, args, data_dir)
    try:
        if args.pg_temp:
            began = time.perf_counter()
            with postgres_copy(url) as (pg_url, pg_schema):
                copied = round(time.perf_counter() - began, 1)
                indexes = apply_indexes(pg_url, args.indexes) if args.indexes else None
                result = measure(pg_url, args)
                result["source"] = f"throwaway PostgreSQL cluster (tests/pg.py), copied from {source} in {copied} s"
                result["postgresql_schema"] = pg_schema
        else:
            indexes = apply_indexes(url, args.indexes) if args.indexes else None
            result = measure(url, args)
            result["source"] = source
    except Mismatch as exc:
        print(f"CROSS-CHECK FAILED, no result written: {exc}", file=sys.stderr, flush=True)
        return 1
    result.update(prepared)
    result["indexes_applied"] = indexes
    print(json.dumps(result, indent=2))
    day = result["date"][:10]
    out = args.out or RESULTS_DIR / f"reports-{day}-{result['database']}-{result['rows']['patients']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table(result)
    log(f"wrote {out}")
    return 0


def table(result: dict[str, Any]) -> None:
    rows, p, b = result["rows"], result["product"], result["baseline"]
    print(
        f"\n{result['database']}, {rows['patients']} patients / {rows['answers']} answers / {rows['contacts']} contacts"
    )
    print(f"{'':28s}{'product':>12s}{'baseline':>12s}")
    print(f"{'seconds (median)':28s}{p['seconds']:12.2f}{b['seconds']:12.2f}")
    print(f"{'peak Python allocs, MiB':28s}{p['peak_traced_mib']:12.1f}{b['peak_traced_mib']:12.1f}")
    if "child_process" in p:
        print(f"{'fresh process max RSS, MiB':28s}{p['child_process']['max_rss_mib']:12.1f}", end="")
        print(f"{b['child_process']['max_rss_mib']:12.1f}")
    print(f"time ratio baseline/product {result['time_ratio_baseline_over_product']} ({result['faster']} faster)")
    print(f"load average before {result['load_average']['before']}, after {result['load_average']['after']}")


if __name__ == "__main__":
    raise SystemExit(main())
