"""One clinic's outcome report flattened into figure rows: the figures that CSV, JSON and the HTML tables print.

:func:`figure_rows` turns a :class:`~needlecare.outcomes.reports.ReportData` into one :class:`FigureRow` per figure
(clinic, injury, section, time point, measure, metric, value, 95 % CI, n, the response rate beside it, the display
text, and why it is suppressed). Every renderer draws from these rows, so all formats hold the same figures; a
suppressed figure has **no** value, interval or small n anywhere (the raw numbers of ``needlecare.outcomes.results``
are never read here).
"""

from dataclasses import dataclass, field, replace
from typing import Any

from needlecare.outcomes.definitions import ADVERSE_KINDS
from needlecare.outcomes.reports import ReportData
from needlecare.outcomes.results import ChangeStats
from needlecare.outcomes.suppression import Figure, Reason, hidden

CSV_COLUMNS = (
    "clinic",
    "injury",
    "section",
    "step",
    "measure",
    "metric",
    "unit",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "n_display",
    "response_rate",
    "display",
    "suppressed_reason",
)
"""Columns of the CSV. ``value``/``ci_low``/``ci_high`` and ``response_rate`` (per 100) are empty when suppressed;
``n`` is empty when the n itself is a suppressed count (``n_display`` then reads "< 11")."""

ADVERSE_LABELS = {
    "soreness_past_72h": "Soreness past 72 h",
    "bruise_any": "Bruising (any)",
    "bruise_large": "Bruising larger than a palm",
    "bruise_spreading": "Spreading bruise",
    "red_flag": "Any red-flag answer",
}
SECTION_TITLES = {
    "follow_up": "Follow-up and response",
    "channels": "Response by channel",
    "pain_change": "Change in usual pain from baseline",
    "rom_change": "Change in range of motion from baseline",
    "trajectory": "Mean at each time point",
    "adverse_events": "Adverse events",
    "escalations": "Escalations",
    "recovery": "Time to recovery",
}


@dataclass(frozen=True)
class FigureRow:
    """One figure of the report, ready for CSV/JSON/HTML. Suppressed figures carry no value."""

    clinic: str
    injury: str
    section: str
    step: str
    measure: str
    metric: str
    unit: str
    value: float | int | None  # int for counts
    ci_low: float | None
    ci_high: float | None
    n: int | None
    n_display: str
    response_rate: float | None
    display: str
    suppressed_reason: str | None
    kind: str = field(default="count", compare=False)  # count | share | statistic | rate (how to print it)

    @property
    def key(self) -> str:
        """Identifies the figure within a report (the HTML cells carry it as ``data-key``)."""
        return "|".join((self.injury, self.section, self.step, self.measure, self.metric))

    def csv_record(self) -> dict[str, str]:
        """The row as CSV strings; None becomes empty, floats keep full precision (``repr``)."""
        record: dict[str, str] = {}
        for column in CSV_COLUMNS:
            value = getattr(self, column)
            record[column] = "" if value is None else repr(value) if isinstance(value, float) else str(value)
        return record

    def json_record(self) -> dict[str, Any]:
        """The row without clinic and injury (the JSON nests it under them)."""
        return {c: getattr(self, c) for c in CSV_COLUMNS if c not in ("clinic", "injury", "section")}


def _row(
    data: ReportData,
    injury: str,
    section: str,
    step: str,
    measure: str,
    metric: str,
    unit: str,
    figure: Figure,
    response_rate: Figure | None,
    kind: str,
) -> FigureRow:
    shown = figure.suppressed_reason is None
    value: float | int | None = figure.value if shown else None
    if kind == "count" and value is not None and float(value).is_integer():
        value = int(value)
    n, n_display = figure.n_shown, figure.n_display
    if kind == "count" and not shown:
        # A count's n is the count itself: a complementary-suppressed count (say 14 of 15, hidden so the 1
        # cannot be worked out) still has n_shown = 14, which would give the hidden cell away.
        n, n_display = None, figure.display
    return FigureRow(
        clinic=data.clinic_id,
        injury=injury,
        section=section,
        step=step,
        measure=measure,
        metric=metric,
        unit=unit,
        value=value,
        ci_low=figure.low if shown else None,
        ci_high=figure.high if shown else None,
        n=n,
        n_display=n_display,
        response_rate=_rate_value(response_rate),
        display=figure.display,
        suppressed_reason=None if shown else str(figure.suppressed_reason),
        kind=kind,
    )


def _rate_value(rate: Figure | None) -> float | None:
    if rate is None or rate.suppressed_reason is not None:
        return None
    return rate.value


def _change_rows(
    data: ReportData, injury: str, section: str, step: str, change: ChangeStats, rate: Figure
) -> list[FigureRow]:
    unit = change.unit
    parts: list[tuple[str, str, Figure, str]] = [
        ("n_paired", "count", change.n, "count"),
        ("patients", "count", change.patients, "count"),
        ("mean_change", unit, change.mean, "statistic"),
        ("sd", unit, change.sd, "statistic"),
        ("median_change", unit, change.median, "statistic"),
        ("q1", unit, change.q1, "statistic"),
        ("q3", unit, change.q3, "statistic"),
        ("responders", "count", change.responders, "count"),
        ("responder_rate", "%", change.responder_rate, "share"),
    ]
    rows = [_row(data, injury, section, step, change.measure, m, u, f, rate, k) for m, u, f, k in parts]
    if not change.n.shown:  # the paired n would give back a suppressed answered count: no row may carry it
        rows = [row if row.unit == "count" else replace(row, n=None, n_display=change.n.display) for row in rows]
    return rows


def _channel_rows(data: ReportData, injury: str, rates: dict[str, Figure]) -> list[FigureRow]:
    """Section ``channels`` (``needlecare.outcomes.channels``): per time point, answered online and by SMS reply
    (measure ""), then contacts, answered and response rate per channel group (measure = the group id)."""
    rows: list[FigureRow] = []
    for step in (s for s in data.channels if s.injury == injury):
        rate = rates.get(step.step_id)
        for metric, figure in (("answered_online", step.answered_online), ("answered_sms", step.answered_sms)):
            rows.append(_row(data, injury, "channels", step.step_id, "", metric, "count", figure, rate, "count"))
        for g in step.groups:
            for metric, unit, figure, kind in (
                ("contacts", "count", g.contacts, "count"),
                ("answered", "count", g.answered, "count"),
                ("response_rate", "%", g.response_rate, "share"),
            ):
                rows.append(_row(data, injury, "channels", step.step_id, g.group, metric, unit, figure, rate, kind))
    return rows


def figure_rows(data: ReportData) -> list[FigureRow]:
    """Every figure of the report, one row each, in report order (injury, then section, then time point)."""
    o = data.outcomes
    rows: list[FigureRow] = []
    adverse_by = {r.injury: r for r in o.adverse}
    for injury in data.injuries:
        step_rows = [r for r in o.rows if r.injury == injury]
        for r in step_rows:
            rate = r.response_rate
            for metric, unit, figure, kind in (
                ("contacts_due", "count", r.contacts_due, "count"),
                ("contacts_answered", "count", r.contacts_answered, "count"),
                ("contacts_not_answered", "count", r.contacts_not_answered, "count"),
                ("response_rate", "%", r.response_rate, "share"),
                ("loss_to_follow_up", "%", r.loss_to_follow_up, "share"),
                ("patients_due", "count", r.patients_due, "count"),
                ("patients_answered", "count", r.patients_answered, "count"),
                ("patients_not_answered", "count", r.patients_not_answered, "count"),
                ("patient_response_rate", "%", r.patient_response_rate, "share"),
            ):
                rows.append(_row(data, injury, "follow_up", r.step_id, "", metric, unit, figure, rate, kind))
        rows += _channel_rows(data, injury, {r.step_id: r.response_rate for r in step_rows})
        for r in step_rows:
            if r.pain is not None:
                rows += _change_rows(data, injury, "pain_change", r.step_id, r.pain, r.response_rate)
        for r in step_rows:
            for change in r.rom:
                rows += _change_rows(data, injury, "rom_change", r.step_id, change, r.response_rate)
        hidden_steps = {r.step_id for r in step_rows if not r.contacts_answered.shown}
        for p in (p for p in data.trajectory if p.injury == injury):
            if p.step_id in hidden_steps:  # its n is (at most) the suppressed answered count
                p = replace(p, n=hidden(Reason.COMPLEMENTARY, p.n.n, data.policy))
                p = replace(p, mean=p.mean.model_copy(update={"n_shown": None, "n_display": p.n.display}))
            for metric, unit, figure, kind in (("n", "count", p.n, "count"), ("mean", p.unit, p.mean, "statistic")):
                rows.append(
                    _row(data, injury, "trajectory", p.step_id, p.measure, metric, unit, figure, p.response_rate, kind)
                )
        adverse = adverse_by.get(injury)
        if adverse is not None:
            beside = adverse.check_response_rate
            for metric, unit, figure, kind in (
                ("sessions", "count", adverse.sessions, "count"),
                ("sessions_checked", "count", adverse.sessions_checked, "count"),
                ("check_response_rate", "%", adverse.check_response_rate, "share"),
            ):
                rows.append(_row(data, injury, "adverse_events", "", "", metric, unit, figure, beside, kind))
            for event in (k for k in ADVERSE_KINDS if k in adverse.events):
                found = adverse.events[event]
                for metric, unit, figure, kind in (
                    ("count", "count", found.count, "count"),
                    ("per_100_sessions", "per 100 sessions", found.per_100_sessions, "share"),
                ):
                    rows.append(_row(data, injury, "adverse_events", "", event, metric, unit, figure, beside, kind))
        for e in (e for e in o.escalations if e.injury == injury):
            for metric, unit, figure, kind in (
                ("count", "count", e.count, "count"),
                ("per_100_sessions", "per 100 sessions", e.per_100_sessions, "rate"),
                ("ack_median_hours", "h", e.ack_median_hours, "statistic"),
            ):
                rows.append(
                    _row(data, injury, "escalations", "", e.rule_id, metric, unit, figure, e.check_response_rate, kind)
                )
        for rec in (r for r in o.recovery if r.injury == injury):
            for metric, unit, figure, kind in (
                ("episodes_due", "count", rec.episodes_due, "count"),
                ("episodes_followed", "count", rec.episodes_followed, "count"),
                ("response_rate", "%", rec.response_rate, "share"),
                ("events", "count", rec.events, "count"),
                ("median_days", "d", rec.median_days, "statistic"),
            ):
                rows.append(_row(data, injury, "recovery", "", "", metric, unit, figure, rec.response_rate, kind))
    return rows
