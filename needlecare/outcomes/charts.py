"""Outcome charts as self-contained SVG strings (matplotlib, rendered offline; no CDN, no pyplot).

Two charts for the outcome report (domain.md §5.1):

- :func:`trajectory_svg`: for one injury, the mean of pain (NPRS 0-10) and of each ROM measure at every time
  point of ``needlecare.outcomes.trajectory.trajectory`` (baseline first), with the 95 % t-interval as error bars and
  each point's n beside it. One panel per measure, sharing the time axis. Points whose mean is suppressed
  (too few answers, domain.md §5.2) are left out of the plot and named in a note under it, with their display
  text ("insufficient data", "< 11") and never their value.
- :func:`responder_bars_svg`: responder rates (per 100) as horizontal bars with the Wilson 95 % CI, one bar
  per row; a suppressed rate gets no bar, only its display text. With no shown rate at all it refuses
  (:class:`EmptyChart`): the caller prints a sentence instead of a chart without bars.

The charts are accessible and deterministic:

- the ``<svg>`` root carries ``role="img"``, a ``<title>`` and a ``<desc>`` that reads out every plotted
  figure (value, interval and n), and ``aria-labelledby`` pointing at both;
- text stays text (``svg.fonttype = "none"``), so it is readable by screen readers, searchable and
  selectable, and Chromium prints it as text into the PDF;
- ``svg.hashsalt`` is fixed and the ``Date`` metadata is dropped (matplotlib's RDF metadata block is
  removed entirely), so the same input gives byte-identical output; element ids are prefixed with a
  caller-chosen ``chart_id`` so several charts can be inlined in one HTML page without id clashes.

matplotlib is used through :class:`matplotlib.figure.Figure` only; the Agg backend is selected explicitly
so nothing ever tries to open a window, and per-render settings go through ``rc_context`` (restored after).
"""

import functools
import io
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec
from xml.sax.saxutils import escape

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure

from needlecare.outcomes.results import TrajectoryPoint
from needlecare.outcomes.suppression import Figure

HASH_SALT = "needlecare-charts"
WIDTH_IN = 7.2
PANEL_HEIGHT_IN = 2.1
ROW_HEIGHT_IN = 0.5
NOTE_LINE_IN = 0.17
MARGIN_IN = 0.1
COLOURS = ("#1f5f8b", "#b35806", "#1b7837", "#762a83", "#8c510a")
"""Colour-blind-safe, dark enough for 4.5:1 contrast on white (one colour per panel)."""
MUTED = "#555555"
FONT_SIZE = 9.0

_RC: dict[Any, Any] = {  # matplotlib types its keys as a Literal of every rcParam
    "svg.hashsalt": HASH_SALT,
    "svg.fonttype": "none",
    "font.size": FONT_SIZE,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "axes.titlesize": FONT_SIZE + 1,
    "axes.labelsize": FONT_SIZE,
    "xtick.labelsize": FONT_SIZE,
    "ytick.labelsize": FONT_SIZE,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlelocation": "left",
}

_LOCK = threading.RLock()
P = ParamSpec("P")

PAIN_MEASURE = "nprs_usual"
_STEP = re.compile(r"^(?:check|outcome)_(\d+)(h|d|wk)$")
_UNITS = {"h": "h", "d": "d", "wk": "wk"}


class EmptyChart(ValueError):
    """A chart asked for with nothing to draw."""


@dataclass(frozen=True)
class ResponderBar:
    """One bar of :func:`responder_bars_svg`: a label and a responder-rate figure (per 100, Wilson CI)."""

    label: str
    rate: Figure


def step_label(step_id: str) -> str:
    """Short time-point label: ``baseline`` -> "Baseline", ``check_24h`` -> "24 h", ``outcome_6wk`` -> "6 wk"."""
    if step_id == "baseline":
        return "Baseline"
    match = _STEP.match(step_id)
    if match:
        return f"{match.group(1)} {_UNITS[match.group(2)]}"
    return step_id.replace("_", " ")


def measure_label(measure: str, unit: str) -> str:
    """Axis label for a measure: pain gets its plain name, ROM measures the catalogue's name and unit."""
    if measure == PAIN_MEASURE:
        return "Pain, usual (NPRS 0-10)"
    from needlecare.core.catalogue import get_catalogue

    found = get_catalogue().measures.get(measure)
    name = found.name if found else measure.replace("_", " ")
    return f"{name} ({unit})" if unit else name


def _fmt(value: float, decimals: int = 1) -> str:
    return f"{value:.{decimals}f}".replace("-", "\u2212")


def _interval_text(figure: Figure, decimals: int = 1) -> str:
    if figure.low is None or figure.high is None:
        return ""
    return f", 95 % CI {_fmt(figure.low, decimals)} to {_fmt(figure.high, decimals)}"


def _rendering(function: Callable[P, str]) -> Callable[P, str]:
    """Run a chart function under the chart rcParams (restored afterwards), one chart at a time.

    matplotlib's rcParams are process-global and matplotlib is not thread-safe, so a lock keeps two threads
    (e.g. web requests) from interleaving their settings.
    """

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> str:
        with _LOCK, matplotlib.rc_context(_RC):
            return function(*args, **kwargs)

    return wrapper


def _svg(fig: MplFigure, chart_id: str, title: str, desc: str) -> str:
    """Serialise ``fig`` as inline-ready SVG: no XML prolog or metadata, ids prefixed, title and desc added."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{chart_id}-\1"', svg)
    svg = re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{chart_id}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{chart_id}-\1)", svg)
    head_end = svg.index(">") + 1
    root = svg[:head_end].replace(
        "<svg ",
        f'<svg role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" class="chart" ',
        1,
    )
    accessible = (
        f'\n <title id="{chart_id}-title">{escape(title)}</title>\n <desc id="{chart_id}-desc">{escape(desc)}</desc>'
    )
    return root + accessible + svg[head_end:].rstrip() + "\n"


def _new_figure(width: float, height: float) -> MplFigure:
    """A Figure with no layout engine: margins are set in inches by the caller (constrained layout would
    draw the figure twice and doubles the render time)."""
    return MplFigure(figsize=(width, height))


def _note(fig: MplFigure, lines: Sequence[str], height_in: float) -> None:
    """Note lines at the bottom left of the figure, inside the space reserved for them."""
    if lines:
        fig.text(
            MARGIN_IN / fig.get_figwidth(),
            (NOTE_LINE_IN * len(lines) + 0.05) / height_in,
            "\n".join(lines),
            fontsize=FONT_SIZE - 0.5,
            color=MUTED,
            va="top",
            ha="left",
            linespacing=1.3,
        )


@_rendering
def trajectory_svg(points: Sequence[TrajectoryPoint], injury: str, *, injury_name: str | None = None) -> str:
    """Mean pain and mean ROM value per time point for ``injury``, with 95 % CI error bars; SVG text.

    ``points`` come from ``needlecare.outcomes.trajectory.trajectory`` (in its order); other injuries' points are
    ignored.
    The points are absolute means, not paired changes: each time point can rest on different patients.
    One panel per measure that has a plotted point (pain first), sharing the time axis; every point is
    labelled with its n; suppressed points are listed in a note under the chart with their display text.
    """
    name = injury_name or injury.replace("_", " ")
    mine = [p for p in points if p.injury == injury]
    steps: list[str] = []
    for p in mine:
        if p.step_id not in steps:
            steps.append(p.step_id)
    measures: list[tuple[str, str]] = []
    for p in mine:
        if (p.measure, p.unit) not in measures:
            measures.append((p.measure, p.unit))
    measures.sort(key=lambda m: (m[0] != PAIN_MEASURE, m[0]))
    title = f"{name}: mean pain and range of motion by time point"
    desc_parts: list[str] = []
    omitted: list[str] = []
    panels: list[tuple[str, str, list[tuple[int, Figure, str]]]] = []
    for measure, unit in measures:
        label = measure_label(measure, unit)
        plotted: list[tuple[int, Figure, str]] = []
        texts: list[str] = []
        for p in mine:
            if (p.measure, p.unit) != (measure, unit):
                continue
            where = step_label(p.step_id)
            if p.mean.shown and p.mean.value is not None:
                plotted.append((steps.index(p.step_id), p.mean, p.n.n_display))
                texts.append(f"{where} {_fmt(p.mean.value)}{_interval_text(p.mean)} (n = {p.n.n_display})")
            else:
                omitted.append(f"{label} at {where}: {p.mean.display} (n = {p.n.n_display})")
        if texts:
            desc_parts.append(f"{label}: " + "; ".join(texts) + ".")
        if plotted:
            panels.append((measure, label, plotted))
    note = [f"Not plotted ({len(omitted)}): too few answers or suppressed", *omitted] if omitted else []
    note_in = NOTE_LINE_IN * len(note) + (0.1 if note else 0.0)
    if not panels:
        height = 0.6 + note_in
        fig = _new_figure(WIDTH_IN, height)
        fig.text(MARGIN_IN / WIDTH_IN, 1 - 0.3 / height, f"{name}: no time point has enough answers to plot.")
        _note(fig, note, height)
        desc = "No mean is plotted: every time point has too few answers. " + "; ".join(omitted) + "."
        return _svg(fig, f"traj-{injury}", title, desc)
    top_in, gap_in, bottom_in = 0.3, 0.5, 0.55
    height = top_in + PANEL_HEIGHT_IN * len(panels) + gap_in * (len(panels) - 1) + bottom_in + note_in
    fig = _new_figure(WIDTH_IN, height)
    fig.subplots_adjust(
        left=0.8 / WIDTH_IN,
        right=1 - 0.3 / WIDTH_IN,
        top=1 - top_in / height,
        bottom=(bottom_in + note_in) / height,
        hspace=gap_in / PANEL_HEIGHT_IN,
    )
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for index, (ax, (measure, label, plotted)) in enumerate(zip(axes, panels, strict=True)):
        _trajectory_panel(ax, measure, label, plotted, COLOURS[index % len(COLOURS)])
    last: Axes = axes[-1]
    last.set_xticks(range(len(steps)), [step_label(s) for s in steps])
    last.set_xlim(-0.4, len(steps) - 0.6)
    last.set_xlabel("Time point (error bars: 95 % CI; n = answers)")
    _note(fig, note, height)
    desc = " ".join(desc_parts)
    if omitted:
        desc += " Not plotted: " + "; ".join(omitted) + "."
    return _svg(fig, f"traj-{injury}", title, desc)


def _trajectory_panel(ax: Axes, measure: str, label: str, plotted: list[tuple[int, Figure, str]], colour: str) -> None:
    xs = [x for x, _, _ in plotted]
    ys = [f.value if f.value is not None else 0.0 for _, f, _ in plotted]
    lower = [0.0 if f.low is None else max(y - f.low, 0.0) for (_, f, _), y in zip(plotted, ys, strict=True)]
    upper = [0.0 if f.high is None else max(f.high - y, 0.0) for (_, f, _), y in zip(plotted, ys, strict=True)]
    ax.errorbar(xs, ys, yerr=[lower, upper], marker="o", color=colour, capsize=4, linewidth=1.6, markersize=5)
    for x, y, (_, _, n_text) in zip(xs, ys, plotted, strict=True):
        ax.annotate(f"n = {n_text}", (x, y), xytext=(7, 4), textcoords="offset points", fontsize=FONT_SIZE - 1)
    ax.set_title(label)
    ax.set_ylabel("mean")
    if measure == PAIN_MEASURE:
        ax.set_ylim(0, 10)
        ax.set_yticks([0, 2, 4, 6, 8, 10])
    else:
        low = min(f.low if f.low is not None else y for (_, f, _), y in zip(plotted, ys, strict=True))
        high = max(f.high if f.high is not None else y for (_, f, _), y in zip(plotted, ys, strict=True))
        pad = max((high - low) * 0.15, 0.5)
        ax.set_ylim(low - pad, high + pad)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


@_rendering
def responder_bars_svg(rows: Sequence[ResponderBar], *, title: str | None = None, chart_id: str = "responders") -> str:
    """Responder rate per row (per 100) with Wilson 95 % CI error bars; a suppressed rate shows its text only.

    Raises :class:`EmptyChart` when no row has a shown rate: a chart without a bar is never drawn (the report
    prints ``needlecare.outcomes.report_html.responders_note`` instead).

    Each row's label is written above its bar (long injury names need no margin); the bar's value, CI end
    and n follow the bar. Rows keep the given order, top to bottom.
    """
    title = title or "Pain responders by injury (share reaching the responder rule, %)"
    if not any(row.rate.shown and row.rate.value is not None for row in rows):
        raise EmptyChart("a responder chart needs at least one shown rate; print a sentence instead")
    top_in, bottom_in = 0.15, 0.6
    height = top_in + ROW_HEIGHT_IN * len(rows) + bottom_in
    fig = _new_figure(WIDTH_IN, height)
    fig.subplots_adjust(
        left=MARGIN_IN / WIDTH_IN, right=1 - 0.2 / WIDTH_IN, top=1 - top_in / height, bottom=bottom_in / height
    )
    ax = fig.add_subplot()
    desc_parts: list[str] = []
    for y, row in enumerate(rows):
        rate = row.rate
        ax.text(0.5, y - 0.12, row.label, va="bottom", ha="left", fontsize=FONT_SIZE)
        if rate.shown and rate.value is not None:
            low = rate.value - rate.low if rate.low is not None else 0.0
            high = rate.high - rate.value if rate.high is not None else 0.0
            ax.barh(y + 0.2, rate.value, height=0.5, color=COLOURS[0])
            ax.errorbar(rate.value, y + 0.2, xerr=[[max(low, 0.0)], [max(high, 0.0)]], color="#000000", capsize=3)
            end = rate.high if rate.high is not None else rate.value
            ax.text(end + 1.5, y + 0.2, f"{rate.display} (n = {rate.n_display})", va="center")
            desc_parts.append(f"{row.label}: {rate.display}{_interval_text(rate)} % (n = {rate.n_display})")
        else:
            text = f"{rate.display} (n = {rate.n_display})"
            ax.text(0.5, y + 0.2, text, va="center", color=MUTED, style="italic")
            desc_parts.append(f"{row.label}: {text}")
    ax.set_ylim(len(rows) - 0.4, -0.75)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_xlim(0, 122)
    ax.set_xticks([0, 20, 40, 60, 80, 100])
    ax.set_xlabel("% of paired answers (error bars: Wilson 95 % CI)")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    return _svg(fig, chart_id, title, "; ".join(desc_parts) + ".")
