"""Outcome statistics per clinic × injury × time point (issue 5), computed in SQL on SQLite and PostgreSQL.

No answer rows are loaded into Python: a handful of grouped statements (six for :func:`compute_outcomes`, one or two
for :func:`trajectory`, whatever the number of patients) return aggregates, and ``needlecare.outcomes.stats``
finishes intervals, quartiles and the Kaplan-Meier product. Every figure then goes through the small-number rules of
``needlecare.outcomes.suppression`` with the clinic's :class:`~needlecare.safety.clinic_config.ReportPolicy`; the
raw numbers stay beside them in ``raw`` fields (for tests and audit, never for export).

Definitions (domain.md §5.1; where domain.md marks a rule [E] it is a design proposal awaiting sign-off):

- **Cohort and filters.** One clinic (``episode.clinic_id``). ``injury`` filters ``episode.injury``. The
  period ``since <= episode.started_at < until`` selects a cohort of *episodes*, and every statistic uses
  that cohort's contacts, answers, sessions and escalation cases, so numerators and denominators always
  describe the same patients and each episode is followed from its own baseline. ``practitioner_id``: a
  session-scoped contact or escalation case belongs to its session's practitioner
  (``treatment_session.practitioner_id``); an episode-scoped one (outcome surveys, Kaplan-Meier, baselines)
  to the practitioner of the episode's first session (earliest ``completed_at``, then lowest id), so
  per-practitioner cuts add up to the clinic.
- **Due / answered** (per injury × step). Due = contacts of the step with status sent, answered or expired
  (the window has opened and the contact was not skipped on purpose; planned and skipped are left out).
  Answered = status answered. Response rate = answered / due; loss to follow-up = 100 - response rate.
  Counted as contacts (one per session for the session-scoped checks ``check_24h/72h/7d``, one per episode
  for ``outcome_*``) and as distinct patients (a patient counts as answered when any of their contacts of
  that step was answered). ``StepRow.response_rate`` is the contact rate; it stands beside every figure of
  the row.
- **Paired pain change** = ``survey_response.nprs_usual - episode.baseline_pain_nprs`` (both present, contact
  answered): negative = better. Mean with 95 % t-interval, SD, median and quartiles (linear interpolation,
  numpy's default and PostgreSQL's ``percentile_cont``; done with ``row_number``/``count`` windows so SQLite
  gives the same number). n = paired answers; for the session-scoped checks a patient with several sessions
  contributes one pair per session (answers treated as independent: the interval is then too narrow; the
  number of distinct patients is reported beside n).
- **Pain responder** = drop >= 2 points **and** >= 30 % of baseline (domain.md §2 proposed rule [E], Farrar
  2001), integer arithmetic in SQL (``10 * drop >= 3 * baseline``). Share with a Wilson 95 % CI.
- **ROM change** = ``survey_response.rom_value - episode.baseline_rom_value`` where ``rom_measure`` equals
  ``episode.baseline_rom_measure``, per measure, in the measure's unit (raw follow-up minus baseline; the
  direction says which sign is better). Responder past the MDC/MCID only where domain.md §1.2 gives one
  (:data:`MEASURE_RULES`), else "no MCID". A threshold is compared with 1e-9 slack so 9.1 - 7.5 counts as 1.6.
- **Adverse events per 100 sessions.** Denominator = cohort sessions with an answered ``check_24h`` or
  ``check_72h``; numerators count those sessions with, in any answered contact of the session: soreness
  past 72 h (soreness >= 4 at ``check_72h`` or >= 1 at ``check_7d``, rule R11 [E]); bruising (small, large or
  spreading; large and spreading also on their own); a red flag (``redflags`` holds a ticked item: a JSON
  array that is neither empty, i.e. not asked, nor ``["none"]``; read with ``json_array_length`` and the
  first element, ``json_extract(x, '$[0]')`` on SQLite and ``x ->> 0`` on PostgreSQL). Shares with Wilson
  95 % CI. The safety-check response rate (sessions checked / sessions with a due 24 h or 72 h check) stands
  beside them.
- **Escalations per 100 sessions by rule**: ``case_rule`` rows per ``rule_id`` of the cohort's escalation
  cases, plus ``rule_id = "all"`` for cases; the same denominator as adverse events. Time to
  acknowledgement = ``acknowledged_at - opened_at`` in whole seconds (each timestamp truncated to the
  second), shown as a median in hours when at least ``min_paired`` cases were acknowledged.
- **Time to recovery** (Kaplan-Meier, per injury): days (whole days, truncated) from ``episode.started_at`` to
  the first answer (``submitted_at``) that shows improvement: the pain responder rule above at any step, or
  GROC >= +4 at an episode-scoped step (their GROC asks about the whole episode; the session checks' GROC
  compares with the last session, so it does not count) [E]. Episodes without that are censored at their last
  answer. Episodes with no answer at all are left out of the curve (they count in the response rate beside
  it). SQL returns (day, events, censored); the median needs ``km_min_patients`` and ``km_min_events``.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    Float,
    Integer,
    String,
    Table,
    and_,
    case,
    cast,
    distinct,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CompoundSelect
from sqlmodel import Session, SQLModel

import models  # noqa: F401  (registers every table on SQLModel.metadata)
from models.contact import ContactStatus
from needlecare.core.catalogue import get_catalogue
from needlecare.outcomes import stats
from needlecare.outcomes.suppression import (
    Figure,
    Reason,
    complement_share,
    count_figure,
    hidden,
    rate_figure,
    share_figure,
    statistic_figure,
    suppress_partition,
)
from needlecare.safety.clinic_config import ReportPolicy

DUE_STATUSES = (ContactStatus.SENT.value, ContactStatus.ANSWERED.value, ContactStatus.EXPIRED.value)
ANSWERED = ContactStatus.ANSWERED.value
SAFETY_CHECKS = ("check_24h", "check_72h")
STEP_ORDER = ("baseline", "check_24h", "check_72h", "check_7d", "outcome_4wk", "outcome_6wk", "outcome_12wk")
"""Display order of the default protocol's steps (protocols/default.toml); other step ids sort after, by name."""
BASELINE = "baseline"
PAIN = "nprs_usual"
ALL_RULES = "all"
THRESHOLD_SLACK = 1e-9
BRUISES = ("small", "large", "spreading")
NONE_TICKED = "none"  # needlecare.followup.questions.NONE_OF_THESE: the "None of these" box of the red-flag checklist
ADVERSE_KINDS = ("soreness_past_72h", "bruise_any", "bruise_large", "bruise_spreading", "red_flag")
SECONDS_PER_DAY = 86400

Direction = Literal["higher_better", "lower_better"]


@dataclass(frozen=True)
class MeasureRule:
    """How to read a change in one measure: which way is better, and the responder threshold if any."""

    direction: Direction | None  # None: not settled how the measure is recorded; no responder rate
    threshold: float | None  # smallest improvement that counts as a responder (MCID/MDC/MDD); None = no MCID
    kind: str  # what the threshold is: MCID, MDC or MDD
    source: str


MEASURE_RULES: dict[str, MeasureRule] = {
    PAIN: MeasureRule(
        "lower_better", 2.0, "MCID", "domain.md §2: drop >= 2 points and >= 30 % of baseline (proposed rule [E])"
    ),
    "wblt_cm": MeasureRule("higher_better", 1.6, "MDC", "domain.md §1.2: MDC across testers 1.6 cm (Powden 2015) [V]"),
    "wblt_deg": MeasureRule("higher_better", 4.6, "MDC", "domain.md §1.2: MDC across testers 4.6° (Powden 2015) [V]"),
    "heel_raise_reps": MeasureRule(
        "higher_better", None, "", "domain.md §1.2 gives only test-retest agreement of about ±6 reps, not an MDC"
    ),
    "ober_deg": MeasureRule(
        "lower_better",
        None,
        "",
        "domain.md §1.2: negative = below horizontal; normal limbs -27.1°, tight -16.3° (Ferber 2010); no MDC",
    ),
    "slr_deg": MeasureRule("higher_better", 7.0, "MDD", "domain.md §1.2: SLR MDD 6-7° (Neto 2015) [V]; upper bound"),
    "ake_deg": MeasureRule(
        None, 8.0, "MDD", "domain.md §1.2: AKE MDD 7-8° (Neto 2015) [V]; direction depends on how AKE is recorded"
    ),
    "slr_deficit_deg": MeasureRule(
        None, None, "", "domain.md §1.2: sign unsettled (injured minus uninjured vs a positive deficit); no MDD"
    ),
    "hip_ir_deg": MeasureRule("higher_better", 5.4, "MDC", "domain.md §1.2: MDC 5.4° (Krause 2015) [V]"),
    "task_pain_nprs": MeasureRule("lower_better", None, "", "domain.md §1.2 PFPS task pain NPRS; no MCID given"),
    "stance_pain_onset_s": MeasureRule("higher_better", None, "", "domain.md §1.2 gluteal tendinopathy; no MDC"),
    "hop_pain_nprs": MeasureRule("lower_better", None, "", "domain.md §1.2 BSI; no MCID given"),
    "walk_pain_nprs": MeasureRule("lower_better", None, "", "domain.md §1.2 BSI; no MCID given"),
}
"""Direction and responder threshold per measure; the NPRS rule is the combined 2-point-and-30 % rule."""

_UNKNOWN_MEASURE = MeasureRule(None, None, "", "not in needlecare.outcomes.queries.MEASURE_RULES")


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Filters:
    clinic_id: str
    injury: str | None = None
    practitioner_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


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
class OutcomeReport:
    filters: Filters
    policy: ReportPolicy
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


# ---------------------------------------------------------------------------------- dialect helpers


class epoch_seconds(FunctionElement[int]):
    """Whole seconds since 1970 of a UTC timestamp column (fractions truncated), on SQLite and PostgreSQL."""

    type = Integer()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch_seconds)
def _epoch_default(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


class redflag_ticked(FunctionElement[int]):
    """1 when a JSON list of red flags holds a ticked item (not empty, not ["none"]), else 0."""

    type = Integer()
    inherit_cache = True
    name = "redflag_ticked"


@compiles(redflag_ticked, "sqlite")
def _ticked_sqlite(element: redflag_ticked, compiler: SQLCompiler, **kw: Any) -> str:
    x = compiler.process(element.clauses, **kw)
    return (
        f"(CASE WHEN json_array_length({x}) > 0 AND COALESCE(json_extract({x}, '$[0]'), '') <> '{NONE_TICKED}' "
        "THEN 1 ELSE 0 END)"
    )


@compiles(redflag_ticked)
def _ticked_default(element: redflag_ticked, compiler: SQLCompiler, **kw: Any) -> str:
    x = compiler.process(element.clauses, **kw)
    return (
        f"(CASE WHEN json_typeof({x}) = 'array' AND json_array_length({x}) > 0 "
        f"AND COALESCE({x} ->> 0, '') <> '{NONE_TICKED}' THEN 1 ELSE 0 END)"
    )


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


EPISODE = _table("episode")
CONTACT = _table("contact")
RESPONSE = _table("survey_response")
SESSION = _table("treatment_session")
CASE = _table("escalation_case")
CASE_RULE = _table("case_rule")


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


def episode_conditions(f: Filters) -> list[ColumnElement[bool]]:
    conditions = [EPISODE.c.clinic_id == f.clinic_id]
    if f.injury is not None:
        conditions.append(EPISODE.c.injury == f.injury)
    if f.since is not None:
        conditions.append(EPISODE.c.started_at >= f.since)
    if f.until is not None:
        conditions.append(EPISODE.c.started_at < f.until)
    return conditions


def _first_practitioner(episode_id: ColumnElement[Any]) -> ColumnElement[Any]:
    first = SESSION.alias("ts_first")
    return (
        select(first.c.practitioner_id)
        .where(first.c.episode_id == episode_id)
        .order_by(first.c.completed_at, first.c.id)
        .limit(1)
        .scalar_subquery()
    )


def practitioner_conditions(
    f: Filters, session_id: ColumnElement[Any] | None, episode_id: ColumnElement[Any]
) -> list[ColumnElement[bool]]:
    """The owner rule: the session's practitioner, else the practitioner of the episode's first session."""
    if f.practitioner_id is None:
        return []
    if session_id is None:
        return [_first_practitioner(episode_id) == f.practitioner_id]
    own = SESSION.alias("ts_own")
    of_session = select(own.c.practitioner_id).where(own.c.id == session_id).scalar_subquery()
    return [func.coalesce(of_session, _first_practitioner(episode_id)) == f.practitioner_id]


def _pain_responder(baseline: ColumnElement[Any], follow_up: ColumnElement[Any]) -> ColumnElement[bool]:
    drop = baseline - follow_up
    return and_(follow_up.is_not(None), baseline.is_not(None), drop >= 2, drop * 10 >= baseline * 3)


def _rom_responder(measure: ColumnElement[Any], change: ColumnElement[Any]) -> ColumnElement[int]:
    whens: list[tuple[ColumnElement[bool], int]] = []
    for name, rule in MEASURE_RULES.items():
        if name == PAIN or rule.threshold is None or rule.direction is None:
            continue
        improvement = change if rule.direction == "higher_better" else -change
        whens.append((and_(measure == name, improvement >= rule.threshold - THRESHOLD_SLACK), 1))
    return case(*whens, else_=0) if whens else literal(0, Integer)


def _summary_stmt(values: Select[Any] | CompoundSelect, keys: Sequence[str], sums: Sequence[str] = ()) -> Select[Any]:
    """Per group of ``keys``: n, mean, sum of squared deviations, quartile bounds, sums of ``sums`` columns.

    ``values`` has the key columns, ``x`` and optionally ``patient_id`` and the ``sums`` columns. The window
    ``AVG`` is the first pass, ``SUM((x - mean)^2)`` the second; quartile k/d takes the order statistics at
    ranks ``rn`` with ``d (rn - 1) <= (n - 1) k < d rn`` (low) and the next rank (high).
    """
    v = values.subquery("v")
    group = [v.c[k] for k in keys]
    extra = [v.c[c] for c in sums]
    patient = [v.c.patient_id] if "patient_id" in v.c else []
    ranked = select(
        *group,
        v.c.x,
        *extra,
        *patient,
        func.row_number().over(partition_by=group, order_by=v.c.x).label("rn"),
        func.count().over(partition_by=group).label("cnt"),
        func.avg(v.c.x).over(partition_by=group).label("mean"),
    ).subquery("r")
    r = ranked.c
    deviation = r.x - r.mean
    columns: list[ColumnElement[Any]] = [
        *(r[k] for k in keys),
        func.count().label("n"),
        func.max(r.mean).label("mean"),
        func.sum(deviation * deviation).label("ssd"),
    ]
    for i, (k, d) in enumerate(stats.QUARTILES):
        position = (r.cnt - 1) * k
        low = and_((r.rn - 1) * d <= position, position < r.rn * d)
        high = and_((r.rn - 2) * d <= position, position < (r.rn - 1) * d)
        columns.append(func.max(case((low, r.x))).label(f"q{i}_lo"))
        columns.append(func.max(case((high, r.x))).label(f"q{i}_hi"))
    columns.extend(func.coalesce(func.sum(r[c]), 0).label(c) for c in sums)
    if patient:
        columns.append(func.count(distinct(r.patient_id)).label("patients"))
    return select(*columns).group_by(*(r[k] for k in keys))


def _moments_stmt(values: Select[Any] | CompoundSelect, keys: Sequence[str]) -> Select[Any]:
    """Per group of ``keys``: n, the sum of ``x`` and of its squares; one pass, no sort (:func:`_moments`).

    For figures that need a mean, SD and t-interval but no quartiles (the trajectory): the window functions
    of :func:`_summary_stmt` sort every value, which made the trajectory the slowest statement at 100k patients.
    """
    v = values.subquery("v")
    group = [v.c[k] for k in keys]
    x = cast(v.c.x, Float)
    return select(*group, func.count().label("n"), func.sum(x).label("sx"), func.sum(x * x).label("sxx")).group_by(
        *group
    )


def _moments(row: Any) -> stats.Summary:
    """n, mean, SD and 95 % t-interval from :func:`_moments_stmt` (quartiles None). The sum of squared
    deviations is ``sxx - sx^2 / n``: for these measures (|x| <= ~100, n <= ~10^6) its rounding error stays
    many orders of magnitude below the printed precision."""
    n = int(row.n)
    if n == 0:
        return stats.summarise(0, None, None, [(None, None)] * len(stats.QUARTILES))
    mean = float(row.sx) / n
    ssd = max(float(row.sxx) - float(row.sx) * float(row.sx) / n, 0.0)
    return stats.summarise(n, mean, ssd, [(None, None)] * len(stats.QUARTILES))


def _summary(row: Any) -> stats.Summary:
    bounds = [(getattr(row, f"q{i}_lo"), getattr(row, f"q{i}_hi")) for i in range(len(stats.QUARTILES))]
    return stats.summarise(int(row.n), row.mean, row.ssd, bounds)


# -------------------------------------------------------------------------------------- statements


def _counts_stmt(f: Filters) -> Select[Any]:
    c = CONTACT.c
    answered = c.status == ANSWERED
    return (
        select(
            EPISODE.c.injury,
            c.step_id,
            func.min(c.scope).label("scope"),
            func.count().label("contacts_due"),
            func.sum(_flag(answered)).label("contacts_answered"),
            func.count(distinct(c.patient_id)).label("patients_due"),
            func.count(distinct(case((answered, c.patient_id)))).label("patients_answered"),
        )
        .select_from(CONTACT.join(EPISODE, EPISODE.c.id == c.episode_id))
        .where(
            *episode_conditions(f),
            c.status.in_(DUE_STATUSES),
            *practitioner_conditions(f, c.session_id, c.episode_id),
        )
        .group_by(EPISODE.c.injury, c.step_id)
    )


def _answers_from() -> Any:
    """Answers with their episode. A ``survey_response`` row exists only for an answered contact (written in
    the transaction that marks it answered) and repeats the contact's episode, session, step and patient, so
    the contact table (the largest) is not read: at 100k patients this join is ~8x faster on SQLite."""
    return RESPONSE.join(EPISODE, EPISODE.c.id == RESPONSE.c.episode_id)


def _answer_conditions(f: Filters) -> list[ColumnElement[bool]]:
    sr = RESPONSE.c
    return [*episode_conditions(f), *practitioner_conditions(f, sr.session_id, sr.episode_id)]


def _changes_stmt(f: Filters) -> Select[Any]:
    sr, e = RESPONSE.c, EPISODE.c
    where = _answer_conditions(f)
    pain = (
        select(
            e.injury,
            sr.step_id,
            cast(literal(PAIN), String).label("measure"),
            cast(sr.nprs_usual - e.baseline_pain_nprs, Float).label("x"),
            _flag(_pain_responder(e.baseline_pain_nprs, sr.nprs_usual)).label("responders"),
            sr.patient_id,
        )
        .select_from(_answers_from())
        .where(*where, sr.nprs_usual.is_not(None), e.baseline_pain_nprs.is_not(None))
    )
    change = sr.rom_value - e.baseline_rom_value
    rom = (
        select(
            e.injury,
            sr.step_id,
            e.baseline_rom_measure.label("measure"),
            cast(change, Float).label("x"),
            _rom_responder(e.baseline_rom_measure, change).label("responders"),
            sr.patient_id,
        )
        .select_from(_answers_from())
        .where(
            *where,
            sr.rom_value.is_not(None),
            e.baseline_rom_value.is_not(None),
            sr.rom_measure == e.baseline_rom_measure,
        )
    )
    return _summary_stmt(union_all(pain, rom), ("injury", "step_id", "measure"), sums=("responders",))


def _adverse_stmt(f: Filters) -> Select[Any]:
    c, sr = CONTACT.c, RESPONSE.c
    answered = c.status == ANSWERED
    check = c.step_id.in_(SAFETY_CHECKS)
    soreness = or_(and_(c.step_id == "check_72h", sr.soreness >= 4), and_(c.step_id == "check_7d", sr.soreness >= 1))
    flags: dict[str, ColumnElement[bool]] = {
        "soreness_past_72h": soreness,
        "bruise_any": sr.bruise.in_(BRUISES),
        "bruise_large": sr.bruise == "large",
        "bruise_spreading": sr.bruise == "spreading",
        "red_flag": redflag_ticked(sr.redflags) == 1,
    }
    where = [*episode_conditions(f), SESSION.c.clinic_id == f.clinic_id]
    if f.practitioner_id is not None:
        where.append(SESSION.c.practitioner_id == f.practitioner_id)
    # Driven from the cohort's sessions (contacts found by their session index): reading every due contact of
    # the clinic first and grouping it by session was ~4x slower on SQLite at 100k patients.
    per_session = (
        select(
            EPISODE.c.injury.label("injury"),
            func.max(_flag(check)).label("due_check"),
            func.max(_flag(and_(check, answered))).label("checked"),
            *(func.max(_flag(and_(answered, condition))).label(name) for name, condition in flags.items()),
        )
        .select_from(
            SESSION.join(EPISODE, EPISODE.c.id == SESSION.c.episode_id)
            .outerjoin(CONTACT, and_(c.session_id == SESSION.c.id, c.status.in_(DUE_STATUSES)))
            .outerjoin(RESPONSE, sr.contact_id == c.id)
        )
        .where(*where)
        .group_by(SESSION.c.id, EPISODE.c.injury)
        .subquery("ps")
    )
    ps = per_session.c
    checked = ps.checked == 1
    return select(
        ps.injury,
        func.count().label("sessions"),
        func.coalesce(func.sum(ps.due_check), 0).label("sessions_due_check"),
        func.coalesce(func.sum(ps.checked), 0).label("sessions_checked"),
        *(func.sum(case((checked, ps[name]), else_=0)).label(name) for name in ADVERSE_KINDS),
    ).group_by(ps.injury)


def _case_conditions(f: Filters) -> list[ColumnElement[bool]]:
    ec = CASE.c
    return [
        *episode_conditions(f),
        ec.clinic_id == f.clinic_id,
        *practitioner_conditions(f, ec.session_id, ec.episode_id),
    ]


def _escalation_counts_stmt(f: Filters) -> CompoundSelect:
    ec, cr = CASE.c, CASE_RULE.c
    acknowledged = func.sum(_flag(ec.acknowledged_at.is_not(None))).label("acknowledged")
    cases = CASE.join(EPISODE, EPISODE.c.id == ec.episode_id)
    by_rule = (
        select(EPISODE.c.injury, cr.rule_id.label("rule_id"), func.count().label("count"), acknowledged)
        .select_from(CASE_RULE.join(cases, ec.id == cr.case_id))
        .where(*_case_conditions(f))
        .group_by(EPISODE.c.injury, cr.rule_id)
    )
    every = (
        select(
            EPISODE.c.injury,
            cast(literal(ALL_RULES), String).label("rule_id"),
            func.count().label("count"),
            acknowledged,
        )
        .select_from(cases)
        .where(*_case_conditions(f))
        .group_by(EPISODE.c.injury)
    )
    return union_all(by_rule, every)


def _ack_stmt(f: Filters) -> Select[Any]:
    ec, cr = CASE.c, CASE_RULE.c
    seconds = cast(epoch_seconds(ec.acknowledged_at) - epoch_seconds(ec.opened_at), Float).label("x")
    where = [*_case_conditions(f), ec.acknowledged_at.is_not(None)]
    cases = CASE.join(EPISODE, EPISODE.c.id == ec.episode_id)
    by_rule = (
        select(EPISODE.c.injury, cr.rule_id.label("rule_id"), seconds)
        .select_from(CASE_RULE.join(cases, ec.id == cr.case_id))
        .where(*where)
    )
    every = (
        select(EPISODE.c.injury, cast(literal(ALL_RULES), String).label("rule_id"), seconds)
        .select_from(cases)
        .where(*where)
    )
    return _summary_stmt(union_all(by_rule, every), ("injury", "rule_id"))


def _recovery_stmt(f: Filters) -> Select[Any]:
    e, c, sr = EPISODE.c, CONTACT.c, RESPONSE.c
    answered = and_(c.status == ANSWERED, sr.id.is_not(None))
    day = (epoch_seconds(sr.submitted_at) - epoch_seconds(e.started_at)) // SECONDS_PER_DAY
    improved = or_(_pain_responder(e.baseline_pain_nprs, sr.nprs_usual), and_(sr.groc15 >= 4, c.scope == "episode"))
    where = [*episode_conditions(f), c.status.in_(DUE_STATUSES)]
    if f.practitioner_id is not None:
        where.append(_first_practitioner(e.id) == f.practitioner_id)
    per_episode = (
        select(
            e.id.label("episode_id"),
            e.injury.label("injury"),
            func.min(case((and_(answered, improved), day))).label("event_day"),
            func.max(case((answered, day))).label("last_day"),
        )
        .select_from(EPISODE.join(CONTACT, c.episode_id == e.id).outerjoin(RESPONSE, sr.contact_id == c.id))
        .where(*where)
        .group_by(e.id, e.injury)
        .subquery("pe")
    )
    pe = per_episode.c
    time = func.coalesce(pe.event_day, pe.last_day).label("day")
    return select(
        pe.injury,
        time,
        func.sum(_flag(pe.event_day.is_not(None))).label("events"),
        func.sum(_flag(pe.event_day.is_(None))).label("censored"),
    ).group_by(pe.injury, time)


def _trajectory_stmt(f: Filters) -> Select[Any]:
    e, sr = EPISODE.c, RESPONSE.c
    base_where = episode_conditions(f)
    if f.practitioner_id is not None:
        base_where.append(_first_practitioner(e.id) == f.practitioner_id)
    baseline = cast(literal(BASELINE), String).label("step_id")
    pain_label = cast(literal(PAIN), String).label("measure")
    parts = [
        select(e.injury, baseline, pain_label, cast(e.baseline_pain_nprs, Float).label("x"), e.patient_id)
        .select_from(EPISODE)
        .where(*base_where, e.baseline_pain_nprs.is_not(None)),
        select(
            e.injury,
            baseline,
            e.baseline_rom_measure.label("measure"),
            cast(e.baseline_rom_value, Float).label("x"),
            e.patient_id,
        )
        .select_from(EPISODE)
        .where(*base_where, e.baseline_rom_value.is_not(None), e.baseline_rom_measure.is_not(None)),
        select(e.injury, sr.step_id, pain_label, cast(sr.nprs_usual, Float).label("x"), sr.patient_id)
        .select_from(_answers_from())
        .where(*_answer_conditions(f), sr.nprs_usual.is_not(None)),
        select(
            e.injury, sr.step_id, sr.rom_measure.label("measure"), cast(sr.rom_value, Float).label("x"), sr.patient_id
        )
        .select_from(_answers_from())
        .where(*_answer_conditions(f), sr.rom_value.is_not(None), sr.rom_measure.is_not(None)),
    ]
    return _moments_stmt(union_all(*parts), ("injury", "step_id", "measure"))


# ------------------------------------------------------------------------------------------ figures


def _unit(measure: str) -> str:
    if measure == PAIN:
        return "0-10"
    found = get_catalogue().measures.get(measure)
    return found.unit if found else ""


def _step_key(injury: str, step_id: str) -> tuple[str, int, str]:
    order = STEP_ORDER.index(step_id) if step_id in STEP_ORDER else len(STEP_ORDER)
    return injury, order, step_id


def _change(measure: str, row: Any, policy: ReportPolicy) -> ChangeStats:
    summary = _summary(row)
    n = summary.n
    responders = int(row.responders)
    rule = MEASURE_RULES.get(measure, _UNKNOWN_MEASURE)
    unit = _unit(measure)
    has_rule = rule.threshold is not None and rule.direction is not None
    if has_rule:
        responder_count, rest = suppress_partition([responders, n - responders], policy)
        responder_rate = share_figure(
            responders, n, policy, min_total=policy.min_paired, blocked=not (responder_count.shown and rest.shown)
        )
    else:
        responder_count = hidden(Reason.NO_MCID, n, policy)
        responder_rate = hidden(Reason.NO_MCID, n, policy)
    return ChangeStats(
        measure=measure,
        unit=unit,
        direction=rule.direction,
        threshold=rule.threshold if has_rule else None,
        threshold_kind=rule.kind if has_rule else "",
        threshold_source=rule.source,
        n=count_figure(n, policy),
        patients=count_figure(int(row.patients), policy),
        mean=statistic_figure(summary.mean, n, policy, low=summary.ci_low, high=summary.ci_high),
        sd=statistic_figure(summary.sd, n, policy),
        median=statistic_figure(summary.median, n, policy),
        q1=statistic_figure(summary.q1, n, policy),
        q3=statistic_figure(summary.q3, n, policy),
        responders=responder_count,
        responder_rate=responder_rate,
        raw=ChangeRaw(n=n, patients=int(row.patients), summary=summary, responders=responders),
    )


def _answer_split(due: int, answered: int, policy: ReportPolicy) -> tuple[Figure, Figure, Figure, Figure]:
    """(due, answered, not answered, response rate) with complementary suppression of the two cells."""
    answered_fig, rest_fig = suppress_partition([answered, due - answered], policy)
    rate = share_figure(answered, due, policy, blocked=not (answered_fig.shown and rest_fig.shown))
    return count_figure(due, policy), answered_fig, rest_fig, rate


def _step_rows(counts: Sequence[Any], changes: Sequence[Any], policy: ReportPolicy) -> tuple[StepRow, ...]:
    by_step: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in changes:
        by_step[(row.injury, row.step_id)].append(row)
    rows: list[StepRow] = []
    for row in sorted(counts, key=lambda r: _step_key(r.injury, r.step_id)):
        raw = StepRaw(
            contacts_due=int(row.contacts_due),
            contacts_answered=int(row.contacts_answered or 0),
            patients_due=int(row.patients_due),
            patients_answered=int(row.patients_answered),
        )
        contacts_due, contacts_answered, contacts_rest, rate = _answer_split(
            raw.contacts_due, raw.contacts_answered, policy
        )
        patients_due, patients_answered, patients_rest, patient_rate = _answer_split(
            raw.patients_due, raw.patients_answered, policy
        )
        changes_here = sorted(by_step.get((row.injury, row.step_id), []), key=lambda r: r.measure)
        pain = next((_change(PAIN, r, policy) for r in changes_here if r.measure == PAIN), None)
        rom = tuple(_change(r.measure, r, policy) for r in changes_here if r.measure != PAIN)
        if not (contacts_answered.shown and patients_answered.shown):
            # The paired n is at most the answered count: showing it would give back a suppressed cell.
            pain = _hide_n(pain, policy) if pain is not None else None
            rom = tuple(_hide_n(change, policy) for change in rom)
        rows.append(
            StepRow(
                injury=row.injury,
                step_id=row.step_id,
                scope=row.scope,
                contacts_due=contacts_due,
                contacts_answered=contacts_answered,
                contacts_not_answered=contacts_rest,
                patients_due=patients_due,
                patients_answered=patients_answered,
                patients_not_answered=patients_rest,
                response_rate=rate,
                patient_response_rate=patient_rate,
                loss_to_follow_up=complement_share(rate, policy),
                pain=pain,
                rom=rom,
                raw=raw,
            )
        )
    return tuple(rows)


def _hide_n(change: ChangeStats, policy: ReportPolicy) -> ChangeStats:
    """The same statistics with their counts (n, patients, responders) hidden (complementary suppression);
    a count already shown as "< 11" keeps that display."""
    n = change.n if not change.n.shown else hidden(Reason.COMPLEMENTARY, change.raw.n, policy)
    patients = (
        change.patients if not change.patients.shown else hidden(Reason.COMPLEMENTARY, change.raw.patients, policy)
    )
    responders = (
        change.responders
        if not change.responders.shown
        else hidden(Reason.COMPLEMENTARY, change.raw.responders, policy)
    )
    return replace(change, n=n, patients=patients, responders=responders)


def _adverse_rows(rows: Sequence[Any], policy: ReportPolicy) -> tuple[AdverseRow, ...]:
    result: list[AdverseRow] = []
    for row in sorted(rows, key=lambda r: r.injury):
        checked = int(row.sessions_checked)
        due_check = int(row.sessions_due_check)
        counts = {kind: int(getattr(row, kind) or 0) for kind in ADVERSE_KINDS}
        events: dict[str, AdverseEvent] = {}
        for kind, count in counts.items():
            with_event, without = suppress_partition([count, checked - count], policy)
            events[kind] = AdverseEvent(
                count=with_event,
                per_100_sessions=share_figure(count, checked, policy, blocked=not (with_event.shown and without.shown)),
            )
        _, checked_fig, _, check_rate = _answer_split(due_check, checked, policy)
        result.append(
            AdverseRow(
                injury=row.injury,
                sessions=count_figure(int(row.sessions), policy),
                sessions_checked=checked_fig,
                check_response_rate=check_rate,
                events=events,
                raw=AdverseRaw(
                    sessions=int(row.sessions), sessions_due_check=due_check, sessions_checked=checked, counts=counts
                ),
            )
        )
    return tuple(result)


def _escalation_rows(
    counts: Sequence[Any], acks: Sequence[Any], adverse: Sequence[AdverseRow], policy: ReportPolicy
) -> tuple[EscalationRow, ...]:
    by_injury = {row.injury: row for row in adverse}
    ack_by = {(r.injury, r.rule_id): _summary(r) for r in acks}
    empty = stats.summarise(0, None, None, [(None, None)] * len(stats.QUARTILES))
    result: list[EscalationRow] = []
    for row in sorted(counts, key=lambda r: (r.injury, r.rule_id != ALL_RULES, r.rule_id)):
        sessions_row = by_injury.get(row.injury)
        sessions = sessions_row.raw.sessions_checked if sessions_row else 0
        ack = ack_by.get((row.injury, row.rule_id), empty)
        median_hours = None if ack.median is None else ack.median / 3600.0
        result.append(
            EscalationRow(
                injury=row.injury,
                rule_id=row.rule_id,
                count=count_figure(int(row.count), policy),
                per_100_sessions=rate_figure(int(row.count), sessions, policy),
                check_response_rate=sessions_row.check_response_rate
                if sessions_row
                else hidden(Reason.NO_DATA, 0, policy),
                ack_median_hours=statistic_figure(median_hours, ack.n, policy, unit="h"),
                raw=EscalationRaw(
                    count=int(row.count), sessions_checked=sessions, acknowledged=int(row.acknowledged), ack_seconds=ack
                ),
            )
        )
    return tuple(result)


def _recovery_rows(rows: Sequence[Any], policy: ReportPolicy) -> tuple[RecoveryRow, ...]:
    per_injury: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    unanswered: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.day is None:
            unanswered[row.injury] += int(row.censored)
        else:
            per_injury[row.injury].append((float(row.day), int(row.events), int(row.censored)))
    result: list[RecoveryRow] = []
    for injury in sorted(set(per_injury) | set(unanswered)):
        km = stats.kaplan_meier(per_injury.get(injury, []))
        due = km.subjects + unanswered.get(injury, 0)
        _, followed, _, rate = _answer_split(due, km.subjects, policy)
        if km.subjects < policy.km_min_patients or km.total_events < policy.km_min_events:
            median = hidden(Reason.INSUFFICIENT, km.subjects, policy)
        elif km.median is None:
            median = hidden(Reason.NOT_REACHED, km.subjects, policy)
        else:
            median = statistic_figure(km.median, km.subjects, policy, min_n=policy.km_min_patients, unit="d")
        result.append(
            RecoveryRow(
                injury=injury,
                episodes_due=count_figure(due, policy),
                episodes_followed=followed,
                response_rate=rate,
                events=count_figure(km.total_events, policy),
                median_days=median,
                raw=RecoveryRaw(episodes_due=due, episodes_followed=km.subjects, km=km),
            )
        )
    return tuple(result)


# ------------------------------------------------------------------------------------- public API


def _filters(
    clinic_id: str, injury: str | None, practitioner_id: int | None, since: datetime | None, until: datetime | None
) -> Filters:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    return Filters(clinic_id=clinic_id, injury=injury, practitioner_id=practitioner_id, since=since, until=until)


def compute_outcomes(
    db: Session,
    clinic_id: str,
    *,
    policy: ReportPolicy,
    injury: str | None = None,
    practitioner_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> OutcomeReport:
    """Every outcome statistic of one clinic (module docstring), suppressed per ``policy``. Six statements."""
    f = _filters(clinic_id, injury, practitioner_id, since, until)
    conn = db.connection()
    counts = conn.execute(_counts_stmt(f)).all()
    changes = conn.execute(_changes_stmt(f)).all()
    adverse = _adverse_rows(conn.execute(_adverse_stmt(f)).all(), policy)
    escalations = _escalation_rows(
        conn.execute(_escalation_counts_stmt(f)).all(), conn.execute(_ack_stmt(f)).all(), adverse, policy
    )
    recovery = _recovery_rows(conn.execute(_recovery_stmt(f)).all(), policy)
    return OutcomeReport(
        filters=f,
        policy=policy,
        rows=_step_rows(counts, changes, policy),
        adverse=adverse,
        escalations=escalations,
        recovery=recovery,
    )


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
    of :func:`compute_outcomes` are the figures to judge change by. Same filters and owner rule as there.
    ``rates``: each step's response rate keyed by (injury, step id), as :func:`step_rates` gives for a
    :func:`compute_outcomes` report of the same filters and policy; without it they are counted here (one
    more statement).
    """
    f = _filters(clinic_id, injury, practitioner_id, since, until)
    conn = db.connection()
    if rates is None:
        rates = {
            (row.injury, row.step_id): _answer_split(int(row.contacts_due), int(row.contacts_answered or 0), policy)[3]
            for row in conn.execute(_counts_stmt(f)).all()
        }
    points: list[TrajectoryPoint] = []
    for row in conn.execute(_trajectory_stmt(f)).all():
        summary = _moments(row)
        points.append(
            TrajectoryPoint(
                injury=row.injury,
                step_id=row.step_id,
                measure=row.measure,
                unit=_unit(row.measure),
                n=count_figure(summary.n, policy),
                mean=statistic_figure(summary.mean, summary.n, policy, low=summary.ci_low, high=summary.ci_high),
                response_rate=None if row.step_id == BASELINE else rates.get((row.injury, row.step_id)),
                raw=summary,
            )
        )
    points.sort(key=lambda p: (*_step_key(p.injury, p.step_id), p.measure != PAIN, p.measure))
    return tuple(points)
