"""Outcome statistics in SQL (SQLite and PostgreSQL) against numpy/scipy on the same rows, to 1e-9."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from sqlalchemy import event
from sqlmodel import Session

from models import Clinic
from needlecare.outcomes import stats
from needlecare.outcomes.compute import compute_outcomes
from needlecare.outcomes.definitions import ADVERSE_KINDS
from needlecare.outcomes.results import OutcomeReport, StepRow
from needlecare.outcomes.suppression import Reason
from needlecare.outcomes.trajectory import step_rates, trajectory
from needlecare.safety.clinic_config import ReportPolicy
from tests.outcome_rows import T0, OutcomeRows

POLICY = ReportPolicy()
ACHILLES = "achilles_tendinopathy"
DUE = ("sent", "answered", "expired")


def approx(value: Any) -> Any:
    """Equal to 1e-9 (absolute), the tolerance the issue asks for."""
    return pytest.approx(value, rel=0, abs=1e-9)


def check_summary(summary: stats.Summary, values: list[float], *, quartiles: bool = True) -> None:
    """The SQL summary equals numpy/scipy on the same values (``quartiles=False``: they are not computed)."""
    x = np.array(values, dtype=float)
    assert summary.n == len(x)
    assert summary.mean == approx(np.mean(x))
    if quartiles:
        q1, median, q3 = np.percentile(x, [25, 50, 75])
        assert (summary.q1, summary.median, summary.q3) == approx((q1, median, q3))
    else:
        assert summary.q1 is summary.median is summary.q3 is None
    if len(x) > 1:
        low, high = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
        assert summary.sd == approx(np.std(x, ddof=1))
        assert (summary.ci_low, summary.ci_high) == approx((low, high))


def row(report: OutcomeReport, step_id: str, injury: str = ACHILLES) -> StepRow:
    found = [r for r in report.rows if r.injury == injury and r.step_id == step_id]
    assert len(found) == 1, [(r.injury, r.step_id) for r in report.rows]
    return found[0]


def pain_responder(baseline: int, follow_up: int) -> bool:
    drop = baseline - follow_up
    return drop >= 2 and baseline > 0 and 100.0 * drop / baseline >= 30


def test_due_answered_and_response_rate(db: Session, clinic: Clinic) -> None:
    rng = np.random.default_rng(11)
    rows = OutcomeRows(db, clinic.id)
    statuses = ["planned", "sent", "answered", "answered", "answered", "expired", "skipped"]
    contacts: dict[str, list[tuple[int, str]]] = {"check_24h": [], "outcome_6wk": []}
    for _ in range(60):
        ep = rows.episode()
        for _ in range(int(rng.integers(1, 3))):  # one or two sessions: two session contacts per patient
            session = rows.session(ep)
            status = str(rng.choice(statuses))
            if status == "answered":
                rows.answer(ep, "check_24h", session_id=session, soreness=2)
            else:
                rows.contact(ep, "check_24h", status=status, session_id=session)
            contacts["check_24h"].append((ep.patient_id, status))
        status = str(rng.choice(statuses))
        if status == "answered":
            rows.answer(ep, "outcome_6wk", nprs_usual=3)
        else:
            rows.contact(ep, "outcome_6wk", status=status)
        contacts["outcome_6wk"].append((ep.patient_id, status))
    rows.commit()

    report = compute_outcomes(db, clinic.id, policy=POLICY)

    assert [r.step_id for r in report.rows] == ["check_24h", "outcome_6wk"]
    for step_id, made in contacts.items():
        due = [(p, s) for p, s in made if s in DUE]
        answered = [(p, s) for p, s in due if s == "answered"]
        got = row(report, step_id)
        assert got.scope == ("session" if step_id == "check_24h" else "episode")
        assert got.raw.contacts_due == len(due)
        assert got.raw.contacts_answered == len(answered)
        assert got.raw.patients_due == len({p for p, _ in due})
        assert got.raw.patients_answered == len({p for p, _ in answered})
        assert len(answered) >= 11 and len(due) - len(answered) >= 11, "the data must give visible figures"
        assert got.contacts_due.display == str(len(due))
        assert got.contacts_answered.value == len(answered)
        assert got.contacts_not_answered.value == len(due) - len(answered)
        ci = sps.binomtest(len(answered), len(due)).proportion_ci(method="wilson")
        assert got.response_rate.value == approx(100 * len(answered) / len(due))
        assert (got.response_rate.low, got.response_rate.high) == approx((100 * ci.low, 100 * ci.high))
        assert got.response_rate.n == len(due)
        assert got.loss_to_follow_up.value == approx(100 - 100 * len(answered) / len(due))


def test_small_cells_in_a_step_row_are_suppressed_with_their_complement(db: Session, clinic: Clinic) -> None:
    rows = OutcomeRows(db, clinic.id)
    for i in range(18):  # 15 answered, 3 expired: "3" is hidden, and so is "15", and the rate
        ep = rows.episode()
        if i < 15:
            rows.answer(ep, "outcome_6wk", nprs_usual=4)
        else:
            rows.contact(ep, "outcome_6wk", status="expired")
    rows.commit()

    got = row(compute_outcomes(db, clinic.id, policy=POLICY), "outcome_6wk")

    assert got.contacts_due.display == "18"
    assert got.contacts_not_answered.suppressed_reason == Reason.SMALL_COUNT
    assert got.contacts_not_answered.display == "< 11"
    assert got.contacts_answered.suppressed_reason == Reason.COMPLEMENTARY
    assert got.contacts_answered.value is None
    assert got.response_rate.value is None and got.loss_to_follow_up.value is None
    assert got.raw.contacts_answered == 15  # the raw numbers stay available for tests


def test_paired_pain_change_matches_numpy(db: Session, clinic: Clinic) -> None:
    rng = np.random.default_rng(2026)
    rows = OutcomeRows(db, clinic.id)
    changes: list[float] = []
    responders = 0
    patients: set[int] = set()
    for i in range(60):
        baseline = None if i % 12 == 0 else int(rng.integers(0, 11))
        ep = rows.episode(pain=baseline)
        follow_up = int(rng.integers(0, 9))
        if i % 9 == 0:
            rows.contact(ep, "outcome_6wk", status="expired")
            continue
        rows.answer(ep, "outcome_6wk", nprs_usual=None if i % 10 == 3 else follow_up, groc15=2)
        if baseline is not None and i % 10 != 3:
            changes.append(follow_up - baseline)
            responders += pain_responder(baseline, follow_up)
            patients.add(ep.patient_id)
    rows.commit()

    got = row(compute_outcomes(db, clinic.id, policy=POLICY), "outcome_6wk").pain

    assert got is not None and len(changes) >= 20
    check_summary(got.raw.summary, changes)
    assert got.raw.patients == len(patients)
    assert got.raw.responders == responders
    assert got.mean.value == approx(np.mean(changes))
    assert got.mean.n == len(changes) and got.n.n == len(changes)
    # Some steps here have 1-10 unanswered contacts: then the answered count and the paired n are hidden.
    low, high = sps.t.interval(0.95, len(changes) - 1, loc=np.mean(changes), scale=sps.sem(changes))
    assert (got.mean.low, got.mean.high) == approx((low, high))
    assert got.median.value == approx(np.median(changes))
    assert got.q1.value == approx(np.percentile(changes, 25))
    assert got.q3.value == approx(np.percentile(changes, 75))
    assert got.direction == "lower_better" and got.unit == "0-10"
    assert 11 <= responders <= len(changes) - 11, "the data must give a visible responder rate"
    ci = sps.binomtest(responders, len(changes)).proportion_ci(method="wilson")
    assert got.responder_rate.value == approx(100 * responders / len(changes))
    assert (got.responder_rate.low, got.responder_rate.high) == approx((100 * ci.low, 100 * ci.high))


EDGE_PAIRS = [(10, 7), (10, 8), (3, 1), (2, 0), (6, 4), (7, 5), (5, 4), (0, 0), (1, 0), (9, 6), (9, 7), (4, 2)]


def test_pain_responder_rule_at_its_edges(db: Session, clinic: Clinic) -> None:
    """Drop >= 2 and >= 30 %: 10 -> 7 (exactly 30 %) counts, 10 -> 8 (20 %) and 7 -> 5 (28.6 %) do not."""
    rows = OutcomeRows(db, clinic.id)
    for baseline, follow_up in EDGE_PAIRS:
        ep = rows.episode(pain=baseline)
        rows.answer(ep, "outcome_6wk", nprs_usual=follow_up, submitted_at=ep.started_at + timedelta(days=40))
    rows.commit()

    report = compute_outcomes(db, clinic.id, policy=POLICY)

    expected = [pair for pair in EDGE_PAIRS if pain_responder(*pair)]
    assert expected == [(10, 7), (3, 1), (2, 0), (6, 4), (9, 6), (4, 2)]
    pain = row(report, "outcome_6wk").pain
    assert pain is not None and pain.raw.responders == len(expected)
    (recovery,) = report.recovery
    assert recovery.raw.km.total_events == len(expected)  # the same rule marks recovery


def test_rom_change_per_measure_direction_and_mdc(db: Session, clinic: Clinic) -> None:
    rng = np.random.default_rng(77)
    rows = OutcomeRows(db, clinic.id)
    wblt: list[float] = []
    wblt_responders = 0
    for i in range(30):
        base = round(float(rng.uniform(3, 12)), 1)
        ep = rows.episode(rom_measure="wblt_cm", rom_value=base)
        follow = round(base + 1.6, 1) if i < 4 else round(float(rng.uniform(2, 14)), 2)  # 4 exactly at the MDC
        if i == 29:
            rows.answer(ep, "outcome_6wk", rom_measure="wblt_deg", rom_value=40.0)  # other measure: not paired
            continue
        rows.answer(ep, "outcome_6wk", rom_measure="wblt_cm", rom_value=follow, nprs_usual=5)
        wblt.append(follow - base)
        wblt_responders += round(follow - base, 6) >= 1.6
    ober: list[float] = []
    for _ in range(21):
        base = round(float(rng.uniform(-30, -10)), 1)
        ep = rows.episode("itbs", rom_measure="ober_deg", rom_value=base)
        follow = round(float(rng.uniform(-35, -8)), 1)
        rows.answer(ep, "outcome_6wk", rom_measure="ober_deg", rom_value=follow)
        ober.append(follow - base)
    rows.commit()

    report = compute_outcomes(db, clinic.id, policy=POLICY)

    (achilles,) = row(report, "outcome_6wk").rom
    assert achilles.measure == "wblt_cm" and achilles.unit == "cm" and achilles.direction == "higher_better"
    check_summary(achilles.raw.summary, wblt)
    assert (achilles.threshold, achilles.threshold_kind) == (1.6, "MDC")
    assert achilles.raw.responders == wblt_responders
    assert achilles.mean.value == approx(np.mean(wblt))
    (itbs,) = row(report, "outcome_6wk", "itbs").rom
    assert itbs.direction == "lower_better" and itbs.unit == "deg"
    check_summary(itbs.raw.summary, ober)
    assert itbs.threshold is None
    assert itbs.responder_rate.suppressed_reason == Reason.NO_MCID and itbs.responder_rate.display == "no MCID"
    assert itbs.mean.value == approx(np.mean(ober))
    assert row(report, "outcome_6wk", "itbs").pain is None  # no NPRS answered there


@pytest.mark.parametrize("policy", [POLICY, ReportPolicy(min_count_shown=5, min_paired=12)])
def test_suppression_boundaries_10_11_19_20(db: Session, clinic: Clinic, policy: ReportPolicy) -> None:
    rng = np.random.default_rng(5)
    rows = OutcomeRows(db, clinic.id)
    sizes = {"mtss": 10, "pfps": 11, "itbs": 19, "calf_strain": 20}
    values: dict[str, list[float]] = {}
    for injury, n in sizes.items():
        values[injury] = []
        for _ in range(n):
            ep = rows.episode(injury, pain=8)
            follow = int(rng.integers(0, 5))  # every answer is a responder: the complement is 0
            rows.answer(ep, "outcome_6wk", nprs_usual=follow)
            values[injury].append(follow - 8)
    rows.commit()

    report = compute_outcomes(db, clinic.id, policy=policy)

    for injury, n in sizes.items():
        got = row(report, "outcome_6wk", injury)
        pain = got.pain
        assert pain is not None
        check_summary(pain.raw.summary, values[injury])
        count_hidden = n < policy.min_count_shown
        assert got.contacts_due.display == (policy.small_text if count_hidden else str(n))
        assert pain.n.display == (policy.small_text if count_hidden else str(n))
        assert got.response_rate.shown is not count_hidden  # 100 %: hidden only when n itself is small
        stable = n >= policy.min_paired
        for figure in (pain.mean, pain.median, pain.q1, pain.q3, pain.sd, pain.responder_rate):
            assert figure.shown is stable, (injury, n, figure)
            if not stable:
                assert figure.display == "insufficient data" and figure.value is None
        if stable:
            assert pain.mean.value == approx(np.mean(values[injury]))
            assert pain.responder_rate.value == approx(100.0)


def test_adverse_events_per_100_checked_sessions(db: Session, clinic: Clinic) -> None:
    rng = np.random.default_rng(31)
    rows = OutcomeRows(db, clinic.id)
    flags_choices: list[list[str]] = [[], ["none"], ["none"], ["breathless"], ["chest_pain", "palpitations"]]
    expected = dict.fromkeys(ADVERSE_KINDS, 0)
    sessions = due_check = checked = 0
    for _ in range(70):
        ep = rows.episode()
        session = rows.session(ep)
        sessions += 1
        seen = dict.fromkeys(ADVERSE_KINDS, False)
        is_due = is_checked = False
        for step_id in ("check_24h", "check_72h", "check_7d"):
            status = str(rng.choice(["answered", "answered", "expired", "planned", "none"]))
            if status == "none":
                continue
            if status != "answered":
                rows.contact(ep, step_id, status=status, session_id=session)
                is_due = is_due or (status == "expired" and step_id != "check_7d")
                continue
            soreness = int(rng.integers(0, 8))
            bruise = str(rng.choice(["none", "small", "large", "spreading"]))
            flags = flags_choices[int(rng.integers(0, len(flags_choices)))]
            rows.answer(ep, step_id, session_id=session, soreness=soreness, bruise=bruise, redflags=flags)
            if step_id != "check_7d":
                is_due = is_checked = True
            seen["soreness_past_72h"] |= (step_id == "check_72h" and soreness >= 4) or (
                step_id == "check_7d" and soreness >= 1
            )
            seen["bruise_any"] |= bruise != "none"
            seen["bruise_large"] |= bruise == "large"
            seen["bruise_spreading"] |= bruise == "spreading"
            seen["red_flag"] |= bool(flags) and flags != ["none"]
        due_check += is_due
        checked += is_checked
        if is_checked:
            for kind, value in seen.items():
                expected[kind] += value
    rows.commit()

    (got,) = compute_outcomes(db, clinic.id, policy=POLICY).adverse

    assert got.raw.sessions == sessions
    assert got.raw.sessions_due_check == due_check
    assert got.raw.sessions_checked == checked
    assert got.raw.counts == expected
    assert got.sessions_checked.value == checked
    assert got.check_response_rate.value == approx(100 * checked / due_check)
    visible = 0
    for kind, count in expected.items():
        figure = got.events[kind].per_100_sessions
        if count >= 11 and checked - count >= 11:
            visible += 1
            ci = sps.binomtest(count, checked).proportion_ci(method="wilson")
            assert figure.value == approx(100 * count / checked)
            assert (figure.low, figure.high) == approx((100 * ci.low, 100 * ci.high))
            assert got.events[kind].count.value == count
        else:
            assert figure.value is None
    assert visible >= 3, expected


def test_escalations_by_rule_and_time_to_acknowledge(db: Session, clinic: Clinic) -> None:
    rng = np.random.default_rng(8)
    rows = OutcomeRows(db, clinic.id)
    checked = 0
    per_rule: dict[str, int] = {}
    ack_seconds: dict[str, list[float]] = {"all": []}
    cases = 0
    for i in range(26):
        ep = rows.episode()
        session = rows.session(ep)
        contact_id, _ = rows.answer(ep, "check_24h", session_id=session, soreness=3)
        checked += 1
        rules = sorted({str(r) for r in rng.choice(["R8", "R9", "R11"], size=int(rng.integers(1, 3)))})
        opened = T0 + timedelta(days=1, seconds=float(rng.uniform(0, 3600)))
        acknowledged = None
        if i % 8 != 0:  # 22 of 26 acknowledged
            acknowledged = opened + timedelta(seconds=float(rng.uniform(60, 6 * 3600)))
        rows.escalation(
            ep, contact_id=contact_id, session_id=session, rules=rules, opened_at=opened, acknowledged_at=acknowledged
        )
        cases += 1
        for rule in rules:
            per_rule[rule] = per_rule.get(rule, 0) + 1
        if acknowledged is not None:
            # whole seconds: each timestamp truncated to the second, then subtracted
            seconds = float(int(acknowledged.timestamp()) - int(opened.timestamp()))
            ack_seconds["all"].append(seconds)
            for rule in rules:
                ack_seconds.setdefault(rule, []).append(seconds)
    rows.commit()

    report = compute_outcomes(db, clinic.id, policy=POLICY)

    by_rule = {r.rule_id: r for r in report.escalations}
    assert list(by_rule) == ["all", *sorted(per_rule)]
    assert by_rule["all"].raw.count == cases
    for rule, count in per_rule.items():
        assert by_rule[rule].raw.count == count
        assert by_rule[rule].raw.sessions_checked == checked
        assert by_rule[rule].per_100_sessions.value == (approx(100 * count / checked) if count >= 11 else None)
    for rule, waits in ack_seconds.items():
        got = by_rule[rule]
        assert got.raw.acknowledged == len(waits)
        check_summary(got.raw.ack_seconds, waits)
        if len(waits) >= POLICY.min_paired:
            assert got.ack_median_hours.value == approx(np.median(waits) / 3600)
        else:
            assert got.ack_median_hours.display == "insufficient data"
    assert by_rule["all"].ack_median_hours.shown
    assert by_rule["all"].check_response_rate.value == approx(100.0)  # every session's 24 h check answered


def test_time_to_recovery_matches_scipy_kaplan_meier(db: Session, clinic: Clinic) -> None:
    rng = np.random.default_rng(99)
    rows = OutcomeRows(db, clinic.id)
    observed: list[tuple[int, bool]] = []
    unanswered = 0
    for i in range(45):
        start = T0 + timedelta(hours=int(rng.integers(0, 24 * 30)), seconds=float(rng.uniform(0, 60)))
        baseline = int(rng.integers(3, 10))
        ep = rows.episode(pain=baseline, started_at=start)
        if i % 11 == 0:  # no answer at all: not in the curve, but due
            rows.contact(ep, "outcome_4wk", status="expired")
            unanswered += 1
            continue
        session = rows.session(ep)
        event_day: int | None = None
        last_day = 0
        answers = sorted(rng.choice(np.arange(2, 90), size=int(rng.integers(1, 4)), replace=False).tolist())
        for k, day in enumerate(answers):
            when = start + timedelta(days=int(day), hours=float(rng.uniform(0, 23)))
            elapsed = int(when.timestamp()) - int(start.timestamp())
            whole_days = elapsed // 86400
            pain = int(rng.integers(0, 10))
            groc = int(rng.integers(-3, 8))
            step_id = "check_72h" if k == 0 else ("outcome_4wk", "outcome_6wk", "outcome_12wk")[k - 1]
            session_id = session if step_id == "check_72h" else None
            rows.answer(ep, step_id, session_id=session_id, submitted_at=when, nprs_usual=pain, groc15=groc)
            improved = pain_responder(baseline, pain) or (groc >= 4 and step_id != "check_72h")
            if improved and event_day is None:
                event_day = whole_days
            last_day = max(last_day, whole_days)
        observed.append((event_day, True) if event_day is not None else (last_day, False))
    # A second injury with 19 followed patients: too few for a median.
    for _ in range(19):
        ep = rows.episode("pfps", pain=6)
        rows.answer(ep, "outcome_4wk", nprs_usual=1, submitted_at=ep.started_at + timedelta(days=27))
    rows.commit()

    report = compute_outcomes(db, clinic.id, policy=POLICY)
    got = {r.injury: r for r in report.recovery}

    times = np.array([t for t, _ in observed])
    events = np.array([e for _, e in observed])
    reference = sps.ecdf(sps.CensoredData(uncensored=times[events], right=times[~events]))
    km = got[ACHILLES].raw.km
    curve = dict(zip(km.times, km.survival, strict=True))
    assert set(curve) == set(reference.sf.quantiles.tolist())
    for t, p in zip(reference.sf.quantiles, reference.sf.probabilities, strict=True):
        assert curve[float(t)] == approx(p)
    expected_median = next(
        (float(t) for t, p in zip(reference.sf.quantiles, reference.sf.probabilities, strict=True) if p <= 0.5),
        None,
    )
    assert expected_median is not None and int(events.sum()) >= 10
    assert km.median == expected_median
    assert got[ACHILLES].median_days.value == expected_median
    assert got[ACHILLES].raw.episodes_followed == len(observed)
    assert got[ACHILLES].raw.episodes_due == len(observed) + unanswered
    assert got[ACHILLES].events.value == int(events.sum())
    pfps = got["pfps"]
    assert pfps.raw.km.median == 27 and pfps.raw.km.subjects == 19
    assert pfps.median_days.suppressed_reason == Reason.INSUFFICIENT


def test_km_needs_both_minimums(db: Session, clinic: Clinic) -> None:
    rows = OutcomeRows(db, clinic.id)
    cases = {
        "mtss": (19, 10, True),  # 19 patients: too few, although S reaches 0.5 (day 12)
        "calf_strain": (20, 9, False),  # 9 events (after 11 early censorings, so S reaches 0): too few
        "pfps": (20, 10, True),  # 20 and 10: shown; S = 10/20 = 0.5 on day 12
        "itbs": (40, 10, True),  # 10 events then 30 censored: S stays at 0.75, not reached
    }
    for injury, (patients, events, events_first) in cases.items():
        for i in range(patients):
            ep = rows.episode(injury, pain=6)
            when = ep.started_at + timedelta(days=3 + i, hours=5)
            event = i < events if events_first else i >= patients - events
            rows.answer(ep, "outcome_4wk", nprs_usual=1 if event else 6, submitted_at=when)
    rows.commit()

    got = {r.injury: r for r in compute_outcomes(db, clinic.id, policy=POLICY).recovery}

    for injury in ("mtss", "calf_strain"):
        assert got[injury].median_days.suppressed_reason == Reason.INSUFFICIENT
        assert got[injury].median_days.display == "insufficient data"
    assert got["mtss"].raw.km.median == 12  # computed, but not shown
    assert got["calf_strain"].raw.km.median is not None
    assert got["pfps"].median_days.value == 12 and got["pfps"].median_days.display == "12.0 d"
    assert got["pfps"].events.display == "< 11"  # the count itself still follows the count rule
    assert got["itbs"].median_days.suppressed_reason == Reason.NOT_REACHED
    assert got["itbs"].median_days.display == "not reached"


def test_filters_injury_practitioner_and_period(db: Session, clinic: Clinic) -> None:
    rows = OutcomeRows(db, clinic.id)
    first, second = rows.practitioner("A"), rows.practitioner("B")
    made: list[dict[str, Any]] = []
    for i in range(24):
        injury = ACHILLES if i % 3 else "pfps"
        start = T0 + timedelta(days=i)
        ep = rows.episode(injury, started_at=start)
        owner = first if i % 2 else second
        s1 = rows.session(ep, practitioner_id=owner, completed_at=start)
        other = second if owner == first else first
        s2 = rows.session(ep, practitioner_id=other, completed_at=start + timedelta(days=7))
        rows.answer(ep, "check_24h", session_id=s1, soreness=1)
        rows.answer(ep, "check_24h", session_id=s2, soreness=1)
        rows.answer(ep, "outcome_6wk", nprs_usual=2)
        made.append({"injury": injury, "start": start, "owner": owner})
    rows.commit()

    def due(step_id: str, **kw: Any) -> dict[str, int]:
        report = compute_outcomes(db, clinic.id, policy=POLICY, **kw)
        return {r.injury: r.raw.contacts_due for r in report.rows if r.step_id == step_id}

    assert due("outcome_6wk") == {ACHILLES: 16, "pfps": 8}
    assert due("outcome_6wk", injury="pfps") == {"pfps": 8}
    # Outcome surveys belong to the practitioner of the episode's first session ...
    expected = {inj: sum(1 for m in made if m["injury"] == inj and m["owner"] == first) for inj in (ACHILLES, "pfps")}
    assert due("outcome_6wk", practitioner_id=first) == expected
    # ... session checks to their own session's practitioner: one each per episode.
    assert due("check_24h", practitioner_id=first) == {ACHILLES: 16, "pfps": 8}
    # The period is on the episode start: since inclusive, until exclusive.
    since, until = T0 + timedelta(days=6), T0 + timedelta(days=12)
    window = [m for m in made if since <= m["start"] < until]
    assert due("outcome_6wk", since=since, until=until) == {
        inj: sum(1 for m in window if m["injury"] == inj) for inj in (ACHILLES, "pfps")
    }
    adverse = compute_outcomes(db, clinic.id, policy=POLICY, practitioner_id=second).adverse
    assert {a.injury: a.raw.sessions for a in adverse} == {ACHILLES: 16, "pfps": 8}
    with pytest.raises(ValueError):
        compute_outcomes(db, clinic.id, policy=POLICY, since=since.replace(tzinfo=None))


@pytest.fixture
def statements(db: Session) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = db.get_bind()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def _some_patients(rows: OutcomeRows, n: int) -> None:
    for i in range(n):
        ep = rows.episode(rom_measure="wblt_cm", rom_value=5.0)
        session = rows.session(ep)
        contact_id, _ = rows.answer(ep, "check_24h", session_id=session, soreness=5, redflags=["none"])
        rows.answer(ep, "outcome_6wk", nprs_usual=i % 10, rom_measure="wblt_cm", rom_value=6.0)
        rows.escalation(
            ep,
            contact_id=contact_id,
            session_id=session,
            rules=["R10"],
            opened_at=T0,
            acknowledged_at=T0 + timedelta(hours=1),
        )
    rows.commit()


def test_statement_count_does_not_grow_with_patients(db: Session, clinic: Clinic, statements: list[str]) -> None:
    rows = OutcomeRows(db, clinic.id)
    _some_patients(rows, 3)
    statements.clear()
    compute_outcomes(db, clinic.id, policy=POLICY)
    few = len(statements)
    _some_patients(rows, 40)
    statements.clear()
    report = compute_outcomes(db, clinic.id, policy=POLICY)
    assert len(statements) == few == 8  # six for the per-injury figures, two for the headline
    assert report.rows and report.adverse and report.escalations and report.recovery
    assert report.headline.raw.patients_due > 0
    statements.clear()
    points = trajectory(db, clinic.id, policy=POLICY)
    assert len(statements) == 2
    statements.clear()
    reused = trajectory(db, clinic.id, policy=POLICY, rates=step_rates(report))
    assert len(statements) == 1
    assert reused == points and any(p.response_rate is not None for p in points)


def test_trajectory_means_match_numpy(db: Session, clinic: Clinic) -> None:
    rng = np.random.default_rng(3)
    rows = OutcomeRows(db, clinic.id)
    baseline_pain: list[float] = []
    baseline_rom: list[float] = []
    pain: dict[str, list[float]] = {"check_72h": [], "outcome_6wk": []}
    rom: list[float] = []
    for i in range(32):
        b = int(rng.integers(2, 10))
        r = round(float(rng.uniform(2, 12)), 2)
        ep = rows.episode(pain=b, rom_measure="wblt_cm", rom_value=r)
        baseline_pain.append(b)
        baseline_rom.append(r)
        session = rows.session(ep)
        v = int(rng.integers(0, 10))
        rows.answer(ep, "check_72h", session_id=session, nprs_usual=v)
        pain["check_72h"].append(v)
        if i % 4:
            v, r2 = int(rng.integers(0, 10)), round(float(rng.uniform(2, 14)), 2)
            rows.answer(ep, "outcome_6wk", nprs_usual=v, rom_measure="wblt_cm", rom_value=r2)
            pain["outcome_6wk"].append(v)
            rom.append(r2)
    rows.commit()

    points = trajectory(db, clinic.id, policy=POLICY)

    keys = [(p.step_id, p.measure) for p in points]
    assert keys == [
        ("baseline", "nprs_usual"),
        ("baseline", "wblt_cm"),
        ("check_72h", "nprs_usual"),
        ("outcome_6wk", "nprs_usual"),
        ("outcome_6wk", "wblt_cm"),
    ]
    expected = [baseline_pain, baseline_rom, pain["check_72h"], pain["outcome_6wk"], rom]
    for point, values in zip(points, expected, strict=True):
        check_summary(point.raw, values, quartiles=False)
        assert point.mean.value == approx(np.mean(values))
        low, high = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
        assert (point.mean.low, point.mean.high) == approx((low, high))
    assert points[0].response_rate is None
    assert points[2].response_rate is not None and points[2].response_rate.value == approx(100.0)


def test_paired_n_is_hidden_when_it_would_give_back_a_suppressed_answered_count(db: Session, clinic: Clinic) -> None:
    """15 due, 14 answered: 'not answered' (1) is < 11, so 'answered' is hidden too — and so must be the paired n."""
    rows = OutcomeRows(db, clinic.id)
    for i in range(15):
        ep = rows.episode("pfps", pain=7)
        if i < 14:
            rows.answer(ep, "outcome_6wk", nprs_usual=3)
        else:
            rows.contact(ep, "outcome_6wk", status="expired")
    rows.commit()
    got = row(compute_outcomes(db, clinic.id, policy=POLICY), "outcome_6wk", "pfps")
    assert got.contacts_not_answered.display == POLICY.small_text and not got.contacts_answered.shown
    assert got.pain is not None and got.pain.raw.n == 14
    assert not got.pain.n.shown and got.pain.n.display == "suppressed" and "14" not in got.pain.n.display
    assert not got.pain.patients.shown
