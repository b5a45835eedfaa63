"""The trajectory of the outcome figures: the mean of pain and of each ROM measure per injury × step, baselines
first, in one or two grouped statements, for the chart and the tables.
"""

from collections.abc import Mapping
from datetime import datetime

from sqlmodel import Session

from needlecare.outcomes.aggregates import read_moments
from needlecare.outcomes.definitions import BASELINE, PAIN
from needlecare.outcomes.filters import make_filters
from needlecare.outcomes.finishing import answer_split, step_key, unit_of
from needlecare.outcomes.results import OutcomeReport, TrajectoryPoint
from needlecare.outcomes.statements import counts_stmt, trajectory_stmt
from needlecare.outcomes.suppression import Figure, count_figure, statistic_figure
from needlecare.safety.clinic_config import ReportPolicy


def step_rates(report: OutcomeReport) -> dict[tuple[str, str], Figure]:
    """The contact response rate of every (injury, step) of a report, for :func:`trajectory`'s ``rates``."""
    return {(row.injury, row.step_id): row.response_rate for row in report.rows}


def trajectory(
    db: Session,
    clinic_id: str,
    *,
    policy: ReportPolicy,
    injury: str | None = None,
    practitioner_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    rates: Mapping[tuple[str, str], Figure] | None = None,
) -> tuple[TrajectoryPoint, ...]:
    """Mean (95 % t-CI) of pain and of each ROM measure per injury × step, baselines first. One or two statements.

    Only n, mean, SD and the interval are computed (``raw`` has no quartiles): the chart and tables show means.

    Absolute values, not paired: each point uses everyone who answered at that step (and the baseline point
    every cohort episode with a baseline), so the points can rest on different patients; the paired changes
    of :func:`~needlecare.outcomes.compute.compute_outcomes` are the figures to judge change by. Same filters
    and owner rule as there. The pain series has one recall period throughout, the baseline's
    (``definitions.PAIN_RECALL``): follow-up scores asked with another recall are not in it. ``rates``: each
    step's response rate keyed by (injury, step id), as :func:`step_rates` gives for a ``compute_outcomes``
    report of the same filters and policy; without it they are counted here (one more statement).
    """
    f = make_filters(clinic_id, injury, practitioner_id, since, until)
    conn = db.connection()
    if rates is None:
        rates = {
            (row.injury, row.step_id): answer_split(int(row.contacts_due), int(row.contacts_answered or 0), policy)[3]
            for row in conn.execute(counts_stmt(f)).all()
        }
    points: list[TrajectoryPoint] = []
    for row in conn.execute(trajectory_stmt(f)).all():
        summary = read_moments(row)
        points.append(
            TrajectoryPoint(
                injury=row.injury,
                step_id=row.step_id,
                measure=row.measure,
                unit=unit_of(row.measure),
                n=count_figure(summary.n, policy),
                mean=statistic_figure(summary.mean, summary.n, policy, low=summary.ci_low, high=summary.ci_high),
                response_rate=None if row.step_id == BASELINE else rates.get((row.injury, row.step_id)),
                raw=summary,
            )
        )
    points.sort(key=lambda p: (*step_key(p.injury, p.step_id), p.measure != PAIN, p.measure))
    return tuple(points)
