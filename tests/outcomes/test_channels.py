"""Response by channel (needlecare.outcomes.channels) on SQLite and PostgreSQL: exact counts per time point and
channel group on a built cohort, the cohort's filters, small-cell suppression that holds against the report's
equations, the JSON/CSV/HTML sections, the query plans, and the channels tried in the non-responder list."""

import csv
import html as html_lib
import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from itertools import count

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlmodel import Session

from models import Clinic, Notification
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.outcomes import channels, report_csv, report_html, report_json, report_rows, reports
from needlecare.outcomes.filters import make_filters
from needlecare.outcomes.nonresponders import list_nonresponders
from needlecare.outcomes.report_protect import closure, leaks
from needlecare.safety.clinic_config import ReportPolicy
from needlecare.staff import auth
from needlecare.web.app import create_app
from needlecare.web.dashboard.snapshots import WAIT_STATE, report_cache
from tests.outcome_rows import T0, Ep, OutcomeRows

CLINIC = "riverside-physio"
NO_SUPPRESSION = ReportPolicy(min_count_shown=1)
NOW = T0 + timedelta(days=60)
_keys = count(1)


def message(
    db: Session, contact_id: int, ep: Ep, channel: str, sequence: int, *, status: str = "sent", kind: str = ""
) -> None:
    due = ep.started_at + timedelta(hours=sequence)
    db.add(
        Notification(
            idempotency_key=f"test:{next(_keys)}",
            kind=kind or ("survey" if sequence == 0 else "reminder"),
            channel=channel,
            contact_id=contact_id,
            sequence=sequence,
            patient_id=ep.patient_id,
            status=status,
            due_at=due,
            sent_at=due if status == "sent" else None,
        )
    )


def contact(
    rows: OutcomeRows, step: str, tried: tuple[str, ...], outcome: str, *, injury: str = "achilles_tendinopathy"
) -> int:
    """One due contact of ``step`` whose messages went by ``tried`` (in order) and ended ``outcome``: "web" or "sms"
    (answered that way), "expired" or "sent" (not answered)."""
    ep = rows.episode(injury)
    session = rows.session(ep) if step.startswith("check_") else None
    if outcome in ("web", "sms"):
        contact_id, response_id = rows.answer(ep, step, session_id=session, soreness=3, nprs_usual=4)
        if outcome == "sms":
            rows.db.execute(text("UPDATE survey_response SET channel = 'sms' WHERE id = :id"), {"id": response_id})
    else:
        contact_id = rows.contact(ep, step, status=outcome, session_id=session)
    for sequence, channel in enumerate(tried):
        message(rows.db, contact_id, ep, channel, sequence)
    return contact_id


def seed(db: Session) -> OutcomeRows:
    """6-week survey: 30 email only (20 answered online), 25 email then SMS (12 by SMS reply, 3 online), 12 SMS
    only (6 by SMS reply, 6 still open), 4 with no message sent; 24 h check: 11 SMS then email (7 online)."""
    rows = OutcomeRows(db, CLINIC)
    plan = [
        (30, ("email",), [("web", 20), ("expired", 10)]),
        (25, ("email", "sms"), [("sms", 12), ("web", 3), ("expired", 10)]),
        (12, ("sms",), [("sms", 6), ("sent", 6)]),
        (4, (), [("expired", 4)]),
    ]
    for _, tried, outcomes in plan:
        for outcome, n in outcomes:
            for _ in range(n):
                contact(rows, "outcome_6wk", tried, outcome)
    for i in range(11):
        contact(rows, "check_24h", ("sms", "email"), "web" if i < 7 else "expired")
    # Not counted: a message that was not sent, a text that answers an inbound SMS, a skipped contact.
    ep = rows.episode()
    skipped = rows.contact(ep, "outcome_6wk", status="skipped")
    message(db, skipped, ep, "email", 0)
    first = contact(rows, "outcome_6wk", ("email",), "web")  # an email-only answer (now 21 online)
    message(db, first, ep, "sms", 1, status="skipped")
    message(db, first, ep, "sms", 2, kind="sms_reply")
    # A partial answer (red flags of a refused form, sent by SMS reply) is not an answer.
    partial = contact(rows, "outcome_6wk", ("email",), "sent")
    db.execute(
        text(
            "INSERT INTO survey_response (contact_id, patient_id, episode_id, injury, step_id, channel, "
            "submitted_at, redflags) SELECT id, patient_id, episode_id, injury, step_id, 'sms', due_at, '[]' "
            "FROM contact WHERE id = :id"
        ),
        {"id": partial},
    )
    rows.commit()
    return rows


def by_group(steps: tuple[channels.ChannelStep, ...], step_id: str) -> dict[str, tuple[int, int, int]]:
    found = next(s for s in steps if s.step_id == step_id)
    return {g.group: (g.raw.contacts, g.raw.answered, g.raw.answered_sms) for g in found.groups}


def test_exact_counts_per_time_point_and_channel_group(db: Session, clinic: Clinic) -> None:
    seed(db)
    steps = channels.compute_channels(db, make_filters(CLINIC, None, None, None, None), NO_SUPPRESSION)
    assert [s.step_id for s in steps] == ["check_24h", "outcome_6wk"]
    assert by_group(steps, "outcome_6wk") == {
        "email": (32, 21, 0),
        "email_then_sms": (25, 15, 12),
        "sms": (12, 6, 6),
        "none": (4, 0, 0),
    }
    assert by_group(steps, "check_24h") == {"sms_then_email": (11, 7, 0)}
    six = steps[1]
    assert (six.raw.contacts, six.raw.answered, six.raw.answered_online, six.raw.answered_sms) == (73, 42, 24, 18)
    assert [g.group for g in six.groups] == ["email", "email_then_sms", "sms", "none"]
    rates = {g.group: g.response_rate.value for g in six.groups}
    assert rates["email_then_sms"] == pytest.approx(60.0) and rates["sms"] == pytest.approx(50.0)
    assert rates["none"] == 0.0

    # The groups add up to the report's own due and answered contacts of the time point.
    data = reports.build_report(db, CLINIC, policy=NO_SUPPRESSION, now=NOW)
    row = next(r for r in data.outcomes.rows if r.step_id == "outcome_6wk")
    assert (row.raw.contacts_due, row.raw.contacts_answered) == (73, 42)
    assert data.channels == steps


def test_the_cohort_filters_apply(db: Session, clinic: Clinic) -> None:
    later = seed(db)
    for _ in range(3):
        ep = later.episode("plantar_fasciitis", started_at=T0 + timedelta(days=30))
        contact_id, _ = later.answer(ep, "outcome_6wk", nprs_usual=3)
        message(db, contact_id, ep, "sms", 0)
    later.commit()
    everything = channels.compute_channels(db, make_filters(CLINIC, None, None, None, None), NO_SUPPRESSION)
    assert {(s.injury, s.step_id) for s in everything} == {
        ("achilles_tendinopathy", "check_24h"),
        ("achilles_tendinopathy", "outcome_6wk"),
        ("plantar_fasciitis", "outcome_6wk"),
    }
    only = channels.compute_channels(db, make_filters(CLINIC, "plantar_fasciitis", None, None, None), NO_SUPPRESSION)
    assert [(s.injury, by_group(only, "outcome_6wk")) for s in only] == [("plantar_fasciitis", {"sms": (3, 3, 0)})]
    since = channels.compute_channels(
        db, make_filters(CLINIC, None, None, T0 + timedelta(days=29), None), NO_SUPPRESSION
    )
    assert [s.injury for s in since] == ["plantar_fasciitis"]
    assert channels.compute_channels(db, make_filters("elsewhere", None, None, None, None), NO_SUPPRESSION) == ()


def test_small_channel_cells_are_suppressed_and_cannot_be_worked_out(db: Session, clinic: Clinic) -> None:
    seed(db)
    policy = ReportPolicy()
    data = reports.build_report(db, CLINIC, policy=policy, now=NOW)
    six = next(s for s in data.channels if s.step_id == "outcome_6wk")
    groups = {g.group: g for g in six.groups}
    assert groups["none"].contacts.display == "< 11"  # 4 contacts
    assert not groups["none"].response_rate.shown
    assert not groups["sms"].answered.shown  # 6 answered
    assert not groups["sms"].response_rate.shown
    assert not any(g.response_rate.shown for g in groups.values() if not (g.contacts.shown and g.answered.shown))
    # No hidden count of 1-10 can be derived from everything the report prints (its equations and these).
    model = channels.channel_cells((data.outcomes, data.trajectory, data.channels), policy)
    assert leaks(model, closure(model, policy), policy) == []
    check = next(s for s in data.channels if s.step_id == "check_24h")
    assert check.groups[0].contacts.display == "11" and check.groups[0].answered.display == "< 11"
    # The hidden numbers are in no export.
    document = json.loads(report_json.render_json(data))
    section = next(s for i in document["injuries"] for s in i["sections"] if s["section"] == "channels")
    for figure in section["figures"]:
        if figure["suppressed_reason"] is not None:
            assert figure["value"] is None and figure["ci_low"] is None
    hidden = {(f["step"], f["measure"], f["metric"]) for f in section["figures"] if f["value"] is None}
    assert ("outcome_6wk", "none", "contacts") in hidden and ("outcome_6wk", "sms", "answered") in hidden


def test_json_csv_and_html_carry_the_section(db: Session, clinic: Clinic) -> None:
    seed(db)
    data = reports.build_report(db, CLINIC, policy=NO_SUPPRESSION, now=NOW)
    document = json.loads(report_json.render_json(data))
    sections = {s["section"]: s for i in document["injuries"] for s in i["sections"]}
    figures = {(f["step"], f["measure"], f["metric"]): f["value"] for f in sections["channels"]["figures"]}
    assert sections["channels"]["title"] == "Response by channel"
    assert figures[("outcome_6wk", "", "answered_online")] == 24
    assert figures[("outcome_6wk", "", "answered_sms")] == 18
    assert figures[("outcome_6wk", "email_then_sms", "contacts")] == 25
    assert figures[("outcome_6wk", "email_then_sms", "response_rate")] == pytest.approx(60.0)
    assert figures[("check_24h", "sms_then_email", "answered")] == 7

    records = list(csv.DictReader(io.StringIO(report_csv.render_csv(data))))
    mine = {(r["step"], r["measure"], r["metric"]): r for r in records if r["section"] == "channels"}
    assert mine[("outcome_6wk", "sms", "answered")]["value"] == "6"
    assert mine[("outcome_6wk", "", "answered_sms")]["value"] == "18"
    assert float(mine[("outcome_6wk", "email", "response_rate")]["value"]) == pytest.approx(100 * 21 / 32)

    page = report_html.render_html(data)
    table = re.search(r'<table id="channels-achilles_tendinopathy">.*?</table>', page, re.S)
    assert table is not None
    assert "Email, then SMS" in table.group(0) and "SMS, then email" in table.group(0)
    cell = re.search(
        r'data-key="achilles_tendinopathy\|channels\|outcome_6wk\|email_then_sms\|response_rate">'
        r'<span class="v">([^<]*)<',
        page,
    )
    assert cell is not None and cell.group(1) == "60.0 %"
    assert any(d.term == "Response by channel" for d in data.definitions)


def test_query_plans_read_the_contact_index_and_no_message(db: Session, clinic: Clinic) -> None:
    seed(db)
    statement = channels.channel_stmt(make_filters(CLINIC, None, None, None, None))
    compiled = str(statement.compile(dialect=db.get_bind().dialect, compile_kwargs={"literal_binds": True}))
    assert "notification" not in compiled and "survey_response" not in compiled  # the contact's own columns
    conn = db.connection()
    if conn.dialect.name == "sqlite":
        plan = " | ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        assert "COVERING INDEX ix_contact_report_episode" in plan, plan
    else:
        conn.execute(text("SET enable_seqscan = off"))  # a tiny table: ask whether an index can serve the join
        plan = " | ".join(str(r[0]) for r in conn.execute(text(f"EXPLAIN {compiled}")))
        conn.execute(text("RESET enable_seqscan"))
        # Without statistics PostgreSQL may take either index of the contact's episode (at 128k rows it takes
        # the covering one, an index-only scan).
        assert "ix_contact_report_episode" in plan or "ix_contact_episode_id" in plan, plan


def _flags(db: Session, contact_id: int) -> tuple[bool, bool, bool]:
    row = db.execute(
        text("SELECT sent_email, sent_sms, first_by_sms FROM contact WHERE id = :id"), {"id": contact_id}
    ).one()
    return bool(row[0]), bool(row[1]), bool(row[2])


def test_the_database_keeps_each_contacts_sent_channels(db: Session, clinic: Clinic) -> None:
    """The flags follow the contact's messages however they are written: inserted as sent, claimed then sent,
    re-addressed, deleted; a message that failed, a reply and an aftercare notice do not count."""
    rows = OutcomeRows(db, CLINIC)
    ep = rows.episode()
    cid = rows.contact(ep, "outcome_6wk", status="sent")
    other = rows.contact(ep, "outcome_12wk", status="sent")
    rows.commit()
    assert _flags(db, cid) == (False, False, False)

    message(db, cid, ep, "email", 0, status="pending")
    message(db, cid, ep, "sms", 1, status="failed")
    message(db, cid, ep, "sms", 2, kind="sms_reply")
    message(db, cid, ep, "email", 3, kind="aftercare")
    db.commit()
    assert _flags(db, cid) == (False, False, False)

    params = {"id": cid}
    first = "UPDATE notification SET status = :s WHERE contact_id = :id AND sequence = 0"
    db.execute(text(first), {**params, "s": "sending"})
    db.commit()
    assert _flags(db, cid) == (False, False, False)
    db.execute(text(first), {**params, "s": "sent"})
    db.commit()
    assert _flags(db, cid) == (True, False, False)

    # The channel is chosen at send time: a first message that went by SMS after all.
    db.execute(text("UPDATE notification SET channel = 'sms' WHERE contact_id = :id AND sequence = 0"), params)
    db.commit()
    assert _flags(db, cid) == (False, True, True)

    message(db, cid, ep, "email", 4)  # a reminder inserted as sent
    db.commit()
    assert _flags(db, cid) == (True, True, True)

    # Moved to another contact: both contacts are recomputed.
    db.execute(
        text("UPDATE notification SET contact_id = :o WHERE contact_id = :id AND sequence = 0"),
        {
            **params,
            "o": other,
        },
    )
    db.commit()
    assert _flags(db, cid) == (True, False, False)
    assert _flags(db, other) == (False, True, True)

    db.execute(text("DELETE FROM notification WHERE contact_id = :id AND sequence = 4"), params)
    db.commit()
    assert _flags(db, cid) == (False, False, False)
    assert _flags(db, other) == (False, True, True)


def _by_sms(db: Session, contact_id: int) -> bool:
    return bool(db.execute(text("SELECT answered_by_sms FROM contact WHERE id = :id"), {"id": contact_id}).scalar())


def test_the_database_keeps_whether_a_contact_was_answered_by_sms(db: Session, clinic: Clinic) -> None:
    rows = OutcomeRows(db, CLINIC)
    ep = rows.episode()
    cid, response_id = rows.answer(ep, "outcome_6wk", nprs_usual=3)
    rows.commit()
    assert not _by_sms(db, cid)
    relabel = "UPDATE survey_response SET channel = :c WHERE id = :id"
    db.execute(text(relabel), {"c": "sms", "id": response_id})
    db.commit()
    assert _by_sms(db, cid)
    db.execute(text(relabel), {"c": "web", "id": response_id})
    db.commit()
    assert not _by_sms(db, cid)
    db.execute(text(relabel), {"c": "sms", "id": response_id})
    db.execute(text("DELETE FROM survey_response WHERE id = :id"), {"id": response_id})
    db.commit()
    assert not _by_sms(db, cid)


def test_migration_0014_fills_the_flags_of_existing_contacts(db: Session, clinic: Clinic, db_url: str) -> None:
    """Down to 0013 (no flags, no triggers) and up again: the upgrade computes the flags of the contacts that
    already have messages, and the triggers are back."""
    rows = OutcomeRows(db, CLINIC)
    ep = rows.episode()
    by_sms = contact(rows, "outcome_6wk", ("sms", "email"), "sent")
    by_email = contact(rows, "outcome_12wk", ("email",), "sent")
    replied = contact(rows, "outcome_4wk", ("sms",), "sms")
    rows.commit()
    db.close()
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    config.attributes["url"] = db_url
    command.downgrade(config, "0013")
    with database.get_engine(db_url).connect() as connection:
        assert "sent_email" not in {c["name"] for c in inspect(connection).get_columns("contact")}
    command.upgrade(config, "head")
    assert _flags(db, by_sms) == (True, True, True)
    assert _flags(db, by_email) == (True, False, False)
    assert _by_sms(db, replied) and not _by_sms(db, by_sms)
    late = rows.contact(ep, "outcome_4wk", status="sent")
    message(db, late, ep, "sms", 0)
    db.commit()
    assert _flags(db, late) == (False, True, True)


def test_non_responders_show_the_channels_tried(db: Session, clinic: Clinic) -> None:
    rows = OutcomeRows(db, CLINIC)
    ids = {
        "email": contact(rows, "outcome_6wk", ("email",), "sent"),
        "both": contact(rows, "outcome_6wk", ("email", "sms"), "sent"),
        "sms": contact(rows, "outcome_6wk", ("sms",), "sent"),
        "none": contact(rows, "outcome_6wk", (), "sent"),
    }
    ep = rows.episode()
    failed = rows.contact(ep, "outcome_6wk", status="sent")
    message(db, failed, ep, "email", 0)
    message(db, failed, ep, "sms", 1, status="failed")
    ids["failed"] = failed
    rows.commit()
    page = list_nonresponders(db, CLINIC, now=T0 + timedelta(days=42))
    tried = {r.contact_id: r.channels_tried for r in page.rows}
    assert tried == {
        ids["email"]: ("email",),
        ids["both"]: ("email", "sms"),
        ids["sms"]: ("sms",),
        ids["none"]: (),
        ids["failed"]: ("email",),
    }
    assert next(r for r in page.rows if r.contact_id == ids["both"]).reminders_sent == 1


def test_a_hidden_answered_count_is_not_printed_as_its_channel_split(db: Session, clinic: Clinic) -> None:
    """15 due, 14 answered online: the answered count is hidden (with the 1 not answered), so "14 online" and
    "0 by SMS" may not stand beside it, nor the group's 14 of 15."""
    rows = OutcomeRows(db, CLINIC)
    for i in range(15):
        contact(rows, "outcome_6wk", ("email",), "web" if i < 14 else "expired", injury="pfps")
    rows.commit()
    data = reports.build_report(db, CLINIC, now=NOW)
    step = next(s for s in data.channels if s.injury == "pfps")
    assert step.raw.answered_online == 14
    printed = [
        step.answered_online,
        step.answered_sms,
        *(f for g in step.groups for f in (g.answered, g.response_rate)),
    ]
    assert all(not f.shown and f.n_shown is None for f in printed)
    assert all(r.n != 14 and r.value != 14 for r in report_rows.figure_rows(data) if r.section == "channels")


PASSWORD = "correct horse battery staple"


@pytest.fixture
def client(settings: Settings, clinic: Clinic, db: Session) -> Iterator[TestClient]:
    auth.create_user(db, clinic.id, "dana@riverside.example", "Dana Reyes", PASSWORD)
    app = create_app(settings)
    setattr(app.state, WAIT_STATE, 60.0)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        page = c.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        form = {"email": "dana@riverside.example", "password": PASSWORD, "csrf": token.group(1), "next": "/"}
        assert c.post("/login", data=form).status_code == 303
        yield c
        report_cache(app).wait()


def test_the_dashboard_shows_response_by_channel(client: TestClient, db: Session) -> None:
    seed(db)
    overview = client.get("/dashboard", params={"period": "all", "step": "outcome_6wk"})
    assert overview.status_code == 200, overview.text
    section = re.search(
        r'<section aria-labelledby="channels-heading" id="channels">(.*?)</section>', overview.text, re.S
    )
    assert section is not None
    row = re.search(r'data-injury="achilles_tendinopathy" data-step="outcome_6wk">(.*?)</tr>', section.group(1), re.S)
    assert row is not None, section.group(1)
    cells = dict(re.findall(r'data-figure="([^"]+)">(.*?)</td>', row.group(1), re.S))
    assert '<span class="v">24</span>' in cells["answered-online"]
    assert '<span class="v">18</span>' in cells["answered-sms"]
    groups = dict(re.findall(r'<li data-group="([^"]+)">(.*?)</li>', cells["channel-groups"], re.S))
    assert list(groups) == ["email", "email_then_sms", "sms", "none"]
    # The figures of the report under the clinic's own rules, as the page prints them (hidden ones included).
    data = reports.build_report(db, CLINIC)
    six = next(s for s in data.channels if s.step_id == "outcome_6wk")
    for g in six.groups:
        item = html_lib.unescape(groups[g.group])
        assert f'<span class="v{"" if g.response_rate.shown else " sup"}">{g.response_rate.display}</span>' in item
        assert f"contacts {g.contacts.display}, answered {g.answered.display}" in item
    assert "contacts < 11" in html_lib.unescape(groups["none"])
    assert any(g.response_rate.shown for g in six.groups), "a group's response rate is shown"
    assert "check_24h" not in section.group(1), "the overview shows the chosen time point only"

    page = client.get("/dashboard/injury/achilles_tendinopathy", params={"period": "all"})
    assert page.status_code == 200, page.text
    steps = re.findall(r'data-injury="achilles_tendinopathy" data-step="([^"]+)"', page.text)
    assert steps == ["check_24h", "outcome_6wk"]
    assert "SMS, then email" in page.text
