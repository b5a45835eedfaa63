"""The headline figure across every injury of a cohort, and the sentences a page prints for it.

**Definition.** Among the cohort's patients (``needlecare.outcomes.definitions`` cohort and owner rules), take each
patient's *latest paired outcome answer*: the answered outcome survey (a contact of ``scope = "episode"``) with a
usual-pain answer of the baseline's recall period (``statements.like_recall``) whose episode has a baseline
pain score, latest by ``submitted_at`` (then by answer id). Each patient counts once, at that answer, whichever
injury or time point it belongs to. A patient *improved* when that answer meets the pain responder rule (drop
>= 2 points and >= 30 % of the episode's baseline; domain.md §2 proposed rule [E], Farrar 2001), the same rule
as the per-injury responder rates.

- n = patients with such an answer; responders = those who improved; share with a Wilson 95 % CI
  (``needlecare.outcomes.stats.wilson``, as every responder rate of the report).
- Response rate = patients who answered at least one due outcome survey / patients with a due outcome survey
  (due = sent, answered or expired), Wilson 95 % CI.
- Small numbers: exactly the rules of a per-injury responder rate (``needlecare.outcomes.finishing``): the share
  needs ``min_paired`` patients ("insufficient data" below, with how many more are needed), responders and
  non-responders follow the count rule with complementary suppression, and n is hidden where the answered count
  beside it is.

Two grouped statements, no answer row is loaded.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, distinct, func, select
from sqlalchemy.sql import Select

from needlecare.outcomes.definitions import ANSWERED, DUE_STATUSES
from needlecare.outcomes.filters import (
    CONTACT,
    EPISODE,
    RESPONSE,
    Filters,
    episode_conditions,
    flag,
    practitioner_conditions,
)
from needlecare.outcomes.finishing import answer_split
from needlecare.outcomes.results import Headline, HeadlineRaw
from needlecare.outcomes.statements import like_recall, pain_responder
from needlecare.outcomes.suppression import (
    Figure,
    Reason,
    count_figure,
    count_parts,
    have_of,
    hidden,
    share_figure,
    shortfall,
    suppress_partition,
)
from needlecare.safety.clinic_config import ReportPolicy

OUTCOME_SCOPE = "episode"
PATIENTS = "patients with a baseline and an answered outcome survey"


def headline_pairs_stmt(f: Filters) -> Select[Any]:
    """One row: ``paired`` (patients with a paired outcome answer) and ``responders`` (at their latest one).

    The answer's contact is checked with EXISTS rather than joined: joined, SQLite drove the statement from every
    answered contact (``ix_contact_status_due``) whatever the filters, 2.8-3.5 s at 128k patients for any cohort;
    from the cohort's episodes it takes 1.1 s for the whole clinic and 0.01-0.17 s for one injury or 90 days."""
    sr, e, c = RESPONSE.c, EPISODE.c, CONTACT.c
    outcome = select(c.id).where(c.id == sr.contact_id, c.scope == OUTCOME_SCOPE, c.status == ANSWERED).exists()
    ranked = (
        select(
            sr.patient_id.label("patient_id"),
            flag(pain_responder(e.baseline_pain_nprs, sr.nprs_usual, sr.nprs_usual_recall)).label("responder"),
            func.row_number()
            .over(partition_by=sr.patient_id, order_by=(sr.submitted_at.desc(), sr.id.desc()))
            .label("rn"),
        )
        .select_from(RESPONSE.join(EPISODE, e.id == sr.episode_id))
        .where(
            *episode_conditions(f),
            *practitioner_conditions(f, sr.session_id, sr.episode_id),
            outcome,
            sr.nprs_usual.is_not(None),
            like_recall(sr.nprs_usual_recall),
            e.baseline_pain_nprs.is_not(None),
        )
        .subquery("latest")
    )
    r = ranked.c
    return select(func.count().label("paired"), func.coalesce(func.sum(r.responder), 0).label("responders")).where(
        r.rn == 1
    )


def headline_due_stmt(f: Filters) -> Select[int, int]:
    """One row: patients with a due outcome survey, and those who answered at least one."""
    c = CONTACT.c
    answered = c.status == ANSWERED
    return (
        select(
            func.count(distinct(c.patient_id)).label("patients_due"),
            func.count(distinct(case((answered, c.patient_id)))).label("patients_answered"),
        )
        .select_from(CONTACT.join(EPISODE, EPISODE.c.id == c.episode_id))
        .where(
            *episode_conditions(f),
            c.status.in_(DUE_STATUSES),
            c.scope == OUTCOME_SCOPE,
            *practitioner_conditions(f, c.session_id, c.episode_id),
        )
    )


def headline_figures(due: Any, pairs: Any, policy: ReportPolicy) -> Headline:
    """The headline's figures from the two statements' rows, suppressed as a per-injury responder rate is."""
    raw = HeadlineRaw(
        patients_due=int(due.patients_due or 0),
        patients_answered=int(due.patients_answered or 0),
        paired=int(pairs.paired or 0),
        responders=int(pairs.responders or 0),
    )
    patients_due, answered, _, response_rate = answer_split(raw.patients_due, raw.patients_answered, policy)
    n = count_figure(raw.paired, policy)
    responders, rest = suppress_partition([raw.responders, raw.paired - raw.responders], policy)
    rate = share_figure(
        raw.responders, raw.paired, policy, min_total=policy.min_paired, blocked=not (responders.shown and rest.shown)
    )
    if not answered.shown:  # n is at most the answered count: showing it could give that hidden count back
        n = n if not n.shown else hidden(Reason.COMPLEMENTARY, raw.paired, policy)
        responders = responders if not responders.shown else hidden(Reason.COMPLEMENTARY, raw.responders, policy)
    if not n.shown:
        rate = rate.model_copy(update={"n_shown": None, "n_display": n.display})
    return Headline(
        patients_due=patients_due,
        patients_answered=answered,
        response_rate=response_rate,
        n=n,
        responders=responders,
        responder_rate=rate,
        raw=raw,
    )


# ------------------------------------------------------------------------------------------------- texts


@dataclass(frozen=True)
class HeadlineText:
    """The headline as a page prints it (only shown figures; never a hidden count)."""

    shown: bool
    value: str  # "52.0 %" or the figure's display text ("insufficient data", "suppressed", "no data")
    sentence: str  # what the value means, with the counts where they may be shown
    ci: str  # "95 % CI 33.5 to 70.7 %", "" when hidden
    n: str  # "n = 25 patients with a baseline and an answered outcome survey"
    response: str  # "Response rate 62.5 % (25 of 40 patients due an outcome survey answered at least one)."


def _percent(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def headline_text(headline: Headline, policy: ReportPolicy) -> HeadlineText:
    """The sentences of the headline: the share with its CI and n, or why it is not shown and what it needs."""
    rate, n = headline.responder_rate, headline.n
    decimals = policy.decimals
    rule = "a drop in usual pain of at least 2 points and 30 %"
    if rate.shown:
        counts = f" ({headline.responders.display} of {n.display})" if headline.responders.shown and n.shown else ""
        sentence = (
            f"of patients{counts} had improved past the pain responder threshold ({rule}) at their latest "
            "answered outcome survey, each patient counted once."
        )
        ci = ""
        if rate.low is not None and rate.high is not None:
            ci = f"95 % CI {_percent(rate.low, decimals)} to {_percent(rate.high, decimals)} %"
    else:
        ci = ""
        if rate.suppressed_reason == Reason.INSUFFICIENT:
            sentence = f"Not shown yet: {shortfall(rate, n, policy, PATIENTS)}."
        elif rate.suppressed_reason == Reason.NO_DATA:
            sentence = "No patient with a baseline has answered an outcome survey for these filters yet."
        else:
            sentence = (
                f"Hidden: the number of patients who improved, or who did not, is below {policy.min_count_shown} "
                "and could identify them."
            )
    due, answered, response = headline.patients_due, headline.patients_answered, headline.response_rate
    if answered.shown and due.shown:
        response_text = (
            f"Response rate {response.display} ({answered.display} of {due.display} patients due an outcome "
            "survey answered at least one)."
        )
    else:
        response_text = f"Response rate {response.display} (patients due an outcome survey: {due.display})."
    return HeadlineText(
        shown=rate.shown,
        value=rate.display,
        sentence=sentence,
        ci=ci,
        n=f"n = {n.display} {PATIENTS}",
        response=response_text,
    )


def empty_chart_text(groups: Sequence[tuple[Figure, int]], policy: ReportPolicy, noun: str, needed: int) -> str:
    """The sentence that stands in for a chart with nothing to draw.

    ``groups`` holds, for every group the chart would show, its count figure as printed beside it and its raw
    count (used only to find the largest group; the text prints the figure, never a hidden number).
    """
    if not groups:
        return f"Nothing to chart yet: no {noun} for these filters."
    count, raw = max(groups, key=lambda g: g[1])
    if raw < needed:
        have, small = count_parts(count)
        return f"Not enough {noun} yet for this chart: the largest group has {have_of(have, small, needed, policy)}."
    return (
        f"No bar can be drawn yet: every figure is hidden because a count behind it is below "
        f"{policy.min_count_shown} and could identify patients."
    )
