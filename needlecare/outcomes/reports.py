"""Outcome reports: one clinic's outcome figures gathered with what a report shows beside them.

:func:`build_report` runs the outcome statistics (``needlecare.outcomes.compute``, already suppressed per the
clinic's :class:`~needlecare.safety.clinic_config.ReportPolicy`) and gathers them with the clinic, the filters, the
time of generation and the :func:`definitions` into a :class:`ReportData`. Everything after that is pure rendering:

- ``needlecare.outcomes.report_rows``: the report flattened into one figure row per figure, which every format
  prints, so they all hold the same figures and no suppressed value.
- ``needlecare.outcomes.report_html``: a self-contained page with inline SVG charts.
- ``needlecare.outcomes.report_csv`` (tidy: one row per figure) and ``needlecare.outcomes.report_json`` (the same
  rows, nested by injury and section) for analysts.
- ``needlecare.outcomes.report_pdf``: the same HTML printed by headless Chromium.
- ``needlecare.outcomes.report_files``: several formats at once, and the dated snapshot files.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlmodel import Session, col, select

from models import Clinic
from models.base import utcnow
from needlecare.core.catalogue import get_catalogue
from needlecare.outcomes.channels import ChannelStep, channel_cells, compute_channels, withhold_hidden_totals
from needlecare.outcomes.compute import compute_outcomes
from needlecare.outcomes.definitions import MEASURE_RULES, PAIN
from needlecare.outcomes.filters import Filters
from needlecare.outcomes.report_protect import protect
from needlecare.outcomes.results import OutcomeReport, TrajectoryPoint
from needlecare.outcomes.trajectory import step_rates, trajectory
from needlecare.safety.clinic_config import ReportPolicy, config_of


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
    channels: tuple[ChannelStep, ...] = ()  # response by channel per time point (needlecare.outcomes.channels)

    @property
    def injuries(self) -> list[str]:
        """Injury slugs that have any figure, sorted by slug (as ``needlecare.outcomes.compute`` sorts them)."""
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
    channels = compute_channels(db, outcomes.filters, policy)
    # Hide what the printed figures would let anyone work out (needlecare.outcomes.report_protect).
    outcomes, points, channels = protect((outcomes, points, channels), policy, channel_cells)
    channels = withhold_hidden_totals(channels, outcomes.rows)
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
        channels=channels,
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
            "Response by channel",
            "For each time point's due contacts: the channels their messages went by (the first message and the "
            "reminders recorded as sent: email only; email, then SMS; SMS only; SMS, then email; none sent) and "
            "answered by SMS reply (the reply was the answer) or online (the survey page, reached from an email or "
            "SMS link, or the answers API). Response rate per group = answered / contacts of the group, with a "
            "Wilson 95 % interval. The groups are not comparable arms: a reminder goes only to someone who had not "
            "answered yet.",
            "domain.md §4.3",
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
        Definition(
            "Pain improved at the latest outcome survey (headline)",
            "Each patient counted once, at their latest answered outcome survey with a usual-pain answer whose "
            "episode has a baseline (any injury, any outcome time point): the share meeting the pain responder "
            "rule, with a Wilson 95 % interval; n = those patients. Response rate = patients who answered at least "
            f"one due outcome survey / patients with one due. Shown from {policy.min_paired} patients, under the "
            "same small-number rules as every responder rate.",
            "domain.md §2, §5.1, §5.2 (proposed rules [E])",
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
            "on a hidden count. Every figure shown is also read as an equation (totals and differences, a share "
            "with its interval, a rate times its sessions, a mean with its SD and interval, the n printed beside a "
            "figure): further cells, and the statistics and n that would give one back, are hidden until no "
            f"hidden count can be worked out. Means, medians and responder rates need at least {policy.min_paired} "
            "paired answers, otherwise they read 'insufficient data'. A hidden figure is left empty in the CSV and "
            "JSON files too.",
            "CMS cell-size suppression policy; domain.md §5.2 (proposed rule [E])",
        ),
    ]
    return tuple(items)
