"""The synthetic cohort generator: deterministic, shaped like domain.md says, and valid for the real contract."""

import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from models.base import utcnow
from needlecare.core.catalogue import get_catalogue
from needlecare.demo.clinic import session_event
from needlecare.demo.cohort import Cohort, generate_cohort, iter_patients
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import BREATHING, BSI_ONLY, validate_answers
from needlecare.intake import ingest

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(200, seed=7, start=START)


def _rate(cohort: Cohort, step_id: str) -> float:
    plans = [plan for p in cohort for _, plan in p.planned() if plan.step_id == step_id]
    return sum(plan.answered for plan in plans) / len(plans)


def test_same_seed_same_cohort_and_patients_do_not_depend_on_the_cohort_size(cohort: Cohort) -> None:
    again = generate_cohort(200, seed=7, start=START)
    assert again == cohort
    assert generate_cohort(12, seed=7, start=START).patients == cohort.patients[:12]
    assert tuple(iter_patients(30, 7, start=START)) == cohort.patients[:30]
    other = generate_cohort(200, seed=8, start=START)
    assert other.patients != cohort.patients
    assert sum(a.sessions != b.sessions for a, b in zip(other, cohort, strict=True)) > 150


def test_a_later_start_moves_the_times_and_nothing_else(cohort: Cohort) -> None:
    later = generate_cohort(20, seed=7, start=START + timedelta(days=7))
    for moved, first in zip(later, cohort.patients[:20], strict=True):
        assert replace(moved, sessions=()) == replace(first, sessions=())
        for a, b in zip(moved.sessions, first.sessions, strict=True):
            # same local clinic time a week later; a DST change in between moves UTC by an hour
            assert abs(a.completed_at - b.completed_at - timedelta(days=7)) <= timedelta(hours=1)
            assert replace(a, completed_at=START) == replace(b, completed_at=START)


def test_patients_are_obviously_synthetic(cohort: Cohort) -> None:
    for patient in cohort:
        assert patient.first_name == "Demo" and patient.last_name == f"Patient {patient.number:04d}"
        assert patient.email == f"demo-{patient.number:04d}@example.invalid"
        assert patient.external_id.startswith("DEMO-")
    assert len({p.external_id for p in cohort}) == len(cohort)
    assert len({s.external_id for p in cohort for s in p.sessions}) == cohort.session_count


def test_every_injury_is_present_even_in_a_small_cohort(cohort: Cohort) -> None:
    injuries = set(get_catalogue().injuries)
    assert {p.injury for p in cohort} == injuries
    assert {p.injury for p in generate_cohort(10, seed=3, start=START)} == injuries
    mix = Counter(p.injury for p in cohort)
    assert mix.most_common(1)[0][1] < 0.25 * len(cohort), "no injury swamps the rest"


def test_sessions_one_to_six_days_apart_in_clinic_hours(cohort: Cohort) -> None:
    counts = Counter(len(p.sessions) for p in cohort)
    assert set(counts) <= set(range(1, 7)) and len(counts) == 6
    assert 2.8 <= cohort.session_count / len(cohort) <= 4.0, "a typical course is 3-6 sessions (domain.md §4.1)"
    for patient in cohort:
        times = [s.completed_at for s in patient.sessions]
        assert all(later - earlier >= timedelta(days=2) for earlier, later in pairwise(times))
        assert times[0] >= START - timedelta(days=1)


def test_every_session_body_passes_the_real_ingest_checks() -> None:
    """The contract and the catalogue ranges (baseline NPRS, ROM measure for the injury, its range)."""
    now = utcnow()
    recent = generate_cohort(200, seed=7, start=now - timedelta(weeks=14))
    checked = 0
    for patient in recent:
        for session in patient.sessions:
            if session.completed_at <= now:
                body = ingest.validate(session_event(patient, session, "demo-clinic"))
                assert body.baseline.rom is not None and body.baseline.rom.measure == patient.rom_measure
                checked += 1
    assert checked > 500


def test_every_planned_answer_passes_the_real_validator(cohort: Cohort) -> None:
    """Only the step's questions, ROM only where the protocol asks, the same PSFS activities every time."""
    rom_answers = 0
    for patient in cohort:
        protocol = get_protocol(patient.injury)
        for session, plan in patient.planned():
            step = protocol.step(plan.step_id)
            regions = list(session.regions if session else patient.sessions[-1].regions)
            answers = validate_answers(
                dict(plan.answers),
                protocol=protocol,
                step=step,
                regions_needled=regions,
                previous_activities=list(patient.psfs_activities),
            )
            if answers.rom is not None:
                rom_answers += 1
                assert "rom" in step.questions
    assert rom_answers > 100


def test_response_falls_from_early_checks_to_twelve_weeks(cohort: Cohort) -> None:
    """domain.md §4.3: about 60-80 % early, about 50-55 % at 12 weeks with automated collection."""
    rates = {
        step: _rate(cohort, step) for step in ("check_24h", "check_72h", "check_7d", "outcome_4wk", "outcome_12wk")
    }
    assert 0.70 <= rates["check_24h"] <= 0.88
    assert 0.45 <= rates["outcome_12wk"] <= 0.62
    assert rates["check_24h"] > rates["check_72h"] > rates["check_7d"] > rates["outcome_4wk"] > rates["outcome_12wk"]


def test_red_flags_are_rare_but_present(cohort: Cohort) -> None:
    plans = [(patient, session, plan) for patient in cohort for session, plan in patient.planned()]
    flagged = [(p, s, plan) for p, s, plan in plans if plan.red_flag]
    assert 0.005 <= len(flagged) / len(plans) <= 0.03
    kinds = {flag for _, _, plan in flagged for flag in plan.answers.get("redflags", []) if flag != "none"}
    assert len(kinds - BREATHING - BSI_ONLY) >= 3, f"several kinds of red flag, not only breathing or bone: {kinds}"
    assert any(plan.answers.get("bruise") in ("large", "spreading") for _, _, plan in flagged)
    catalogue = get_catalogue()
    trunk = [p for p in cohort if any(catalogue.is_trunk(list(s.regions)) for s in p.sessions)]
    assert 0 < len(trunk) <= 0.1 * len(cohort), "runners' injuries: trunk needling is the exception"
    for _patient, session, plan in plans:
        if set(plan.answers.get("redflags", [])) & BREATHING:
            assert session is not None and catalogue.is_trunk(list(session.regions)), "breathless only after trunk"
        if plan.red_flag:
            assert plan.answered


def test_soreness_is_high_at_24_hours_and_fades_by_72(cohort: Cohort) -> None:
    sore: dict[str, list[int]] = defaultdict(list)
    for patient in cohort:
        for _, plan in patient.planned():
            if "soreness" in plan.answers:
                sore[plan.step_id].append(plan.answers["soreness"])
    day1, day3 = statistics.mean(sore["check_24h"]), statistics.mean(sore["check_72h"])
    assert day1 >= 2.5 and day3 * 2.5 < day1
    assert sum(s >= 2 for s in sore["check_24h"]) / len(sore["check_24h"]) >= 0.55, "most have some (domain.md §2)"


def test_most_improve_some_worsen_and_groc_follows_the_pain(cohort: Cohort) -> None:
    courses = Counter(p.course for p in cohort)
    assert 0.5 <= courses["responder"] / len(cohort) <= 0.72
    assert 0.04 <= courses["worse"] / len(cohort) <= 0.18
    better: list[int] = []
    same_or_worse: list[int] = []
    for patient in cohort:
        answers = patient.outcomes["outcome_12wk"].answers
        drop = patient.baseline_nprs - answers["nprs_usual"]
        (better if drop >= 2 else same_or_worse).append(answers["groc15"])
        if patient.course == "worse":
            assert answers["groc15"] <= 2
    assert statistics.mean(better) - statistics.mean(same_or_worse) >= 3


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_cohort(3, start=datetime(2026, 3, 2))
    with pytest.raises(ValueError, match="0 or more"):
        generate_cohort(-1, start=START)
    assert len(generate_cohort(0, start=START)) == 0
