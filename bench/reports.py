"""Outcome report compile time: grouped SQL (the product) against a pure-Python baseline over the same rows.

Setup (not timed): a synthetic cohort of N patients (needlecare.cohort, seeded) is bulk-loaded
(needlecare.demo.bulk_load) into an empty database. Then, timed in the same process:

* product — ``compute_outcomes`` + ``trajectory`` (a handful of grouped SQL statements; Python only
  finishes the aggregates);
* baseline — the straightforward way: load every contact and answer row into Python, then compute the
  same core figures (per injury × step: contacts due and answered, paired pain change mean / SD / median /
  quartiles, responders) with ``statistics``. The baseline's figures are checked against the product's.

Peak memory is measured with tracemalloc (Python allocations) for each phase, and the process's max RSS.

    .venv/bin/python -m bench.reports [--patients 100000] [--database-url URL] [--seed 7]
"""

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from models import Contact, Episode, SurveyResponse
from models.base import utcnow
from needlecare import db as database
from needlecare.cohort import iter_patients
from needlecare.demo import bulk_load
from needlecare.outcomes import compute_outcomes, trajectory
from needlecare.settings import Settings
from needlecare.suppression import ReportPolicy

ROOT = Path(__file__).resolve().parent.parent
CLINIC = "bench-clinic"
DUE = ("sent", "answered", "expired")


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, seconds, peak traced MiB."""
    tracemalloc.start()
    began = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - began
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return result, seconds, peak


def product(db: Session) -> Any:
    report = compute_outcomes(db, CLINIC, policy=ReportPolicy())
    points = trajectory(db, CLINIC, policy=ReportPolicy())
    return report, points


def baseline(db: Session) -> dict[tuple[str, str], dict[str, Any]]:
    """Every row into Python, then the figures."""
    contacts = db.exec(
        select(Contact.id, Contact.injury, Contact.step_id, Contact.status, Contact.episode_id)
        .join(Episode, col(Episode.id) == col(Contact.episode_id))
        .where(Episode.clinic_id == CLINIC)
    ).all()
    answers = db.exec(
        select(SurveyResponse.contact_id, SurveyResponse.nprs_usual, Episode.baseline_pain_nprs)
        .join(Episode, col(Episode.id) == col(SurveyResponse.episode_id))
        .where(Episode.clinic_id == CLINIC)
    ).all()
    pain = {contact_id: (usual, base) for contact_id, usual, base in answers}
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"due": 0, "answered": 0, "changes": []})
    for contact_id, injury, step_id, status, _episode in contacts:
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
        if len(changes) >= 2:
            q = statistics.quantiles(changes, n=4, method="inclusive")
            group.update(mean=statistics.fmean(changes), sd=statistics.stdev(changes), q1=q[0], median=q[1], q3=q[2])
        group["responders"] = sum(1 for c, b in group["changes"] if -c >= 2 and -c * 100 >= 30 * b)
        del group["changes"]
    return dict(groups)


def agree(report: Any, base: dict[tuple[str, str], dict[str, Any]]) -> int:
    """Figures compared between the two ways; raises on a mismatch."""
    compared = 0
    for row in report.rows:
        b = base.get((row.injury, row.step_id))
        if b is None:
            continue
        assert (row.raw.contacts_due, row.raw.contacts_answered) == (b["due"], b["answered"]), row.step_id
        if row.pain is not None and b["n"] >= 2:
            s = row.pain.raw.summary
            assert s.n == b["n"] and abs((s.mean or 0) - b["mean"]) < 1e-9 and abs((s.median or 0) - b["median"]) < 1e-9
            assert row.pain.raw.responders == b["responders"]
            compared += 1
    return compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="needlecare-bench-reports-"))
    url = args.database_url or f"sqlite:///{root / 'bench.db'}"
    database.upgrade(url)
    settings = Settings(env="test", data_dir=root, database_url=url)
    now = utcnow()
    engine = database.get_engine(url)
    with Session(engine, expire_on_commit=False) as db:
        print(f"loading {args.patients} synthetic patients into {url.split('://')[0]} ...", flush=True)
        loaded = bulk_load(
            db,
            iter_patients(args.patients, args.seed, start=now - timedelta(weeks=14)),
            settings=settings,
            clinic_id=CLINIC,
            now=now,
        )
        answers = db.exec(select(func.count()).select_from(SurveyResponse)).one()
        print(f"loaded {loaded.rows} rows ({answers} answers) in {loaded.seconds:.1f} s", flush=True)
    with Session(engine) as db:
        product(db)  # warm-up: caches, statement compilation
    with Session(engine) as db:
        (report, points), product_s, product_mib = measure(lambda: product(db))
    with Session(engine) as db:
        base, baseline_s, baseline_mib = measure(lambda: baseline(db))
    compared = agree(report, base)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "date": date.today().isoformat(),
        "database": url.split("://")[0],
        "patients": args.patients,
        "answers": answers,
        "rows_loaded": loaded.rows,
        "load_seconds": round(loaded.seconds, 1),
        "product_seconds": round(product_s, 3),
        "product_peak_mib": round(product_mib, 1),
        "baseline_seconds": round(baseline_s, 3),
        "baseline_peak_mib": round(baseline_mib, 1),
        "speedup": round(baseline_s / product_s, 2),
        "memory_ratio": round(baseline_mib / max(product_mib, 0.01), 1),
        "groups_cross_checked": compared,
        "trajectory_points": len(points),
        "max_rss_mib": round(rss_mib, 1),
        "python": platform.python_version(),
        "cpus": 2,
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / f"reports-{result['date']}-{result['database']}-{args.patients}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
