"""Outcome reports (issue 5): one clinic's outcome figures as HTML, CSV, JSON and PDF, and dated snapshots.

:func:`build_report` runs the outcome statistics (``needlecare.outcomes.queries``, already suppressed per the
clinic's :class:`~needlecare.safety.clinic_config.ReportPolicy`) and gathers them with the clinic, the filters, the
time of generation and the definitions into a :class:`ReportData`. Everything after that is pure rendering:

- :func:`figure_rows` flattens the report into one :class:`FigureRow` per figure (clinic, injury, section,
  time point, measure, metric, value, 95 % CI, n, the response rate beside it, the display text, and why it
  is suppressed). CSV, JSON and the HTML tables are all drawn from these rows, so they hold the same figures;
  a suppressed figure has **no** value, interval or small n anywhere (the raw numbers of
  ``needlecare.outcomes.queries`` are never read here).
- :func:`render_html`: a self-contained page (inline CSS and inline SVG charts from ``needlecare.outcomes.charts``;
  no script, font, image or stylesheet is fetched), from ``templates/reports/report.html.j2``.
- :func:`render_csv` (tidy: one row per figure) and :func:`render_json` (the same rows, nested by injury
  and section) for analysts.
- :func:`render_pdf`: the same HTML printed by headless Chromium, so the PDF shows the same figures.
- :func:`write_snapshot`: ``<out_dir>/<clinic>/<YYYY-MM-DD>/outcomes[-<injury>].<ext>``, each file written
  atomically (temporary file in the same directory, then rename). The date is the UTC date of generation.

Importing this module does not import matplotlib; :func:`render_charts` does, on first use.
"""

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from markupsafe import Markup
from pydantic import ValidationError
from sqlmodel import Session, col, select

from models import Clinic
from models.base import utcnow
from needlecare.core.catalogue import get_catalogue
from needlecare.core.rendering import environment
from needlecare.outcomes.queries import (
    ADVERSE_KINDS,
    ALL_RULES,
    MEASURE_RULES,
    PAIN,
    ChangeStats,
    Filters,
    OutcomeReport,
    TrajectoryPoint,
    compute_outcomes,
    step_rates,
    trajectory,
)
from needlecare.outcomes.suppression import Figure, Reason, hidden
from needlecare.safety.clinic_config import ReportPolicy, config_of

Format = Literal["html", "csv", "json", "pdf"]
FORMATS: tuple[Format, ...] = ("html", "csv", "json", "pdf")
CHROMIUM_ENV = "NEEDLECARE_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
PDF_TIMEOUT_SECONDS = 90.0
TEMPLATE = "reports/report.html.j2"
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
    "pain_change": "Change in usual pain from baseline",
    "rom_change": "Change in range of motion from baseline",
    "trajectory": "Mean at each time point",
    "adverse_events": "Adverse events",
    "escalations": "Escalations",
    "recovery": "Time to recovery",
}


class ReportError(ValueError):
    """A report that cannot be made as asked; the message says what to change."""


class UnknownClinic(ReportError):
    def __init__(self, clinic_id: str, known: Sequence[str]) -> None:
        self.clinic_id = clinic_id
        self.known = list(known)
        hint = (
            f"known clinics: {', '.join(known)}"
            if known
            else "no clinics are registered yet; add one with `needlecare clinic add`"
        )
        super().__init__(f"unknown clinic '{clinic_id}'; {hint}")


class UnknownInjury(ReportError):
    def __init__(self, injury: str, allowed: Sequence[str]) -> None:
        self.injury = injury
        self.allowed = list(allowed)
        super().__init__(f"unknown injury '{injury}'; choose one of: {', '.join(allowed)}")


class PdfUnavailable(ReportError):
    """No Chromium to print the PDF with."""


class PdfFailed(ReportError):
    """Chromium ran but did not produce a PDF."""


@dataclass(frozen=True)
class Definition:
    """A term of the report, how it is computed, and where the rule comes from."""

    term: str
    text: str
    source: str = ""


@dataclass(frozen=True)
class ReportData:
    """Everything a rendered report shows. Build it with :func:`build_report`."""

    clinic_id: str
    clinic_name: str
    clinic_timezone: str
    filters: Filters
    generated_at: datetime
    policy: ReportPolicy
    outcomes: OutcomeReport
    trajectory: tuple[TrajectoryPoint, ...]
    definitions: tuple[Definition, ...]
    sources: tuple[str, ...] = ()

    @property
    def injuries(self) -> list[str]:
        """Injury slugs that have any figure, sorted by slug (as ``needlecare.outcomes.queries`` sorts them)."""
        o = self.outcomes
        found = {r.injury for r in o.rows} | {r.injury for r in o.adverse} | {r.injury for r in o.recovery}
        found |= {r.injury for r in o.escalations} | {p.injury for p in self.trajectory}
        return sorted(found)

    @property
    def snapshot_date(self) -> date:
        """The UTC date of generation: the ``<YYYY-MM-DD>`` folder of the snapshot."""
        return self.generated_at.astimezone(UTC).date()

    @property
    def stem(self) -> str:
        """File name without extension: ``outcomes`` or ``outcomes-<injury>``."""
        return f"outcomes-{self.filters.injury}" if self.filters.injury else "outcomes"


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


@dataclass(frozen=True)
class ReportCharts:
    """Inline SVG charts: one trajectory chart per injury, and the responder-rate bars."""

    trajectories: dict[str, str]
    responders: str


# ----------------------------------------------------------------------------------------------- building


def known_clinics(db: Session) -> list[str]:
    """Ids of the registered clinics, sorted."""
    return list(db.exec(select(Clinic.id).order_by(col(Clinic.id))).all())


def injury_slugs() -> list[str]:
    """The injury slugs of the catalogue (the values ``--injury`` accepts)."""
    return list(get_catalogue().injuries)


def injury_name(slug: str) -> str:
    """The catalogue's display name of an injury (the slug itself when unknown)."""
    found = get_catalogue().injuries.get(slug)
    return found.name if found else slug


def _as_datetime(name: str, value: date | datetime | None, tz: ZoneInfo) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ReportError(f"{name} must be timezone-aware (or a date, read in the clinic's time zone)")
        return value
    return datetime.combine(value, time(0), tz)


def build_report(
    db: Session,
    clinic_id: str,
    *,
    policy: ReportPolicy | None = None,
    injury: str | None = None,
    practitioner_id: int | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    now: datetime | None = None,
) -> ReportData:
    """Query one clinic's outcome figures (suppressed per ``policy``) and gather what a report shows.

    ``since``/``until`` select the cohort by episode start (``since <= started_at < until``); a ``date`` means
    midnight in the clinic's time zone. ``policy`` defaults to the clinic's own ``[reporting]`` rules
    (``needlecare.safety.clinic_config``; the :class:`ReportPolicy` defaults of domain.md §5.2 when it sets none).
    Raises :class:`UnknownClinic` (listing the known ids) or :class:`UnknownInjury` (listing the slugs).
    """
    clinic = db.get(Clinic, clinic_id)
    if clinic is None:
        raise UnknownClinic(clinic_id, known_clinics(db))
    if injury is not None and injury not in get_catalogue().injuries:
        raise UnknownInjury(injury, injury_slugs())
    if policy is None:
        try:
            policy = config_of(clinic.config).reporting
        except ValidationError as exc:
            raise ReportError(f"clinic '{clinic_id}' has a config that does not load: {exc}") from None
    tz = ZoneInfo(clinic.timezone)
    start = _as_datetime("since", since, tz)
    end = _as_datetime("until", until, tz)
    if start is not None and end is not None and start >= end:
        raise ReportError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
    generated = now or utcnow()
    if generated.tzinfo is None:
        raise ReportError("now must be timezone-aware")
    kwargs: dict[str, Any] = {
        "policy": policy,
        "injury": injury,
        "practitioner_id": practitioner_id,
        "since": start,
        "until": end,
    }
    outcomes = compute_outcomes(db, clinic_id, **kwargs)
    points = trajectory(db, clinic_id, **kwargs, rates=step_rates(outcomes))
    measures = sorted({c.measure for r in outcomes.rows for c in r.rom} | {p.measure for p in points} - {PAIN})
    return ReportData(
        clinic_id=clinic.id,
        clinic_name=clinic.name,
        clinic_timezone=clinic.timezone,
        filters=outcomes.filters,
        generated_at=generated.astimezone(UTC),
        policy=policy,
        outcomes=outcomes,
        trajectory=points,
        definitions=definitions(policy, measures),
        sources=SOURCES,
    )


SOURCES: tuple[str, ...] = (
    "Farrar JT et al. Clinical importance of changes in chronic pain intensity measured on an 11-point numerical "
    "pain rating scale. Pain 2001;94(2):149-58.",
    "Powden CJ, Hoch JM, Hoch MC. Weight-bearing lunge test: systematic review of reliability and minimal "
    "detectable change. Man Ther 2015;20(4):524-32.",
    "Neto T et al. AKE and SLR reliability. J Sport Rehabil 2015;24(4).",
    "Krause DA et al. Hip internal rotation with a digital inclinometer. KSSTA 2015.",
    "Wilson EB. Probable inference, the law of succession, and statistical inference. J Am Stat Assoc "
    "1927;22:209-12 (score interval for a proportion).",
    "Kaplan EL, Meier P. Nonparametric estimation from incomplete observations. J Am Stat Assoc 1958;53:457-81.",
    "CMS Cell Size Suppression Policy (ResDAC / HHS guidance): no cell of 1-10 is shown.",
    "needlecare domain reference (shared/domain.md) §2, §5.1 and §5.2: metric definitions and the proposed "
    "small-number rules [E: design proposals awaiting clinical and governance sign-off].",
)


def definitions(policy: ReportPolicy, measures: Iterable[str] = ()) -> tuple[Definition, ...]:
    """The definitions printed at the end of every report, with this policy's thresholds filled in."""
    small = policy.small_text
    items = [
        Definition(
            "Cohort",
            "Episodes of care of this clinic (filtered by injury and by episode start date when asked). Every "
            "figure uses the contacts, answers, sessions and escalations of that cohort only.",
            "domain.md §5.1",
        ),
        Definition(
            "Due, answered, response rate, lost to follow-up",
            "Due: follow-up contacts whose answer window opened (sent, answered or expired; planned and skipped "
            "ones are left out). Response rate = answered / due, with a Wilson 95 % interval; lost to follow-up "
            "= 100 % minus the response rate. Safety checks count one contact per session, outcome surveys one "
            "per episode. Each row's response rate stands beside its figures: figures rest only on those who "
            "answered.",
            "domain.md §5.1",
        ),
        Definition(
            "Change from baseline",
            "Follow-up value minus the episode's baseline, for patients with both (paired). Pain: usual pain on "
            "the 0-10 NPRS, negative = better. Mean with a 95 % t-interval, standard deviation, median and "
            "interquartile range (Q1-Q3, linear interpolation). n = paired answers.",
            "domain.md §5.1",
        ),
        Definition(
            "Pain responder",
            "Usual pain dropped by at least 2 points and by at least 30 % of baseline. Responder rate = "
            "responders / paired answers, with a Wilson 95 % interval.",
            "Farrar 2001; domain.md §2 (proposed rule [E])",
        ),
    ]
    rules = []
    for measure in sorted(set(measures)):
        rule = MEASURE_RULES.get(measure)
        catalogue_measure = get_catalogue().measures.get(measure)
        name = catalogue_measure.name if catalogue_measure else measure
        if rule is None or rule.threshold is None or rule.direction is None:
            source = rule.source if rule else "no rule on record"
            rules.append(f"{name}: no responder threshold ({source}).")
        else:
            better = "higher" if rule.direction == "higher_better" else "lower"
            rules.append(
                f"{name}: {better} is better; responder = improvement of at least {rule.threshold:g} "
                f"({rule.kind}; {rule.source})."
            )
    if rules:
        items.append(
            Definition(
                "Range-of-motion change and responders",
                "Follow-up minus baseline in the same measure and unit. " + " ".join(rules),
                "domain.md §1.2",
            )
        )
    items += [
        Definition(
            "Mean at each time point",
            "Mean of the value itself (not the change) among everyone who answered at that time point; the "
            "baseline point uses every cohort episode with a baseline. Points can rest on different patients: "
            "judge change by the paired figures.",
        ),
        Definition(
            "Adverse events per 100 sessions",
            "Share of cohort sessions with an answered 24 h or 72 h safety check that report the event in any "
            "answer about that session: soreness past 72 h (soreness of 4 or more at 72 h, or any at 7 days), "
            "bruising, or a ticked red flag. Wilson 95 % interval. The safety-check response rate stands beside.",
            "domain.md §5.1; rule R11 [E]",
        ),
        Definition(
            "Escalations per 100 sessions",
            "Escalation cases (all rules) and rules fired, per 100 sessions with an answered safety check. Time "
            "to acknowledgement: median hours from opening to acknowledgement.",
            "domain.md §5.1, §6",
        ),
        Definition(
            "Time to recovery",
            "Kaplan-Meier median days from episode start to the first answer showing improvement (the pain "
            "responder rule, or a global rating of change of +4 or more on an outcome survey); episodes without "
            f"it are censored at their last answer. Shown only with at least {policy.km_min_patients} patients "
            f"and {policy.km_min_events} events.",
            "Kaplan & Meier 1958; domain.md §5.1 [E]",
        ),
        Definition(
            "Small numbers",
            f"Counts from 1 to {policy.min_count_shown - 1} are shown as '{small}' (0 is shown); a second cell is "
            "hidden ('suppressed') where a total would give a hidden count back, and so is any percentage built "
            f"on a hidden count. Means, medians and responder rates need at least {policy.min_paired} paired "
            "answers, otherwise they read 'insufficient data'. A hidden figure is left empty in the CSV and JSON "
            "files too.",
            "CMS cell-size suppression policy; domain.md §5.2 (proposed rule [E])",
        ),
    ]
    return tuple(items)


# ------------------------------------------------------------------------------------------- figure rows


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


# ------------------------------------------------------------------------------------------------ charts


def responder_bars(data: ReportData) -> list[Any]:
    """The bars of the overview chart: pain responder rate per injury at each outcome survey (episode scope)."""
    from needlecare.outcomes.charts import ResponderBar, step_label

    bars = []
    for r in data.outcomes.rows:
        if r.scope == "episode" and r.pain is not None:
            bars.append(ResponderBar(f"{injury_name(r.injury)} · {step_label(r.step_id)}", r.pain.responder_rate))
    return bars


def render_charts(data: ReportData) -> ReportCharts:
    """Render the report's SVG charts (imports matplotlib on first use).

    An injury gets a trajectory chart only when at least one of its means can be shown; otherwise its tables
    already say "insufficient data" for every point and an empty chart would add nothing.
    """
    from needlecare.outcomes.charts import responder_bars_svg, trajectory_svg

    trajectories = {
        injury: trajectory_svg(data.trajectory, injury, injury_name=injury_name(injury))
        for injury in data.injuries
        if any(p.injury == injury and p.mean.shown for p in data.trajectory)
    }
    return ReportCharts(trajectories=trajectories, responders=responder_bars_svg(responder_bars(data)))


# -------------------------------------------------------------------------------------------------- HTML


@dataclass(frozen=True)
class Cell:
    """A figure as the HTML table prints it."""

    key: str
    display: str
    ci: str
    n: str
    suppressed: bool
    reason: str


def _number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _cell(row: FigureRow, decimals: int) -> Cell:
    ci = ""
    if row.ci_low is not None and row.ci_high is not None:
        ci = f"95 % CI {_number(row.ci_low, decimals)} to {_number(row.ci_high, decimals)}"
    n = "" if row.kind == "count" else f"n = {row.n_display}"
    reason = (row.suppressed_reason or "").replace("_", " ")
    return Cell(row.key, row.display, ci, n, row.suppressed_reason is not None, reason)


def _beside(figure: Figure | None) -> Cell | None:
    """A response rate printed beside other figures (no data-key: it is a figure of its own row elsewhere)."""
    if figure is None:
        return None
    reason = str(figure.suppressed_reason or "").replace("_", " ")
    return Cell("", figure.display, "", f"n = {figure.n_display}", figure.suppressed_reason is not None, reason)


class _Lookup:
    """Cells of one injury, looked up by (section, step, measure, metric)."""

    def __init__(self, rows: Sequence[FigureRow], decimals: int) -> None:
        self._cells = {(r.section, r.step, r.measure, r.metric): _cell(r, decimals) for r in rows}

    def __call__(self, section: str, step: str, measure: str, metric: str) -> Cell | None:
        return self._cells.get((section, step, measure, metric))


def _direction_text(change: ChangeStats) -> str:
    if change.measure == PAIN:
        return "negative = less pain (better)"
    if change.direction == "higher_better":
        return "positive = better"
    if change.direction == "lower_better":
        return "negative = better"
    return "direction not settled for this measure"


def _injury_view(data: ReportData, injury: str, rows: Sequence[FigureRow], charts: ReportCharts) -> dict[str, Any]:
    from needlecare.outcomes.charts import measure_label, step_label

    o = data.outcomes
    cell = _Lookup(rows, data.policy.decimals)
    step_rows = [r for r in o.rows if r.injury == injury]
    rate_of = {r.step_id: cell("follow_up", r.step_id, "", "response_rate") for r in step_rows}
    follow_up = [
        {
            "label": step_label(r.step_id),
            "scope": "per session" if r.scope == "session" else "per episode",
            "cells": [
                cell("follow_up", r.step_id, "", m)
                for m in (
                    "contacts_due",
                    "contacts_answered",
                    "contacts_not_answered",
                    "response_rate",
                    "loss_to_follow_up",
                    "patients_due",
                    "patients_answered",
                    "patients_not_answered",
                    "patient_response_rate",
                )
            ],
        }
        for r in step_rows
    ]

    def change_rows(section: str, measure: str) -> list[dict[str, Any]]:
        out = []
        for r in step_rows:
            if cell(section, r.step_id, measure, "n_paired") is None:
                continue
            out.append(
                {
                    "label": step_label(r.step_id),
                    "rate": rate_of[r.step_id],
                    "cells": [
                        cell(section, r.step_id, measure, m)
                        for m in ("n_paired", "patients", "mean_change", "median_change", "q1", "q3", "sd")
                    ],
                    "responders": [cell(section, r.step_id, measure, m) for m in ("responders", "responder_rate")],
                }
            )
        return out

    change_tables = []
    pain = next((r.pain for r in step_rows if r.pain is not None), None)
    if pain is not None:
        change_tables.append(
            {
                "title": f"{SECTION_TITLES['pain_change']} (NPRS 0-10; {_direction_text(pain)})",
                "responder_rule": "drop of at least 2 points and 30 %",
                "rows": change_rows("pain_change", PAIN),
            }
        )
    rom_measures: dict[str, ChangeStats] = {}
    for r in step_rows:
        for change in r.rom:
            rom_measures.setdefault(change.measure, change)
    for measure, change in sorted(rom_measures.items()):
        rule = (
            f"improvement of at least {change.threshold:g} {change.unit} ({change.threshold_kind})"
            if change.threshold is not None
            else "no responder threshold on record"
        )
        change_tables.append(
            {
                "title": f"Change in {measure_label(measure, change.unit)} from baseline ({_direction_text(change)})",
                "responder_rule": rule,
                "rows": change_rows("rom_change", measure),
            }
        )
    trajectory_rows = [
        {
            "label": step_label(p.step_id),
            "measure": measure_label(p.measure, p.unit),
            "n": cell("trajectory", p.step_id, p.measure, "n"),
            "mean": cell("trajectory", p.step_id, p.measure, "mean"),
            "rate": rate_of.get(p.step_id),
        }
        for p in data.trajectory
        if p.injury == injury
    ]
    adverse = next((a for a in o.adverse if a.injury == injury), None)
    adverse_view = None
    if adverse is not None:
        adverse_view = {
            "summary": [
                cell("adverse_events", "", "", m) for m in ("sessions", "sessions_checked", "check_response_rate")
            ],
            "rows": [
                {
                    "label": ADVERSE_LABELS.get(kind, kind),
                    "count": cell("adverse_events", "", kind, "count"),
                    "share": cell("adverse_events", "", kind, "per_100_sessions"),
                }
                for kind in ADVERSE_KINDS
                if kind in adverse.events
            ],
        }
    escalations = [
        {
            "label": "All cases" if e.rule_id == ALL_RULES else f"Rule {e.rule_id}",
            "cells": [cell("escalations", "", e.rule_id, m) for m in ("count", "per_100_sessions", "ack_median_hours")],
            "rate": _beside(e.check_response_rate),
        }
        for e in o.escalations
        if e.injury == injury
    ]
    recovery = next((r for r in o.recovery if r.injury == injury), None)
    recovery_cells = (
        [
            cell("recovery", "", "", m)
            for m in ("episodes_due", "episodes_followed", "response_rate", "events", "median_days")
        ]
        if recovery is not None
        else None
    )
    svg = charts.trajectories.get(injury)
    return {
        "slug": injury,
        "name": injury_name(injury),
        "chart": Markup(svg) if svg else None,
        "follow_up": follow_up,
        "change_tables": change_tables,
        "trajectory": trajectory_rows,
        "adverse": adverse_view,
        "escalations": escalations,
        "recovery": recovery_cells,
    }


def _period_text(filters: Filters, tz: str) -> str:
    zone = ZoneInfo(tz)

    def local(value: datetime) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    if filters.since and filters.until:
        return f"episodes started from {local(filters.since)} to before {local(filters.until)} ({tz})"
    if filters.since:
        return f"episodes started from {local(filters.since)} ({tz})"
    if filters.until:
        return f"episodes started before {local(filters.until)} ({tz})"
    return "all episodes"


def html_context(data: ReportData, charts: ReportCharts) -> dict[str, Any]:
    """What the template receives (also handy for the dashboard's own pages)."""
    rows = figure_rows(data)
    by_injury: dict[str, list[FigureRow]] = {}
    for row in rows:
        by_injury.setdefault(row.injury, []).append(row)
    f = data.filters
    return {
        "clinic_id": data.clinic_id,
        "clinic_name": data.clinic_name,
        "generated_at": data.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        "injury_filter": injury_name(f.injury) if f.injury else "all injuries",
        "period": _period_text(f, data.clinic_timezone),
        "practitioner": f.practitioner_id,
        "policy": data.policy,
        "small_text": data.policy.small_text,
        "responders_chart": Markup(charts.responders),
        "injuries": [_injury_view(data, injury, by_injury.get(injury, []), charts) for injury in data.injuries],
        "definitions": data.definitions,
        "sources": data.sources,
    }


def render_html(data: ReportData, charts: ReportCharts | None = None) -> str:
    """A self-contained HTML page: inline CSS and SVG, no external resource (templates/reports/report.html.j2)."""
    charts = charts or render_charts(data)
    return environment().get_template(TEMPLATE).render(html_context(data, charts))


# ------------------------------------------------------------------------------------------- CSV and JSON


def render_csv(data: ReportData) -> str:
    """Tidy CSV: a header of :data:`CSV_COLUMNS`, then one row per figure. Suppressed values are empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in figure_rows(data):
        writer.writerow(row.csv_record())
    return buffer.getvalue()


def render_json(data: ReportData) -> str:
    """The same figures as the CSV, nested: clinic → injuries → sections → figures; plus the context."""
    rows = figure_rows(data)
    injuries: list[dict[str, Any]] = []
    for injury in data.injuries:
        sections: list[dict[str, Any]] = []
        for section, title in SECTION_TITLES.items():
            figures = [r.json_record() for r in rows if r.injury == injury and r.section == section]
            if figures:
                sections.append({"section": section, "title": title, "figures": figures})
        injuries.append({"injury": injury, "name": injury_name(injury), "sections": sections})
    f = data.filters
    document = {
        "report": "needlecare outcome report",
        "format_version": 1,
        "clinic": {"id": data.clinic_id, "name": data.clinic_name, "timezone": data.clinic_timezone},
        "generated_at": data.generated_at.isoformat(),
        "filters": {
            "injury": f.injury,
            "practitioner_id": f.practitioner_id,
            "since": f.since.isoformat() if f.since else None,
            "until": f.until.isoformat() if f.until else None,
        },
        "policy": data.policy.model_dump(),
        "units": "Shares and rates are per 100; value, ci_low, ci_high and response_rate are null when suppressed.",
        "injuries": injuries,
        "definitions": [{"term": d.term, "text": d.text, "source": d.source} for d in data.definitions],
        "sources": list(data.sources),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------------- PDF


def find_chromium() -> str:
    """The Chromium binary: ``$NEEDLECARE_CHROMIUM``, else chromium / chromium-browser / google-chrome on PATH."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise PdfUnavailable(f"{CHROMIUM_ENV}={configured} is not an executable; point it at a Chromium binary")
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise PdfUnavailable(
        "PDF reports need Chromium (headless) and none was found on PATH (looked for "
        f"{', '.join(CHROMIUM_NAMES)}): install it (Debian/Ubuntu: `apt-get install chromium`) or set "
        f"{CHROMIUM_ENV} to the browser binary; HTML, CSV and JSON work without it"
    )


def chromium_available() -> bool:
    """True when :func:`find_chromium` finds a browser."""
    try:
        find_chromium()
    except PdfUnavailable:
        return False
    return True


def render_pdf(data: ReportData, *, html: str | None = None, timeout: float = PDF_TIMEOUT_SECONDS) -> bytes:
    """The HTML report printed to PDF by headless Chromium (network disabled; killed after ``timeout`` s)."""
    binary = find_chromium()
    page = html if html is not None else render_html(data)
    with tempfile.TemporaryDirectory(prefix="needlecare-pdf-") as tmp:
        work = Path(tmp)
        source = work / "report.html"
        target = work / "report.pdf"
        source.write_text(page, encoding="utf-8")
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={work / 'profile'}",
            f"--print-to-pdf={target}",
            "--no-pdf-header-footer",
            source.as_uri(),
        ]
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise PdfFailed(f"Chromium did not finish printing the PDF within {timeout:g} s") from None
        finally:
            _kill_group(process)  # Chromium's helpers, if any outlived the browser
        if process.returncode != 0 or not target.exists():
            tail = stderr.decode("utf-8", "replace").strip()[-600:]
            raise PdfFailed(f"Chromium could not print the PDF (exit {process.returncode}): {tail}")
        content = target.read_bytes()
    if not content.startswith(b"%PDF"):
        raise PdfFailed("Chromium wrote a file that is not a PDF")
    return content


def _kill_group(process: "subprocess.Popen[bytes]") -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.returncode is None:
        process.wait()


# ------------------------------------------------------------------------------------------------ writing


def check_formats(formats: Iterable[str]) -> list[Format]:
    """Formats in order, duplicates dropped; raises :class:`ReportError` naming the allowed ones."""
    chosen: list[Format] = []
    for fmt in formats:
        name = fmt.strip().lower()
        if name not in FORMATS:
            raise ReportError(f"unknown format '{fmt}'; choose from: {', '.join(FORMATS)}")
        if name not in chosen:
            chosen.append(cast(Format, name))
    if not chosen:
        raise ReportError(f"no format given; choose from: {', '.join(FORMATS)}")
    return chosen


class Renderer:
    """Renders one report in several formats, sharing the charts and the HTML between them."""

    def __init__(self, data: ReportData, charts: ReportCharts | None = None) -> None:
        self.data = data
        self._charts = charts
        self._html: str | None = None

    @property
    def charts(self) -> ReportCharts:
        """The charts (rendered on first use)."""
        if self._charts is None:
            self._charts = render_charts(self.data)
        return self._charts

    def render_charts(self) -> ReportCharts:
        """Render the charts now (they are otherwise rendered with the first HTML or PDF)."""
        return self.charts

    def html(self) -> str:
        """The HTML page (rendered once)."""
        if self._html is None:
            self._html = render_html(self.data, self.charts)
        return self._html

    def render(self, fmt: Format) -> bytes:
        """The report in one format, as bytes (UTF-8 for the text formats)."""
        if fmt == "html":
            return self.html().encode("utf-8")
        if fmt == "csv":
            return render_csv(self.data).encode("utf-8")
        if fmt == "json":
            return render_json(self.data).encode("utf-8")
        if fmt == "pdf":
            return render_pdf(self.data, html=self.html())
        raise ReportError(f"unknown format '{fmt}'")


def write_atomic(path: Path, content: bytes) -> Path:
    """Write ``content`` to ``path`` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def snapshot_path(data: ReportData, out_dir: Path, fmt: Format) -> Path:
    """``<out_dir>/<clinic>/<YYYY-MM-DD>/outcomes[-<injury>].<fmt>`` (the UTC date of generation)."""
    return out_dir / data.clinic_id / data.snapshot_date.isoformat() / f"{data.stem}.{fmt}"


def write_snapshot(
    data: ReportData,
    out_dir: Path,
    formats: Iterable[str],
    *,
    charts: ReportCharts | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the dated snapshot in each format (atomically); returns the paths, in the order of ``formats``.

    ``progress`` is called with the format's name after each file. A failing format (e.g. no Chromium for
    the PDF) raises after the formats before it were written; each written file is complete.
    """
    renderer = Renderer(data, charts)
    written: list[Path] = []
    for fmt in check_formats(formats):
        written.append(write_atomic(snapshot_path(data, out_dir, fmt), renderer.render(fmt)))
        if progress is not None:
            progress(fmt)
    return written
