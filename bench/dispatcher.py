"""Dispatcher throughput: due follow-up contacts claimed, rendered and handed to SMTP per second.

Setup (not timed): N sessions are recorded and planned at time T, and their aftercare notices are
marked sent, so that at T + 24 h exactly N "1-day check-in" contacts are due. Then, timed:

* product shape — one dispatch pass (``needlecare dispatch --as-of``): claim every due contact,
  apply the send-time checks, render the survey email and hand it to SMTP (a local aiosmtpd sink), on the
  pass's pool of SENDER_CONCURRENCY senders, each reusing its SMTP connection;
* one at a time — the same pass, in the same process, over a second database set up the same way, with
  ``sender_concurrency=1`` and ``smtp_reuse_messages=0`` (the pass as it was before the pool: one message after
  another, a new SMTP connection each); the two passes alternate ``--repeat`` times, each on fresh rows;
* baseline — one process per contact (the floor of "one flow run each": a served Prefect flow run
  is a new Python process, plus Prefect's own start-up on top), measured on a sample of K contacts
  in the same run and reported per contact.

    .venv/bin/python -m bench.dispatcher [--contacts 2000] [--repeat 2] [--concurrency 8]
                                         [--baseline-sample 5] [--pg-temp]

The 1-minute load average is printed and stored with every figure (the machine is shared).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col

from models import ClinicCreate, Notification
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import start_capture
from needlecare.followup import planning
from needlecare.followup.outbox import run_pass
from needlecare.intake import ingest
from needlecare.intake.clinics import add_clinic
from tests.conftest import free_port
from tests.factories import event_body
from tests.pg import start_cluster

ROOT = Path(__file__).resolve().parent.parent


def _setup(settings: Settings, n: int, completed: datetime) -> None:
    url = settings.resolved_database_url
    database.upgrade(url)
    with Session(database.get_engine(url)) as db:
        add_clinic(
            db,
            ClinicCreate(id="riverside-physio", name="Riverside Physio", email="desk@riverside.example"),
            actor="bench",
        )
        for i in range(1, n + 1):
            body = event_body(i, completed_at=completed.isoformat(), patient__timezone="UTC")
            ingest.record(db, ingest.validate(body), actor="bench")
        while planning.plan_pending_sessions(db, now=completed, limit=1000):
            pass
        db.exec(update(Notification).where(col(Notification.kind) == "aftercare").values(status="sent"))
        db.commit()


def _product(settings: Settings, as_of: datetime) -> tuple[float, dict[str, int]]:
    with Session(database.get_engine(settings.resolved_database_url), expire_on_commit=False) as db:
        start = time.perf_counter()
        result = run_pass(db, now=as_of, settings=settings, batch=500)
        return time.perf_counter() - start, result.summary()


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _baseline(settings: Settings, as_of: datetime, sample: int, env: dict[str, str]) -> float:
    """Seconds per contact when each contact gets its own process (one pass limited to one contact)."""
    code = (
        "import sys; from datetime import datetime; from sqlmodel import Session; from needlecare.core import db; "
        "from needlecare.followup.outbox import claim_due, deliver; "
        "from needlecare.followup.dispatch import dispatch_due; "
        "from needlecare.core.settings import get_settings; s = get_settings(); "
        "now = datetime.fromisoformat(sys.argv[1]); "
        "session = Session(db.get_engine(s.resolved_database_url)); "
        "dispatch_due(session, now=now, settings=s, limit=1); "
        "[deliver(session, i, now=now, settings=s) for i in claim_due(session, now=now, limit=10, lease_seconds=600)]"
    )
    start = time.perf_counter()
    for _ in range(sample):
        subprocess.run([sys.executable, "-c", code, as_of.isoformat()], env=env, check=True, cwd=ROOT)
    return (time.perf_counter() - start) / sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=2, help="alternating passes of each shape (fresh rows each)")
    parser.add_argument("--concurrency", type=int, default=8, help="the product's SENDER_CONCURRENCY")
    parser.add_argument("--baseline-sample", type=int, default=5, help="contacts sent one process each (0: skip)")
    parser.add_argument("--pg-temp", action="store_true", help="a throwaway PostgreSQL cluster (tests/pg.py)")
    args = parser.parse_args()
    cluster = start_cluster(free_port()) if args.pg_temp else None

    tmp = Path(tempfile.mkdtemp(prefix="needlecare-bench-dispatch-"))
    smtp_port = free_port()
    completed = datetime(2026, 6, 1, 10, tzinfo=UTC)
    as_of = completed + timedelta(hours=24)
    capture = start_capture(tmp / "outbox", port=smtp_port)
    base = Settings(env="test", data_dir=tmp, smtp_capture_port=smtp_port)
    shapes = {
        "product": {"sender_concurrency": args.concurrency},
        "one_at_a_time": {"sender_concurrency": 1, "smtp_reuse_messages": 0},
    }
    runs: list[dict[str, object]] = []
    process_baseline: float | None = None
    try:
        for round_no in range(args.repeat):
            for shape, update_values in shapes.items():
                name = f"{shape}-{round_no}"
                url = cluster.url(cluster.create_database()) if cluster else f"sqlite:///{tmp / (name + '.db')}"
                settings = base.model_copy(update={"database_url": url, **update_values})
                t0 = time.perf_counter()
                _setup(settings, args.contacts, completed)
                print(f"{name}: set up {args.contacts} sessions in {time.perf_counter() - t0:.1f} s", flush=True)
                before = len(list((tmp / "outbox").glob("*.eml")))
                load_before = _load()
                elapsed, summary = _product(settings, as_of)
                received = len(list((tmp / "outbox").glob("*.eml"))) - before
                rate = summary["sent"] / elapsed
                runs.append(
                    {
                        "shape": shape,
                        "round": round_no,
                        "sender_concurrency": settings.resolved_sender_concurrency,
                        "smtp_reuse_messages": settings.smtp_reuse_messages,
                        "pass_seconds": round(elapsed, 2),
                        "contacts_per_second": round(rate, 1),
                        "emails_received": received,
                        "pass_summary": summary,
                        "load_1min_before": load_before,
                        "load_1min_after": _load(),
                    }
                )
                print(f"  {shape}: {summary['sent']} sent in {elapsed:.1f} s = {rate:.0f}/s (load {_load()})")
                database.dispose_engines()
        if args.baseline_sample:
            url = f"sqlite:///{tmp / 'process.db'}"
            settings = base.model_copy(update={"database_url": url})
            _setup(settings, args.baseline_sample, completed)
            env = {
                **os.environ,
                "NEEDLECARE_ENV": "test",
                "NEEDLECARE_DATA_DIR": str(tmp),
                "NEEDLECARE_DATABASE_URL": url,
                "NEEDLECARE_SMTP_CAPTURE_PORT": str(smtp_port),
            }
            print(f"baseline: one process per contact, {args.baseline_sample} contacts…", flush=True)
            process_baseline = _baseline(settings, as_of, args.baseline_sample, env)
    finally:
        capture.stop()
        database.dispose_engines()
        if cluster:
            cluster.stop()

    def median(shape: str) -> float:
        rates = sorted(float(str(r["contacts_per_second"])) for r in runs if r["shape"] == shape)
        mid = len(rates) // 2
        return rates[mid] if len(rates) % 2 else (rates[mid - 1] + rates[mid]) / 2

    product, sequential = median("product"), median("one_at_a_time")
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "prefect": version("prefect"),
        "apprise": version("apprise"),
        "sqlalchemy": version("sqlalchemy"),
        "database": "postgresql" if cluster else "sqlite",
        "contacts_due_per_pass": args.contacts,
        "runs": runs,
        "product_contacts_per_second_median": round(product, 1),
        "one_at_a_time_contacts_per_second_median": round(sequential, 2),
        "ratio_product_over_one_at_a_time": round(product / sequential, 2),
        "process_per_contact_seconds": round(process_baseline, 3) if process_baseline else None,
        "ratio_product_over_process_per_contact": round(product * process_baseline, 1) if process_baseline else None,
    }
    print(
        f"\n{os.cpu_count()} cores · Python {results['python']} · {results['database']} · load now {_load()}\n"
        f"{'shape':<28}{'contacts/s (median)':>22}\n"
        f"{'product (pool of ' + str(args.concurrency) + ')':<28}{product:>22.1f}\n"
        f"{'one at a time':<28}{sequential:>22.1f}\n"
        f"ratio product / one at a time: {product / sequential:.2f}x"
    )
    if process_baseline:
        print(f"one process per contact: {process_baseline:.2f} s each ({product * process_baseline:.0f}x slower)")
    out = ROOT / "bench" / "results" / f"dispatcher-{datetime.now(UTC):%Y-%m-%d}-{results['database']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
