"""needlecare.outcomes.charts: accessible, deterministic, self-contained SVG that never shows a suppressed value."""

import re
import sys
import time
import xml.etree.ElementTree as ET

import matplotlib
import pytest

from needlecare.outcomes import charts, stats
from needlecare.outcomes.charts import ResponderBar, responder_bars_svg, step_label, trajectory_svg
from needlecare.outcomes.results import TrajectoryPoint
from needlecare.outcomes.suppression import count_figure, share_figure, statistic_figure
from needlecare.safety.clinic_config import ReportPolicy

POLICY = ReportPolicy()
SVG = "{http://www.w3.org/2000/svg}"
HIDDEN_MEAN = 7.777  # a mean that is suppressed (n < 20): its value must appear nowhere


def point(injury: str, step: str, measure: str, unit: str, mean: float, n: int, half: float = 0.4) -> TrajectoryPoint:
    summary = stats.Summary(
        n=n, mean=mean, sd=1.0, ci_low=mean - half, ci_high=mean + half, q1=None, median=None, q3=None
    )
    return TrajectoryPoint(
        injury=injury,
        step_id=step,
        measure=measure,
        unit=unit,
        n=count_figure(n, POLICY),
        mean=statistic_figure(mean, n, POLICY, low=mean - half, high=mean + half),
        response_rate=None if step == "baseline" else share_figure(n, n + 13, POLICY),
        raw=summary,
    )


POINTS = (
    point("achilles_tendinopathy", "baseline", "nprs_usual", "0-10", 6.4, 45),
    point("achilles_tendinopathy", "baseline", "wblt_cm", "cm", 9.0, 45),
    point("achilles_tendinopathy", "check_72h", "nprs_usual", "0-10", 5.4, 30),
    point("achilles_tendinopathy", "outcome_6wk", "nprs_usual", "0-10", 4.2, 32),
    point("achilles_tendinopathy", "outcome_6wk", "wblt_cm", "cm", 10.4, 32),
    point("achilles_tendinopathy", "outcome_12wk", "nprs_usual", "0-10", HIDDEN_MEAN, 15),
    point("mtss", "baseline", "nprs_usual", "0-10", HIDDEN_MEAN, 4),
    point("mtss", "outcome_6wk", "nprs_usual", "0-10", HIDDEN_MEAN, 3),
)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def visible_text(svg: str) -> str:
    """Everything a reader can see or hear: <text>, <title> and <desc> contents."""
    root = parse(svg)
    parts = ["".join(el.itertext()) for el in root.iter() if el.tag in (f"{SVG}text", f"{SVG}title", f"{SVG}desc")]
    return "\n".join(parts)


def test_step_labels() -> None:
    assert [step_label(s) for s in ("baseline", "check_24h", "check_7d", "outcome_12wk", "custom_step")] == [
        "Baseline",
        "24 h",
        "7 d",
        "12 wk",
        "custom step",
    ]


def test_trajectory_is_accessible_inline_svg() -> None:
    svg = trajectory_svg(POINTS, "achilles_tendinopathy", injury_name="Achilles tendinopathy")
    assert svg.startswith("<svg ") and "<?xml" not in svg and "<!DOCTYPE" not in svg and "<metadata" not in svg
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "traj-achilles_tendinopathy-title traj-achilles_tendinopathy-desc"
    title = root.find(f"{SVG}title")
    desc = root.find(f"{SVG}desc")
    assert title is not None and title.text == "Achilles tendinopathy: mean pain and range of motion by time point"
    assert desc is not None and desc.text is not None
    # The description reads out every plotted figure with its interval and n ...
    assert "Pain, usual (NPRS 0-10): Baseline 6.4, 95 % CI 6.0 to 6.8 (n = 45)" in desc.text
    assert "6 wk 4.2, 95 % CI 3.8 to 4.6 (n = 32)" in desc.text
    assert "Knee-to-wall lunge distance (cm): Baseline 9.0" in desc.text
    # ... and names the point that is not plotted, by its display text only.
    assert "Pain, usual (NPRS 0-10) at 12 wk: insufficient data (n = 15)" in desc.text
    text = visible_text(svg)
    assert "n = 32" in text and "Time point" in text and "Not plotted (1)" in text
    assert "7.8" not in text and "7.777" not in svg


def test_a_chart_with_nothing_to_plot_says_so() -> None:
    svg = trajectory_svg(POINTS, "mtss", injury_name="Shin splints")
    text = visible_text(svg)
    assert "no time point has enough answers to plot" in text
    assert "Pain, usual (NPRS 0-10) at Baseline: insufficient data (n = < 11)" in text
    assert "7.8" not in text and "7.777" not in svg
    assert "n = 4" not in text and "n = 3" not in text  # the suppressed n are shown as "< 11"


def test_output_is_deterministic_and_ids_do_not_clash() -> None:
    first = trajectory_svg(POINTS, "achilles_tendinopathy")
    assert trajectory_svg(POINTS, "achilles_tendinopathy") == first
    other = trajectory_svg(POINTS, "mtss")
    ids_first = set(re.findall(r'\bid="([^"]+)"', first))
    ids_other = set(re.findall(r'\bid="([^"]+)"', other))
    assert ids_first and ids_other and not ids_first & ids_other
    for svg, ids in ((first, ids_first), (other, ids_other)):
        references = set(re.findall(r'href="#([^"]+)"', svg)) | set(re.findall(r"url\(#([^)]+)\)", svg))
        assert references <= ids  # every internal reference resolves inside the same chart


def test_no_external_resources_and_no_global_state_left_behind() -> None:
    pyplot_before = "matplotlib.pyplot" in sys.modules
    svg = trajectory_svg(POINTS, "achilles_tendinopathy") + responder_bars_svg(
        [ResponderBar("Achilles tendinopathy · 6 wk", share_figure(20, 32, POLICY))]
    )
    assert not re.search(r'(?:href|src)="https?:', svg) and "url(http" not in svg
    assert matplotlib.get_backend().lower() == "agg"
    assert matplotlib.rcParams["svg.hashsalt"] is None  # rc settings were restored after rendering
    if not pyplot_before:
        assert "matplotlib.pyplot" not in sys.modules


def test_responder_bars_show_shown_rates_and_only_the_text_of_hidden_ones() -> None:
    shown = share_figure(20, 32, POLICY)
    rows = [
        ResponderBar("Achilles tendinopathy · 6 wk", shown),
        ResponderBar("Plantar heel pain · 6 wk", share_figure(13, 14, POLICY, min_total=POLICY.min_paired)),
        ResponderBar("Shin splints · 6 wk", share_figure(2, 3, POLICY, min_total=POLICY.min_paired)),
    ]
    svg = responder_bars_svg(rows)
    text = visible_text(svg)
    assert "62.5 % (n = 32)" in text
    assert shown.low is not None and shown.high is not None
    assert f"95 % CI {shown.low:.1f} to {shown.high:.1f}" in text
    assert "insufficient data (n = 14)" in text and "insufficient data (n = < 11)" in text
    assert "92.9" not in text and "66.7" not in text  # 13/14 and 2/3 are never printed
    assert parse(svg).get("role") == "img"


def test_a_responder_chart_without_a_bar_is_refused() -> None:
    hidden_only = [ResponderBar("Shin splints · 6 wk", share_figure(2, 3, POLICY, min_total=POLICY.min_paired))]
    for rows in ([], hidden_only):
        with pytest.raises(charts.EmptyChart):
            responder_bars_svg(rows)


def test_rendering_is_fast_enough() -> None:
    trajectory_svg(POINTS, "achilles_tendinopathy")  # warm: fonts loaded
    started = time.perf_counter()
    for _ in range(3):
        trajectory_svg(POINTS, "achilles_tendinopathy")
    per_chart = (time.perf_counter() - started) / 3
    assert per_chart < 3.0, f"a two-panel chart took {per_chart:.2f} s"


def test_the_module_selects_agg_without_pyplot() -> None:
    assert charts.matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("injury", ["achilles_tendinopathy", "mtss", "not_in_points"])
def test_every_chart_is_well_formed_xml(injury: str) -> None:
    parse(trajectory_svg(POINTS, injury))
