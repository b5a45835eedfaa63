"""Finishing the outcome figures: the rows of the grouped statements become suppressed figures (paired
changes, response rates, adverse events, escalations, Kaplan-Meier recovery) under the clinic's policy.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from needlecare.core.catalogue import get_catalogue
from needlecare.outcomes import stats
from needlecare.outcomes.aggregates import read_histograms, read_summary
from needlecare.outcomes.definitions import ADVERSE_KINDS, ALL_RULES, MEASURE_RULES, PAIN, STEP_ORDER, UNKNOWN_MEASURE
from needlecare.outcomes.results import (
    AdverseEvent,
    AdverseRaw,
    AdverseRow,
    ChangeRaw,
    ChangeStats,
    EscalationRaw,
    EscalationRow,
    RecoveryRaw,
    RecoveryRow,
    StepRaw,
    StepRow,
)
from needlecare.outcomes.statements import CHANGE_KEYS, PATIENTS_ROW, VALUES_ROW
from needlecare.outcomes.suppression import (
    Figure,
    Reason,
    complement_share,
    count_figure,
    hidden,
    rate_figure,
    share_figure,
    statistic_figure,
    suppress_partition,
)
from needlecare.safety.clinic_config import ReportPolicy


def unit_of(measure: str) -> str:
    if measure == PAIN:
        return "0-10"
    found = get_catalogue().measures.get(measure)
    return found.unit if found else ""


def step_key(injury: str, step_id: str) -> tuple[str, int, str]:
    order = STEP_ORDER.index(step_id) if step_id in STEP_ORDER else len(STEP_ORDER)
    return injury, order, step_id


@dataclass(frozen=True)
class ChangeGroup:
    """The paired changes of one injury x step x measure: their summary, responders and distinct patients."""

    injury: str
    step_id: str
    measure: str
    summary: stats.Summary
    responders: int
    patients: int


def change_groups(rows: Iterable[Any]) -> list[ChangeGroup]:
    """:class:`ChangeGroup` per group of ``statements.changes_stmt``'s rows (value counts and distinct patients)."""
    rows = list(rows)
    patients = {(r.injury, r.step_id, r.measure): int(r.count) for r in rows if r.kind == PATIENTS_ROW}
    histograms = read_histograms((r for r in rows if r.kind == VALUES_ROW), CHANGE_KEYS, sums=("responders",))
    return [
        ChangeGroup(
            injury=h.key[0],
            step_id=h.key[1],
            measure=h.key[2],
            summary=h.summary,
            responders=h.sums["responders"],
            patients=patients.get(h.key, 0),
        )
        for h in histograms
    ]


def change_stats(measure: str, row: ChangeGroup, policy: ReportPolicy) -> ChangeStats:
    summary = row.summary
    n = summary.n
    responders = row.responders
    rule = MEASURE_RULES.get(measure, UNKNOWN_MEASURE)
    unit = unit_of(measure)
    has_rule = rule.threshold is not None and rule.direction is not None
    if has_rule:
        responder_count, rest = suppress_partition([responders, n - responders], policy)
        responder_rate = share_figure(
            responders, n, policy, min_total=policy.min_paired, blocked=not (responder_count.shown and rest.shown)
        )
    else:
        responder_count = hidden(Reason.NO_MCID, n, policy)
        responder_rate = hidden(Reason.NO_MCID, n, policy)
    return ChangeStats(
        measure=measure,
        unit=unit,
        direction=rule.direction,
        threshold=rule.threshold if has_rule else None,
        threshold_kind=rule.kind if has_rule else "",
        threshold_source=rule.source,
        n=count_figure(n, policy),
        patients=count_figure(int(row.patients), policy),
        mean=statistic_figure(summary.mean, n, policy, low=summary.ci_low, high=summary.ci_high),
        sd=statistic_figure(summary.sd, n, policy),
        median=statistic_figure(summary.median, n, policy),
        q1=statistic_figure(summary.q1, n, policy),
        q3=statistic_figure(summary.q3, n, policy),
        responders=responder_count,
        responder_rate=responder_rate,
        raw=ChangeRaw(n=n, patients=int(row.patients), summary=summary, responders=responders),
    )


def answer_split(due: int, answered: int, policy: ReportPolicy) -> tuple[Figure, Figure, Figure, Figure]:
    """(due, answered, not answered, response rate) with complementary suppression of the two cells."""
    answered_fig, rest_fig = suppress_partition([answered, due - answered], policy)
    rate = share_figure(answered, due, policy, blocked=not (answered_fig.shown and rest_fig.shown))
    return count_figure(due, policy), answered_fig, rest_fig, rate


def step_rows(counts: Sequence[Any], changes: Sequence[ChangeGroup], policy: ReportPolicy) -> tuple[StepRow, ...]:
    by_step: dict[tuple[str, str], list[ChangeGroup]] = defaultdict(list)
    for row in changes:
        by_step[(row.injury, row.step_id)].append(row)
    rows: list[StepRow] = []
    for row in sorted(counts, key=lambda r: step_key(r.injury, r.step_id)):
        raw = StepRaw(
            contacts_due=int(row.contacts_due),
            contacts_answered=int(row.contacts_answered or 0),
            patients_due=int(row.patients_due),
            patients_answered=int(row.patients_answered),
        )
        contacts_due, contacts_answered, contacts_rest, rate = answer_split(
            raw.contacts_due, raw.contacts_answered, policy
        )
        patients_due, patients_answered, patients_rest, patient_rate = answer_split(
            raw.patients_due, raw.patients_answered, policy
        )
        changes_here = sorted(by_step.get((row.injury, row.step_id), []), key=lambda r: r.measure)
        pain = next((change_stats(PAIN, r, policy) for r in changes_here if r.measure == PAIN), None)
        rom = tuple(change_stats(r.measure, r, policy) for r in changes_here if r.measure != PAIN)
        if not (contacts_answered.shown and patients_answered.shown):
            # The paired n is at most the answered count: showing it would give back a suppressed cell.
            pain = _hide_n(pain, policy) if pain is not None else None
            rom = tuple(_hide_n(change, policy) for change in rom)
        rows.append(
            StepRow(
                injury=row.injury,
                step_id=row.step_id,
                scope=row.scope,
                contacts_due=contacts_due,
                contacts_answered=contacts_answered,
                contacts_not_answered=contacts_rest,
                patients_due=patients_due,
                patients_answered=patients_answered,
                patients_not_answered=patients_rest,
                response_rate=rate,
                patient_response_rate=patient_rate,
                loss_to_follow_up=complement_share(rate, policy),
                pain=pain,
                rom=rom,
                raw=raw,
            )
        )
    return tuple(rows)


def _hide_n(change: ChangeStats, policy: ReportPolicy) -> ChangeStats:
    """The same statistics with their counts (n, patients, responders) hidden (complementary suppression);
    a count already shown as "< 11" keeps that display."""
    n = change.n if not change.n.shown else hidden(Reason.COMPLEMENTARY, change.raw.n, policy)
    patients = (
        change.patients if not change.patients.shown else hidden(Reason.COMPLEMENTARY, change.raw.patients, policy)
    )
    responders = (
        change.responders
        if not change.responders.shown
        else hidden(Reason.COMPLEMENTARY, change.raw.responders, policy)
    )
    return replace(change, n=n, patients=patients, responders=responders)


def adverse_rows(rows: Sequence[Any], policy: ReportPolicy) -> tuple[AdverseRow, ...]:
    result: list[AdverseRow] = []
    for row in sorted(rows, key=lambda r: r.injury):
        checked = int(row.sessions_checked)
        due_check = int(row.sessions_due_check)
        counts = {kind: int(getattr(row, kind) or 0) for kind in ADVERSE_KINDS}
        events: dict[str, AdverseEvent] = {}
        for kind, count in counts.items():
            with_event, without = suppress_partition([count, checked - count], policy)
            events[kind] = AdverseEvent(
                count=with_event,
                per_100_sessions=share_figure(count, checked, policy, blocked=not (with_event.shown and without.shown)),
            )
        _, checked_fig, _, check_rate = answer_split(due_check, checked, policy)
        result.append(
            AdverseRow(
                injury=row.injury,
                sessions=count_figure(int(row.sessions), policy),
                sessions_checked=checked_fig,
                check_response_rate=check_rate,
                events=events,
                raw=AdverseRaw(
                    sessions=int(row.sessions), sessions_due_check=due_check, sessions_checked=checked, counts=counts
                ),
            )
        )
    return tuple(result)


def escalation_rows(
    counts: Sequence[Any], acks: Sequence[Any], adverse: Sequence[AdverseRow], policy: ReportPolicy
) -> tuple[EscalationRow, ...]:
    by_injury = {row.injury: row for row in adverse}
    ack_by = {(r.injury, r.rule_id): read_summary(r) for r in acks}
    empty = stats.summarise(0, None, None, [(None, None)] * len(stats.QUARTILES))
    result: list[EscalationRow] = []
    for row in sorted(counts, key=lambda r: (r.injury, r.rule_id != ALL_RULES, r.rule_id)):
        sessions_row = by_injury.get(row.injury)
        sessions = sessions_row.raw.sessions_checked if sessions_row else 0
        ack = ack_by.get((row.injury, row.rule_id), empty)
        median_hours = None if ack.median is None else ack.median / 3600.0
        result.append(
            EscalationRow(
                injury=row.injury,
                rule_id=row.rule_id,
                count=count_figure(int(row.count), policy),
                per_100_sessions=rate_figure(int(row.count), sessions, policy),
                check_response_rate=sessions_row.check_response_rate
                if sessions_row
                else hidden(Reason.NO_DATA, 0, policy),
                ack_median_hours=statistic_figure(median_hours, ack.n, policy, unit="h"),
                raw=EscalationRaw(
                    count=int(row.count), sessions_checked=sessions, acknowledged=int(row.acknowledged), ack_seconds=ack
                ),
            )
        )
    return tuple(result)


def recovery_rows(rows: Sequence[Any], policy: ReportPolicy) -> tuple[RecoveryRow, ...]:
    per_injury: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    unanswered: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.day is None:
            unanswered[row.injury] += int(row.censored)
        else:
            per_injury[row.injury].append((float(row.day), int(row.events), int(row.censored)))
    result: list[RecoveryRow] = []
    for injury in sorted(set(per_injury) | set(unanswered)):
        km = stats.kaplan_meier(per_injury.get(injury, []))
        due = km.subjects + unanswered.get(injury, 0)
        _, followed, _, rate = answer_split(due, km.subjects, policy)
        if km.subjects < policy.km_min_patients or km.total_events < policy.km_min_events:
            median = hidden(Reason.INSUFFICIENT, km.subjects, policy)
        elif km.median is None:
            median = hidden(Reason.NOT_REACHED, km.subjects, policy)
        else:
            median = statistic_figure(km.median, km.subjects, policy, min_n=policy.km_min_patients, unit="d")
        result.append(
            RecoveryRow(
                injury=injury,
                episodes_due=count_figure(due, policy),
                episodes_followed=followed,
                response_rate=rate,
                events=count_figure(km.total_events, policy),
                median_days=median,
                raw=RecoveryRaw(episodes_due=due, episodes_followed=km.subjects, km=km),
            )
        )
    return tuple(result)
