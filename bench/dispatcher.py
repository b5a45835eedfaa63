"""Dispatcher throughput: due follow-up contacts claimed, rendered and handed to SMTP per second.

Setup (not timed): N sessions are recorded and planned at time T, and their aftercare notices are
marked sent, so that at T + 24 h exactly N "1-day check-in" contacts are due. Then, timed:

* product shape — one dispatch pass (``needlecare dispatch --as-of``): claim every due contact,
  apply the send-time checks, render the survey email and hand it to SMTP (a local aiosmtpd sink);
* baseline — one process per contact (the floor of "one flow run each": a served Prefect flow run
  is a new Python process, plus Prefect's own start-up on top), measured on a sample of K contacts
  in the same run and reported per contact.

    .venv/bin/python -m bench.dispatcher [--contacts 10000] [--baseline-sample 20] [--database-url URL]
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
from sqlmodel import Session, col, func, select

from models import ClinicCreate, Contact, Notification
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import start_capture
from needlecare.followup import planning
from needlecare.followup.outbox import run_pass
from needlecare.intake import ingest
from needlecare.intake.clinics import add_clinic
from tests.conftest import free_port
from tests.factories import event_body

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
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--baseline-sample", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="needlecare-bench-dispatch-"))
    smtp_port = free_port()
    url = args.database_url or f"sqlite:///{tmp / 'app.db'}"
    settings = Settings(env="test", data_dir=tmp, database_url=url, smtp_capture_port=smtp_port)
    env = {
        **os.environ,
        "NEEDLECARE_ENV": "test",
        "NEEDLECARE_DATA_DIR": str(tmp),
        "NEEDLECARE_DATABASE_URL": url,
        "NEEDLECARE_SMTP_CAPTURE_PORT": str(smtp_port),
    }
    completed = datetime(2026, 6, 1, 10, tzinfo=UTC)
    as_of = completed + timedelta(hours=24)
    capture = start_capture(tmp / "outbox", port=smtp_port)
    try:
        print(f"setting up {args.contacts} sessions (not timed)…", flush=True)
        t0 = time.perf_counter()
        _setup(settings, args.contacts + args.baseline_sample, completed)
        print(f"  set up in {time.perf_counter() - t0:.1f} s", flush=True)
        print(f"baseline: one process per contact, {args.baseline_sample} contacts…", flush=True)
        per_contact_baseline = _baseline(settings, as_of, args.baseline_sample, env)
        print(f"product: one dispatch pass over {args.contacts} due contacts…", flush=True)
        elapsed, summary = _product(settings, as_of)
        with Session(database.get_engine(url)) as db:
            sent = db.exec(select(func.count()).select_from(Contact).where(Contact.status == "sent")).one()
    finally:
        capture.stop()
    delivered = len(list((tmp / "outbox").glob("*.eml")))
    rate = summary["sent"] / elapsed
    baseline_rate = 1 / per_contact_baseline
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "prefect": version("prefect"),
        "apprise": version("apprise"),
        "database": url.split(":", 1)[0],
        "contacts_due": args.contacts,
        "pass_seconds": round(elapsed, 2),
        "pass_summary": summary,
        "contacts_sent_total": sent,
        "emails_received": delivered,
        "product_contacts_per_second": round(rate, 1),
        "baseline_seconds_per_contact": round(per_contact_baseline, 3),
        "baseline_contacts_per_second": round(baseline_rate, 2),
        "ratio_product_over_baseline": round(rate / baseline_rate, 1),
    }
    print(
        f"\n{os.cpu_count()} cores · Python {results['python']} · prefect {results['prefect']}"
        f" · {results['database']}\n"
        f"product  : {summary['sent']} due contacts claimed, rendered and handed to SMTP in {elapsed:.1f} s"
        f" = {rate:.0f} contacts/s\n"
        f"baseline : one process per contact = {per_contact_baseline:.2f} s each = {baseline_rate:.2f} contacts/s"
        f" (a real flow run adds Prefect's start-up on top)\n"
        f"ratio    : {rate / baseline_rate:.0f}× the baseline's throughput"
    )
    out = ROOT / "bench" / "results" / f"dispatcher-{datetime.now(UTC):%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
