"""One clinic's outcome report as a self-contained HTML page, with its inline SVG charts.

:func:`render_html` fills ``templates/reports/report.html.j2`` from the report's figure rows
(``needlecare.outcomes.report_rows``): inline CSS and inline SVG charts from ``needlecare.outcomes.charts``; no
script, font, image or stylesheet is fetched. Importing this module does not import matplotlib;
:func:`render_charts` does, on first use.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from needlecare.core.rendering import environment
from needlecare.outcomes.channels import GROUPS
from needlecare.outcomes.definitions import ADVERSE_KINDS, ALL_RULES, PAIN
from needlecare.outcomes.filters import Filters
from needlecare.outcomes.headline import empty_chart_text, headline_text
from needlecare.outcomes.report_rows import ADVERSE_LABELS, SECTION_TITLES, FigureRow, figure_rows
from needlecare.outcomes.reports import ReportData, injury_name
from needlecare.outcomes.results import ChangeStats
from needlecare.outcomes.suppression import Figure, Reason, hidden, shortfall_text
from needlecare.safety.clinic_config import ReportPolicy

TEMPLATE = "reports/report.html.j2"


@dataclass(frozen=True)
class ReportCharts:
    """Inline SVG charts: one trajectory chart per injury, and the responder-rate bars. A chart that would have no
    bar or point is not drawn: ``responders`` is then None and a sentence in ``responders_note`` (or
    ``trajectory_notes[injury]``) says why."""

    trajectories: dict[str, str]
    responders: str | None
    responders_note: str = ""
    trajectory_notes: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ charts


def responder_bars(data: ReportData) -> list[Any]:
    """The bars of the overview chart: pain responder rate per injury at each outcome survey (episode scope)."""
    from needlecare.outcomes.charts import ResponderBar, step_label

    bars = []
    for r in data.outcomes.rows:
        if r.scope == "episode" and r.pain is not None:
            bars.append(ResponderBar(f"{injury_name(r.injury)} · {step_label(r.step_id)}", r.pain.responder_rate))
    return bars


def responders_note(data: ReportData) -> str:
    """The sentence that stands in for the responder chart when no bar can be drawn."""
    groups = [(r.pain.n, r.pain.raw.n) for r in data.outcomes.rows if r.scope == "episode" and r.pain is not None]
    return empty_chart_text(groups, data.policy, "paired answers", data.policy.min_paired)


def trajectory_note(data: ReportData, injury: str) -> str:
    """The sentence that stands in for an injury's trajectory chart when no mean can be plotted (an n that would
    give back a hidden answered count is not printed)."""
    hidden_steps = {r.step_id for r in data.outcomes.rows if r.injury == injury and not r.contacts_answered.shown}
    groups = [
        (hidden(Reason.COMPLEMENTARY, p.n.n, data.policy) if p.step_id in hidden_steps else p.n, p.raw.n)
        for p in data.trajectory
        if p.injury == injury
    ]
    return empty_chart_text(groups, data.policy, "answers", data.policy.min_paired)


def render_charts(data: ReportData) -> ReportCharts:
    """Render the report's SVG charts (imports matplotlib on first use).

    No chart is drawn without a bar or point: an injury gets a trajectory chart only when at least one of its
    means can be shown, and the responder chart only when at least one rate can; otherwise a sentence says how
    many answers the largest group has of how many it needs.
    """
    from needlecare.outcomes.charts import responder_bars_svg, trajectory_svg

    trajectories = {
        injury: trajectory_svg(data.trajectory, injury, injury_name=injury_name(injury))
        for injury in data.injuries
        if any(p.injury == injury and p.mean.shown for p in data.trajectory)
    }
    notes = {injury: trajectory_note(data, injury) for injury in data.injuries if injury not in trajectories}
    bars = responder_bars(data)
    if any(bar.rate.shown for bar in bars):
        return ReportCharts(trajectories=trajectories, responders=responder_bars_svg(bars), trajectory_notes=notes)
    return ReportCharts(
        trajectories=trajectories, responders=None, responders_note=responders_note(data), trajectory_notes=notes
    )


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
    need: str = ""  # below the minimum n: "14 of 20 paired answers, 6 more needed"


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


NEED_METRICS = {
    ("pain_change", "mean_change"): ("n_paired", "paired answers"),
    ("pain_change", "responder_rate"): ("n_paired", "paired answers"),
    ("rom_change", "mean_change"): ("n_paired", "paired answers"),
    ("rom_change", "responder_rate"): ("n_paired", "paired answers"),
    ("trajectory", "mean"): ("n", "answers"),
}
"""Cells below the minimum n that say how many answers they have of how many they need: (count metric, noun)."""


class _Lookup:
    """Cells of one injury, looked up by (section, step, measure, metric)."""

    def __init__(self, rows: Sequence[FigureRow], policy: ReportPolicy) -> None:
        by_key = {(r.section, r.step, r.measure, r.metric): r for r in rows}
        self._cells = {key: _cell(r, policy.decimals) for key, r in by_key.items()}
        for key, r in by_key.items():
            need = NEED_METRICS.get((key[0], key[3]))
            count = by_key.get((key[0], key[1], key[2], need[0])) if need else None
            if need is None or count is None or r.suppressed_reason != Reason.INSUFFICIENT.value:
                continue
            have = count.value if count.suppressed_reason is None and isinstance(count.value, int) else None
            small = count.suppressed_reason == Reason.SMALL_COUNT.value
            text = shortfall_text(have, small, policy.min_paired, policy, need[1])
            self._cells[key] = replace(self._cells[key], need=text)

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
    cell = _Lookup(rows, data.policy)
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
    channels = [
        {
            "label": step_label(step.step_id),
            "rate": rate_of.get(step.step_id),
            "answered": [cell("channels", step.step_id, "", m) for m in ("answered_online", "answered_sms")],
            "groups": [
                {
                    "label": GROUPS.get(g.group, g.group),
                    "cells": [
                        cell("channels", step.step_id, g.group, m) for m in ("contacts", "answered", "response_rate")
                    ],
                }
                for g in step.groups
            ],
        }
        for step in data.channels
        if step.injury == injury
    ]
    svg = charts.trajectories.get(injury)
    return {
        "slug": injury,
        "name": injury_name(injury),
        "chart": Markup(svg) if svg else None,
        "chart_note": charts.trajectory_notes.get(injury, ""),
        "follow_up": follow_up,
        "channels": channels,
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
        "responders_chart": Markup(charts.responders) if charts.responders else None,
        "responders_note": charts.responders_note,
        "headline": headline_text(data.outcomes.headline, data.policy),
        "injuries": [_injury_view(data, injury, by_injury.get(injury, []), charts) for injury in data.injuries],
        "definitions": data.definitions,
        "sources": data.sources,
    }


def render_html(data: ReportData, charts: ReportCharts | None = None) -> str:
    """A self-contained HTML page: inline CSS and SVG, no external resource (templates/reports/report.html.j2)."""
    charts = charts or render_charts(data)
    return environment().get_template(TEMPLATE).render(html_context(data, charts))
