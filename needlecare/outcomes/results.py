"""The result rows of the outcome figures: step rows with their paired changes, adverse events, escalations,
recovery, the whole report and the trajectory points; each keeps its unsuppressed numbers in ``raw``.
"""

from dataclasses import dataclass

from needlecare.outcomes import stats
from needlecare.outcomes.definitions import Direction
from needlecare.outcomes.filters import Filters
from needlecare.outcomes.suppression import Figure
from needlecare.safety.clinic_config import ReportPolicy


@dataclass(frozen=True)
class ChangeRaw:
    n: int
    patients: int
    summary: stats.Summary
    responders: int


@dataclass(frozen=True)
class ChangeStats:
    """Paired change from baseline in one measure at one step (follow-up minus baseline, in ``unit``)."""

    measure: str
    unit: str
    direction: Direction | None
    threshold: float | None  # None: no responder rate ("no MCID")
    threshold_kind: str  # MCID, MDC or MDD
    threshold_source: str
    n: Figure  # paired answers
    patients: Figure  # distinct patients among them
    mean: Figure  # low/high: 95 % t-interval
    sd: Figure
    median: Figure
    q1: Figure
    q3: Figure
    responders: Figure  # count
    responder_rate: Figure  # per 100, low/high: Wilson 95 % CI
    raw: ChangeRaw


@dataclass(frozen=True)
class StepRaw:
    contacts_due: int
    contacts_answered: int
    patients_due: int
    patients_answered: int


@dataclass(frozen=True)
class StepRow:
    """One injury × time point: who was due, who answered, and the paired changes."""

    injury: str
    step_id: str
    scope: str
    contacts_due: Figure
    contacts_answered: Figure
    contacts_not_answered: Figure
    patients_due: Figure
    patients_answered: Figure
    patients_not_answered: Figure
    response_rate: Figure  # contacts answered / due, per 100, Wilson CI
    patient_response_rate: Figure
    loss_to_follow_up: Figure  # 100 - response_rate
    pain: ChangeStats | None  # None: no paired pain answer at this step
    rom: tuple[ChangeStats, ...]
    raw: StepRaw


@dataclass(frozen=True)
class AdverseEvent:
    count: Figure  # sessions with the event
    per_100_sessions: Figure  # share of checked sessions, Wilson CI


@dataclass(frozen=True)
class AdverseRaw:
    sessions: int
    sessions_due_check: int
    sessions_checked: int
    counts: dict[str, int]


@dataclass(frozen=True)
class AdverseRow:
    injury: str
    sessions: Figure  # cohort sessions
    sessions_checked: Figure  # the denominator: sessions with an answered 24 h or 72 h check
    check_response_rate: Figure  # checked / sessions with a due 24 h or 72 h check
    events: dict[str, AdverseEvent]  # keys: ADVERSE_KINDS
    raw: AdverseRaw


@dataclass(frozen=True)
class EscalationRaw:
    count: int
    sessions_checked: int
    acknowledged: int
    ack_seconds: stats.Summary


@dataclass(frozen=True)
class EscalationRow:
    injury: str
    rule_id: str  # "all" = escalation cases (a case can carry several rules)
    count: Figure
    per_100_sessions: Figure  # denominator: the injury's checked sessions (as for adverse events)
    check_response_rate: Figure  # the safety-check response rate of those sessions, shown beside
    ack_median_hours: Figure
    raw: EscalationRaw


@dataclass(frozen=True)
class RecoveryRaw:
    episodes_due: int
    episodes_followed: int
    km: stats.KaplanMeier


@dataclass(frozen=True)
class RecoveryRow:
    injury: str
    episodes_due: Figure  # cohort episodes with at least one due contact
    episodes_followed: Figure  # ... with at least one answer (the patients in the curve)
    response_rate: Figure
    events: Figure
    median_days: Figure  # Kaplan-Meier median, days from episode start
    raw: RecoveryRaw


@dataclass(frozen=True)
class HeadlineRaw:
    patients_due: int
    patients_answered: int
    paired: int
    responders: int


@dataclass(frozen=True)
class Headline:
    """Across every injury of the cohort: patients past the pain responder rule at their latest paired outcome
    answer (``needlecare.outcomes.headline``), each patient counted once."""

    patients_due: Figure  # patients with a due outcome survey
    patients_answered: Figure  # ... who answered at least one
    response_rate: Figure  # answered / due, per 100, Wilson CI
    n: Figure  # patients with a baseline and a paired outcome answer
    responders: Figure  # count
    responder_rate: Figure  # per 100, Wilson CI; min_paired patients needed
    raw: HeadlineRaw


@dataclass(frozen=True)
class OutcomeReport:
    filters: Filters
    policy: ReportPolicy
    headline: Headline
    rows: tuple[StepRow, ...]
    adverse: tuple[AdverseRow, ...]
    escalations: tuple[EscalationRow, ...]
    recovery: tuple[RecoveryRow, ...]


@dataclass(frozen=True)
class TrajectoryPoint:
    """Mean of the absolute value of a measure at one step (``step_id="baseline"`` = episode baselines)."""

    injury: str
    step_id: str
    measure: str
    unit: str
    n: Figure
    mean: Figure  # low/high: 95 % t-interval
    response_rate: Figure | None  # the step's contact response rate (None for the baseline)
    raw: stats.Summary
