"""The headline figure across injuries (needlecare.outcomes.headline), on SQLite and PostgreSQL, and the texts that
say how many answers a figure below its minimum has of how many it needs.

The cohort is small and every expected number is worked out by hand in ``cohort``'s docstring.
"""

from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from scipy import stats as sps
from sqlmodel import Session

from models import Clinic
from needlecare.outcomes.compute import compute_outcomes
from needlecare.outcomes.headline import empty_chart_text, headline_figures, headline_text
from needlecare.outcomes.suppression import Figure, Reason, count_figure, hidden, shortfall, shortfall_text
from needlecare.safety.clinic_config import ReportPolicy
from tests.outcome_rows import T0, Ep, OutcomeRows

POLICY = ReportPolicy()
STEP = "outcome_6wk"
PATIENTS = "patients with a baseline and an answered outcome survey"


@dataclass(frozen=True)
class Cohort:
    a: int
    b: int


def cohort(db: Session, clinic_id: str) -> Cohort:
    """Baseline pain 6 unless said; one patient per episode unless said.

    - 14 patients of practitioner A: 6 weeks at pain 2 (drop 4: improved).
    - 11 of practitioner B: 6 weeks at pain 5 (drop 1: not improved).
    - P1 (B), two episodes: Achilles at 6 weeks pain 5 (not), then PFPS (baseline 8) at 4 weeks pain 3, 16 days
      later (drop 5 >= 2 and >= 30 % of 8): counted once, at the later answer, as improved.
    - P2 (B): 6 weeks pain 5 (not), then a later 1-week session check at pain 0: a check is no outcome survey.
    - P3 (B): no baseline, answered at 6 weeks: answered, not paired.
    - P4 (B): answered at 6 weeks without a pain answer: answered, not paired.
    - P5 (B): 6 weeks pain 2 (improved), 12 weeks pain 5: latest is not improved.
    - P6 (B): 6 weeks pain 5, 12 weeks pain 2: latest is improved.
    - 12 of B whose 6-week survey expired: due, not answered.
    - One of B with a planned and a skipped survey, one with only an answered 1-day check: not due.

    Patients due an outcome survey: 14 + 11 + 6 + 12 = 43; answered one: 31; paired: 14 + 11 + 4 = 29;
    improved: 14 + P1 + P6 = 16 (13 not).
    """
    rows = OutcomeRows(db, clinic_id)
    a = rows.practitioner("Alex Moreno")
    b = rows.practitioner("Bea Lindqvist")

    def episode(practitioner: int, injury: str = "achilles_tendinopathy", **kwargs: Any) -> tuple[Ep, int]:
        ep = rows.episode(injury, **kwargs)
        return ep, rows.session(ep, practitioner_id=practitioner)

    for _ in range(14):
        ep, _ = episode(a)
        rows.answer(ep, STEP, nprs_usual=2)
    for _ in range(11):
        ep, _ = episode(b)
        rows.answer(ep, STEP, nprs_usual=5)
    first, _ = episode(b)
    rows.answer(first, STEP, nprs_usual=5)
    later, _ = episode(b, "pfps", pain=8, started_at=T0 + timedelta(days=30), patient_id=first.patient_id)
    rows.answer(later, "outcome_4wk", nprs_usual=3)
    p2, _ = episode(b)
    rows.answer(p2, STEP, nprs_usual=5)
    check_session = rows.session(p2, practitioner_id=b, completed_at=T0 + timedelta(days=50))
    rows.answer(p2, "check_7d", session_id=check_session, submitted_at=T0 + timedelta(days=57), nprs_usual=0)
    p3, _ = episode(b, pain=None)
    rows.answer(p3, STEP, nprs_usual=1)
    p4, _ = episode(b)
    rows.answer(p4, STEP)
    p5, _ = episode(b)
    rows.answer(p5, STEP, nprs_usual=2)
    rows.answer(p5, "outcome_12wk", nprs_usual=5)
    p6, _ = episode(b)
    rows.answer(p6, STEP, nprs_usual=5)
    rows.answer(p6, "outcome_12wk", nprs_usual=2)
    for _ in range(12):
        ep, _ = episode(b)
        rows.contact(ep, STEP, status="expired")
    waiting, _ = episode(b)
    rows.contact(waiting, STEP, status="planned")
    rows.contact(waiting, "outcome_12wk", status="skipped")
    checked, session = episode(b)
    rows.answer(checked, "check_24h", session_id=session, nprs_usual=1, soreness=2)
    rows.commit()
    return Cohort(a=a, b=b)


def test_each_patient_counts_once_at_their_latest_outcome_answer(db: Session, clinic: Clinic) -> None:
    cohort(db, clinic.id)
    h = compute_outcomes(db, clinic.id, policy=POLICY).headline
    assert (h.raw.patients_due, h.raw.patients_answered, h.raw.paired, h.raw.responders) == (43, 31, 29, 16)
    assert (h.patients_due.display, h.patients_answered.display, h.n.display, h.responders.display) == (
        "43",
        "31",
        "29",
        "16",
    )
    low, high = sps.binomtest(16, 29).proportion_ci(method="wilson")
    assert h.responder_rate.shown and h.responder_rate.value == pytest.approx(100 * 16 / 29)
    assert h.responder_rate.low == pytest.approx(100 * low) and h.responder_rate.high == pytest.approx(100 * high)
    r_low, r_high = sps.binomtest(31, 43).proportion_ci(method="wilson")
    assert h.response_rate.value == pytest.approx(100 * 31 / 43)
    assert h.response_rate.low == pytest.approx(100 * r_low) and h.response_rate.high == pytest.approx(100 * r_high)
    text = headline_text(h, POLICY)
    assert text.shown and text.value == f"{100 * 16 / 29:.1f} %"
    assert text.sentence.startswith("of patients (16 of 29) had improved past the pain responder threshold")
    assert text.ci == f"95 % CI {100 * low:.1f} to {100 * high:.1f} %"
    assert text.n == f"n = 29 {PATIENTS}"
    assert text.response == (
        f"Response rate {100 * 31 / 43:.1f} % (31 of 43 patients due an outcome survey answered at least one)."
    )


def test_below_the_minimum_the_headline_says_how_many_more_it_needs(db: Session, clinic: Clinic) -> None:
    c = cohort(db, clinic.id)
    only_a = compute_outcomes(db, clinic.id, policy=POLICY, practitioner_id=c.a).headline
    assert (only_a.raw.patients_due, only_a.raw.paired, only_a.raw.responders) == (14, 14, 14)
    assert only_a.responder_rate.suppressed_reason == Reason.INSUFFICIENT and only_a.responder_rate.value is None
    text = headline_text(only_a, POLICY)
    assert not text.shown and text.ci == ""
    assert text.sentence == f"Not shown yet: 14 of 20 {PATIENTS}, 6 more needed."
    # PFPS alone: P1's later episode, one patient: the count itself is hidden, so is the exact shortfall
    pfps = compute_outcomes(db, clinic.id, policy=POLICY, injury="pfps").headline
    assert (pfps.raw.patients_due, pfps.raw.paired, pfps.raw.responders) == (1, 1, 1)
    pfps_text = headline_text(pfps, POLICY)
    assert pfps_text.sentence == f"Not shown yet: < 11 of 20 {PATIENTS}, at least 10 more needed."
    assert pfps_text.n == f"n = < 11 {PATIENTS}" and "1" not in pfps_text.response.replace("< 11", "")
    # a smaller minimum shows it: the rule is the clinic's min_paired, nothing else
    relaxed = ReportPolicy(min_paired=14)
    assert compute_outcomes(db, clinic.id, policy=relaxed, practitioner_id=c.a).headline.responder_rate.shown


def test_small_responder_counts_hide_the_headline_share() -> None:
    """30 paired, 4 improved: the share would give the 4 back, as for any responder rate."""
    h = headline_figures(
        SimpleNamespace(patients_due=45, patients_answered=30), SimpleNamespace(paired=30, responders=4), POLICY
    )
    assert not h.responder_rate.shown and h.responder_rate.suppressed_reason == Reason.SMALL_BASE
    assert h.responders.display == "< 11" and h.n.display == "30"
    assert headline_text(h, POLICY).sentence.startswith("Hidden: the number of patients who improved, or who did not")
    # 25 answered beside 5 not: the answered count is hidden, and with it the paired n and the n of the share
    h = headline_figures(
        SimpleNamespace(patients_due=30, patients_answered=25), SimpleNamespace(paired=25, responders=12), POLICY
    )
    assert h.patients_answered.display == "suppressed" and h.n.display == "suppressed"
    assert h.responder_rate.shown and h.responder_rate.n_shown is None and "25" not in h.responder_rate.n_display
    text = headline_text(h, POLICY)
    assert "25" not in text.sentence + text.n + text.response
    empty = headline_figures(
        SimpleNamespace(patients_due=0, patients_answered=0), SimpleNamespace(paired=0, responders=0), POLICY
    )
    assert headline_text(empty, POLICY).sentence.startswith("No patient with a baseline has answered")


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (count_figure(14, POLICY), "14 of 20 paired answers, 6 more needed"),
        (count_figure(0, POLICY), "0 of 20 paired answers, 20 more needed"),
        (count_figure(7, POLICY), "< 11 of 20 paired answers, at least 10 more needed"),
        (hidden(Reason.COMPLEMENTARY, 14, POLICY), "fewer than 20 paired answers"),
    ],
)
def test_a_figure_below_the_minimum_says_how_many_it_has_of_how_many_it_needs(count: Figure, expected: str) -> None:
    insufficient = hidden(Reason.INSUFFICIENT, 14, POLICY)
    assert shortfall(insufficient, count, POLICY, "paired answers") == expected
    shown = count_figure(25, POLICY)
    assert shortfall(shown, count, POLICY, "paired answers") == "", "only a figure below its minimum"
    assert shortfall(hidden(Reason.SMALL_BASE, 30, POLICY), count, POLICY, "paired answers") == ""


def test_the_shortfall_never_gives_back_a_hidden_count_under_other_rules() -> None:
    loose = ReportPolicy(min_count_shown=1)  # count suppression off: 7 is shown
    assert shortfall_text(7, False, 20, loose, "answers") == "7 of 20 answers, 13 more needed"
    few = ReportPolicy(min_paired=8)  # "< 11 of 8" would say nothing: fewer than 8
    assert shortfall_text(None, True, 8, few, "answers") == "fewer than 8 answers"


def test_an_empty_chart_becomes_a_sentence_about_its_largest_group() -> None:
    groups = [(count_figure(7, POLICY), 7), (count_figure(14, POLICY), 14), (count_figure(3, POLICY), 3)]
    assert empty_chart_text(groups, POLICY, "paired answers", 20) == (
        "Not enough paired answers yet for this chart: the largest group has 14 of 20."
    )
    small = [(count_figure(7, POLICY), 7), (count_figure(3, POLICY), 3)]
    assert empty_chart_text(small, POLICY, "paired answers", 20).endswith("the largest group has < 11 of 20.")
    private = [(count_figure(30, POLICY), 30)]  # enough answers, every rate hidden for a small count
    assert empty_chart_text(private, POLICY, "paired answers", 20).startswith("No bar can be drawn yet")
    assert empty_chart_text([], POLICY, "paired answers", 20) == (
        "Nothing to chart yet: no paired answers for these filters."
    )
