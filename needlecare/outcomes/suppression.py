"""Small-number rules for outcome reports (domain.md §5.2): what may be shown, and how it is shown.

Everything here is pure: it takes raw numbers and a :class:`ReportPolicy` and returns :class:`Figure` values
that a page, a CSV or a PDF can print as they are. A suppressed figure carries no value (``value`` and
``low``/``high`` are None) so a renderer cannot leak it by accident; the raw numbers stay in the ``raw``
parts of the result objects in ``needlecare.outcomes.results`` (for tests and for audit, never for export).

The rules (all from domain.md §5.2, a proposed product rule [E] adopted from the CMS cell-size policy [V]):

1. **Counts.** A count of 1 .. ``min_count_shown - 1`` (1-10 by default) is shown as ``"< 11"``; 0 is shown.
2. **Complementary suppression.** Where a total is shown together with the cells that make it up (answered
   + not answered = due; responders + non-responders = paired), a single suppressed cell could be worked out
   by subtraction, so the next smallest cell is suppressed too (:func:`suppress_partition`).
3. **Percentages.** A percentage is hidden when its numerator or denominator is 1-10, and also when its
   complement (denominator - numerator) is, since ``share × total`` gives the numerator back and
   ``total - numerator`` the complement (domain.md §5.2: "percentages or totals must not let anyone work out a
   suppressed 1-10 value"; ``hide_small_complements`` turns the complement check off). Rates that are not
   shares of a whole (escalations per 100 sessions, where one session can have several) only check numerator
   and denominator.
4. **Derivation.** Rules 2 and 3 look at one partition at a time; ``needlecare.outcomes.report_protect`` then
   reads the whole report as a system of equations (every printed n, a share's interval, a rate times its
   sessions, a mean with its SD and interval, and the relations between counts) and hides further figures until
   no hidden count of 1-10 can be derived (run by ``needlecare.outcomes.reports.build_report``).
5. **Stability.** A mean change, median, IQR or responder rate is shown only when ``n >= min_paired`` (20)
   paired answers; below that the figure reads "insufficient data". Kaplan-Meier medians need
   ``km_min_patients`` (20) patients and ``km_min_events`` (10) events (domain.md §5.1, §5.2 rule 2 [E]).

All shares and rates are expressed **per 100** (a response rate of 0.83 is ``value=83.0``, shown "83.0 %").
"""

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from needlecare.outcomes import stats
from needlecare.safety.clinic_config import ReportPolicy


class Reason(StrEnum):
    """Why a figure shows no value."""

    SMALL_COUNT = "small_count"  # a count of 1-10
    COMPLEMENTARY = "complementary"  # hidden so that a small count cannot be worked out from a total
    SMALL_BASE = "small_base"  # a share or rate built on a suppressed count
    INSUFFICIENT = "insufficient_data"  # fewer than min_paired paired answers (or the KM minimums)
    NO_DATA = "no_data"  # nothing to compute from (n = 0), or too few values for the statistic (e.g. CI at n = 1)
    NO_MCID = "no_mcid"  # no MCID/MDC is on record for this measure, so no responder rate
    NOT_REACHED = "median_not_reached"  # the survival curve never fell to 0.5


DISPLAY = {
    Reason.COMPLEMENTARY: "suppressed",
    Reason.SMALL_BASE: "suppressed",
    Reason.INSUFFICIENT: "insufficient data",
    Reason.NO_DATA: "no data",
    Reason.NO_MCID: "no MCID",
    Reason.NOT_REACHED: "not reached",
}


class Figure(BaseModel):
    """One displayed number: what to print, the value behind it (None when suppressed), and its n.

    ``n`` is the raw base the figure rests on (the count itself for a count, the denominator for a share, the
    paired n for a mean). It is excluded from ``model_dump()``; print ``n_display`` (which follows the count
    rule), or use ``n_shown`` (None when the n itself is a suppressed count).
    """

    model_config = ConfigDict(frozen=True)

    value: float | None
    display: str
    n: int = Field(exclude=True)
    n_shown: int | None
    n_display: str
    suppressed_reason: Reason | None = None
    low: float | None = None
    high: float | None = None

    @property
    def shown(self) -> bool:
        return self.suppressed_reason is None


def _n(n: int, policy: ReportPolicy) -> tuple[int | None, str]:
    return (None, policy.small_text) if policy.small(n) else (n, str(n))


def hidden(reason: Reason, n: int, policy: ReportPolicy, display: str | None = None) -> Figure:
    """A figure that shows no value."""
    n_shown, n_display = _n(n, policy)
    text = display if display is not None else DISPLAY.get(reason, policy.small_text)
    return Figure(value=None, display=text, n=n, n_shown=n_shown, n_display=n_display, suppressed_reason=reason)


def count_figure(count: int, policy: ReportPolicy) -> Figure:
    """A count: '< 11' for 1-10, otherwise the number (0 is shown)."""
    if count < 0:
        raise ValueError("a count cannot be negative")
    if policy.small(count):
        return hidden(Reason.SMALL_COUNT, count, policy)
    return Figure(value=float(count), display=str(count), n=count, n_shown=count, n_display=str(count))


def suppress_partition(cells: Sequence[int], policy: ReportPolicy, *, total_shown: bool = True) -> list[Figure]:
    """Counts that add up to a total shown elsewhere: primary suppression, then complementary suppression.

    When exactly one cell is suppressed and the total is shown, the smallest other non-zero cell (or, if all
    others are 0, the smallest other cell) is suppressed as well, so no suppressed cell can be found by
    subtraction. With two or more suppressed cells nothing more is needed for a one-way table.
    """
    figures = [count_figure(c, policy) for c in cells]
    if not (policy.complementary and total_shown):
        return figures
    suppressed = [i for i, f in enumerate(figures) if not f.shown]
    if len(suppressed) != 1:
        return figures
    others = [i for i in range(len(cells)) if i != suppressed[0]]
    if not others:
        return figures
    nonzero = [i for i in others if cells[i] > 0]
    pick = min(nonzero or others, key=lambda i: (cells[i], i))
    # Its n is the count itself: printed beside it, it would give the hidden cell back.
    sealed = hidden(Reason.COMPLEMENTARY, cells[pick], policy)
    figures[pick] = sealed.model_copy(update={"n_shown": None, "n_display": sealed.display})
    return figures


def share_figure(
    part: int,
    total: int,
    policy: ReportPolicy,
    *,
    blocked: bool = False,
    min_total: int = 0,
    interval: bool = True,
) -> Figure:
    """``part`` out of ``total`` per 100, with a Wilson 95 % CI in ``low``/``high`` (also per 100).

    Hidden when the total is 0 (no data), below ``min_total`` (insufficient data), or when the numerator,
    the denominator or the complement is a small count, or ``blocked`` (a cell it is built on was suppressed).
    """
    if not 0 <= part <= total:
        raise ValueError(f"part must be between 0 and total; got {part} of {total}")
    if total == 0:
        return hidden(Reason.NO_DATA, total, policy)
    if total < min_total:
        return hidden(Reason.INSUFFICIENT, total, policy)
    cells = (part, total, total - part) if policy.hide_small_complements else (part, total)
    small = policy.hide_small_percentages and any(policy.small(c) for c in cells)
    if blocked or small:
        return hidden(Reason.SMALL_BASE, total, policy)
    bounds = stats.wilson(part, total) if interval else None
    value = 100.0 * part / total
    n_shown, n_display = _n(total, policy)
    return Figure(
        value=value,
        display=f"{value:.{policy.decimals}f} %",
        n=total,
        n_shown=n_shown,
        n_display=n_display,
        low=100.0 * bounds[0] if bounds else None,
        high=100.0 * bounds[1] if bounds else None,
    )


def complement_share(share: Figure, policy: ReportPolicy) -> Figure:
    """100 - a share (e.g. loss to follow-up from the response rate), hidden whenever the share is."""
    if share.value is None or share.suppressed_reason is not None:
        return share
    value = 100.0 - share.value
    return share.model_copy(
        update={
            "value": value,
            "display": f"{value:.{policy.decimals}f} %",
            "low": None if share.high is None else 100.0 - share.high,
            "high": None if share.low is None else 100.0 - share.low,
        }
    )


def rate_figure(events: int, denominator: int, policy: ReportPolicy, *, per: float = 100.0) -> Figure:
    """Events per ``per`` units (no interval): hidden when events or denominator is a small count."""
    if denominator == 0:
        return hidden(Reason.NO_DATA, denominator, policy)
    if policy.hide_small_percentages and (policy.small(events) or policy.small(denominator)):
        return hidden(Reason.SMALL_BASE, denominator, policy)
    value = per * events / denominator
    n_shown, n_display = _n(denominator, policy)
    return Figure(
        value=value,
        display=f"{value:.{policy.decimals}f}",
        n=denominator,
        n_shown=n_shown,
        n_display=n_display,
    )


def statistic_figure(
    value: float | None,
    n: int,
    policy: ReportPolicy,
    *,
    low: float | None = None,
    high: float | None = None,
    min_n: int | None = None,
    unit: str = "",
) -> Figure:
    """A statistic (mean, median, quartile, KM median) on n values: 'insufficient data' below min_n."""
    threshold = policy.min_paired if min_n is None else min_n
    if n == 0 or value is None:
        return hidden(Reason.NO_DATA, n, policy)
    if n < threshold:
        return hidden(Reason.INSUFFICIENT, n, policy)
    n_shown, n_display = _n(n, policy)
    suffix = f" {unit}" if unit else ""
    return Figure(
        value=value,
        display=f"{value:.{policy.decimals}f}{suffix}",
        n=n,
        n_shown=n_shown,
        n_display=n_display,
        low=low,
        high=high,
    )


def count_parts(count: Figure) -> tuple[int | None, bool]:
    """A count figure as (the number, when shown; whether it is a hidden count of 1 .. ``min_count_shown - 1``)."""
    if count.shown and count.value is not None:
        return int(count.value), False
    return None, count.suppressed_reason == Reason.SMALL_COUNT


def have_of(have: int | None, small: bool, needed: int, policy: ReportPolicy) -> str:
    """How many of the ``needed`` values a count holds, never giving back a hidden count: "14 of 20"; "< 11 of 20"
    for a hidden count of 1 .. ``min_count_shown - 1`` (``small``); "fewer than 20" for a count hidden to protect
    another cell (complementary suppression), or when "< 11 of" would not say less than ``needed``."""
    if have is not None:
        return f"{have} of {needed}"
    if small and needed >= policy.min_count_shown:
        return f"{policy.small_text} of {needed}"
    return f"fewer than {needed}"


def shortfall_text(have: int | None, small: bool, needed: int, policy: ReportPolicy, noun: str) -> str:
    """ "14 of 20 paired answers, 6 more needed"; "< 11 of 20 paired answers, at least 10 more needed"; or, for a
    count hidden to protect another cell, "fewer than 20 paired answers" (a number needed would give it back)."""
    text = f"{have_of(have, small, needed, policy)} {noun}"
    if have is not None:
        return f"{text}, {max(needed - have, 0)} more needed"
    if small and needed >= policy.min_count_shown:
        return f"{text}, at least {needed - (policy.min_count_shown - 1)} more needed"
    return text


def shortfall(figure: Figure, count: Figure, policy: ReportPolicy, noun: str, needed: int | None = None) -> str:
    """For a statistic below its minimum n ("insufficient data"), how many values it rests on and how many more it
    needs (:func:`shortfall_text`); "" for any other figure.

    ``count`` is the count figure of the statistic's n as it is printed beside it (e.g. ``ChangeStats.n``, hidden
    where it would give back a suppressed answered count); ``needed`` defaults to ``min_paired``.
    """
    if figure.suppressed_reason != Reason.INSUFFICIENT:
        return ""
    have, small = count_parts(count)
    return shortfall_text(have, small, policy.min_paired if needed is None else needed, policy, noun)
