"""Small-number rules (domain.md §5.2): counts, complementary cells, percentages, stability thresholds."""

from typing import Any

import pytest
from pydantic import ValidationError
from scipy import stats as sps

from needlecare.outcomes.suppression import (
    Reason,
    complement_share,
    count_figure,
    rate_figure,
    share_figure,
    statistic_figure,
    suppress_partition,
)
from needlecare.safety.clinic_config import ReportPolicy

POLICY = ReportPolicy()


def approx(value: Any) -> Any:
    """Equal to 1e-9 (absolute), the tolerance the issue asks for."""
    return pytest.approx(value, rel=0, abs=1e-9)


def test_defaults_follow_domain_md() -> None:
    assert POLICY.min_count_shown == 11
    assert POLICY.min_paired == 20
    assert POLICY.km_min_patients == 20
    assert POLICY.km_min_events == 10
    assert POLICY.hide_small_percentages and POLICY.complementary


def test_policy_is_configurable_per_clinic_and_strict() -> None:
    policy = ReportPolicy.model_validate({"min_count_shown": 6, "min_paired": 30})
    assert policy.small(5) and not policy.small(6) and policy.small_text == "< 6"
    with pytest.raises(ValidationError):
        ReportPolicy.model_validate({"min_paired": 1})
    with pytest.raises(ValidationError):
        ReportPolicy.model_validate({"min_cout_shown": 5})


@pytest.mark.parametrize(
    ("count", "display", "reason"),
    [
        (0, "0", None),
        (1, "< 11", Reason.SMALL_COUNT),
        (10, "< 11", Reason.SMALL_COUNT),
        (11, "11", None),
        (250, "250", None),
    ],
)
def test_count_boundaries(count: int, display: str, reason: Reason | None) -> None:
    figure = count_figure(count, POLICY)
    assert figure.display == display
    assert figure.suppressed_reason == reason
    assert figure.value == (None if reason else count)
    assert figure.n_shown == (None if reason else count)
    assert figure.n_display == display


def test_raw_n_is_not_exported() -> None:
    figure = count_figure(7, POLICY)
    assert figure.n == 7
    dumped = figure.model_dump()
    assert "n" not in dumped and dumped["n_display"] == "< 11" and dumped["value"] is None


def test_count_suppression_can_be_switched_off() -> None:
    assert count_figure(1, ReportPolicy(min_count_shown=1)).display == "1"


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ([15, 3], [Reason.COMPLEMENTARY, Reason.SMALL_COUNT]),  # answered 15, not answered 3 of 18 due
        ([3, 15], [Reason.SMALL_COUNT, Reason.COMPLEMENTARY]),
        ([12, 12], [None, None]),
        ([0, 30], [None, None]),
        ([30, 0], [None, None]),
        ([5, 6, 20], [Reason.SMALL_COUNT, Reason.SMALL_COUNT, None]),  # two hidden: neither can be recovered
        ([5, 30, 20], [Reason.SMALL_COUNT, None, Reason.COMPLEMENTARY]),  # the smallest other cell
        ([5, 0, 20], [Reason.SMALL_COUNT, None, Reason.COMPLEMENTARY]),  # a zero would not protect the 5
        ([4, 0], [Reason.SMALL_COUNT, Reason.COMPLEMENTARY]),  # nothing else left
    ],
)
def test_complementary_suppression(cells: list[int], expected: list[Reason | None]) -> None:
    figures = suppress_partition(cells, POLICY)
    assert [f.suppressed_reason for f in figures] == expected
    # No suppressed cell can be recovered as total minus the shown cells.
    shown = sum(c for c, f in zip(cells, figures, strict=True) if f.shown)
    hidden_cells = [c for c, f in zip(cells, figures, strict=True) if not f.shown]
    assert len(hidden_cells) != 1, (sum(cells) - shown, hidden_cells)


def test_no_complementary_without_a_shown_total_or_when_off() -> None:
    assert [f.shown for f in suppress_partition([15, 3], POLICY, total_shown=False)] == [True, False]
    off = ReportPolicy(complementary=False)
    assert [f.shown for f in suppress_partition([15, 3], off)] == [True, False]


@pytest.mark.parametrize(
    ("part", "total", "reason"),
    [
        (0, 0, Reason.NO_DATA),
        (0, 30, None),
        (30, 30, None),
        (1, 30, Reason.SMALL_BASE),  # numerator 1-10
        (10, 30, Reason.SMALL_BASE),
        (11, 30, None),
        (11, 21, Reason.SMALL_BASE),  # complement 10
        (11, 22, None),  # complement 11
        (0, 10, Reason.SMALL_BASE),  # denominator 1-10
        (0, 11, None),
    ],
)
def test_percentages_built_on_small_counts_are_hidden(part: int, total: int, reason: Reason | None) -> None:
    figure = share_figure(part, total, POLICY)
    assert figure.suppressed_reason == reason
    if reason is None:
        assert figure.value == approx(100 * part / total)
        ci = sps.binomtest(part, total).proportion_ci(method="wilson")
        assert figure.low == approx(100 * ci.low)
        assert figure.high == approx(100 * ci.high)
        assert figure.display == f"{100 * part / total:.1f} %"
    else:
        assert figure.value is None and figure.low is None and figure.high is None


def test_share_blocked_by_a_suppressed_cell_and_by_min_total() -> None:
    assert share_figure(15, 40, POLICY, blocked=True).suppressed_reason == Reason.SMALL_BASE
    assert share_figure(15, 19, POLICY, min_total=20).suppressed_reason == Reason.INSUFFICIENT
    assert share_figure(15, 30, POLICY, min_total=20).shown
    assert share_figure(11, 21, ReportPolicy(hide_small_complements=False)).shown
    off = ReportPolicy(hide_small_percentages=False)
    assert share_figure(3, 30, off).value == approx(10.0)
    with pytest.raises(ValueError):
        share_figure(5, 4, POLICY)


def test_complement_share() -> None:
    rate = share_figure(25, 40, POLICY)
    loss = complement_share(rate, POLICY)
    assert loss.value == approx(37.5)
    assert loss.display == "37.5 %"
    assert rate.low is not None and rate.high is not None
    assert (loss.low, loss.high) == approx((100 - rate.high, 100 - rate.low))
    hidden_rate = share_figure(35, 40, POLICY)  # 5 not answered
    assert not complement_share(hidden_rate, POLICY).shown


def test_rate_per_100() -> None:
    assert rate_figure(12, 40, POLICY).value == approx(30.0)
    assert rate_figure(60, 40, POLICY).value == approx(150.0)  # not a share: can pass 100
    assert rate_figure(5, 40, POLICY).suppressed_reason == Reason.SMALL_BASE
    assert rate_figure(12, 8, POLICY).suppressed_reason == Reason.SMALL_BASE
    assert rate_figure(0, 40, POLICY).value == 0.0
    assert rate_figure(0, 0, POLICY).suppressed_reason == Reason.NO_DATA


@pytest.mark.parametrize(
    ("n", "reason", "n_display"),
    [
        (0, Reason.NO_DATA, "0"),
        (10, Reason.INSUFFICIENT, "< 11"),
        (11, Reason.INSUFFICIENT, "11"),
        (19, Reason.INSUFFICIENT, "19"),
        (20, None, "20"),
    ],
)
def test_statistic_needs_min_paired(n: int, reason: Reason | None, n_display: str) -> None:
    figure = statistic_figure(-1.25, n, POLICY, low=-2.0, high=-0.5)
    assert figure.suppressed_reason == reason
    assert figure.n_display == n_display
    if reason is None:
        assert (figure.value, figure.low, figure.high, figure.display) == (-1.25, -2.0, -0.5, "-1.2")
    else:
        assert figure.value is None and figure.low is None
        assert figure.display == ("insufficient data" if reason == Reason.INSUFFICIENT else "no data")


def test_statistic_threshold_is_configurable() -> None:
    assert statistic_figure(1.0, 19, ReportPolicy(min_paired=15)).shown
    assert not statistic_figure(1.0, 29, ReportPolicy(min_paired=30)).shown
    assert statistic_figure(3.0, 25, POLICY, min_n=25, unit="d").display == "3.0 d"
