"""The grouped SQL statements behind the outcome figures, one per kind of figure: contacts due and answered,
paired changes, adverse events, escalation counts, acknowledgement times, time to recovery and the
trajectory. Each returns aggregates per group, never answer rows (definitions: ``needlecare.outcomes.definitions``).
Two SQL functions are compiled per dialect (SQLite, PostgreSQL): whole epoch seconds of a timestamp, and
whether a JSON list of red flags holds a ticked item.
"""

from typing import Any

from sqlalchemy import Float, Integer, String, and_, case, cast, distinct, func, literal, or_, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CompoundSelect

from needlecare.outcomes.aggregates import histogram_stmt, moments_stmt, summary_stmt
from needlecare.outcomes.definitions import (
    ADVERSE_KINDS,
    ALL_RULES,
    ANSWERED,
    BASELINE,
    BRUISES,
    DUE_STATUSES,
    MEASURE_RULES,
    NONE_TICKED,
    PAIN,
    PAIN_RECALL,
    SAFETY_CHECKS,
    SECONDS_PER_DAY,
    THRESHOLD_SLACK,
)
from needlecare.outcomes.filters import (
    CASE,
    CASE_RULE,
    CONTACT,
    EPISODE,
    RESPONSE,
    SESSION,
    Filters,
    episode_conditions,
    flag,
    owner_of_episode,
    practitioner_conditions,
)


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


def like_recall(recall: ColumnElement[Any]) -> ColumnElement[bool]:
    """The follow-up pain score was asked with the baseline's recall period (``definitions.PAIN_RECALL``).

    Every pairing with the baseline and every pain series goes through this: a score asked with another
    recall (pain "right now", stored before revision 0009) is left out, never mixed in."""
    return recall == PAIN_RECALL.value


def pain_responder(
    baseline: ColumnElement[Any], follow_up: ColumnElement[Any], recall: ColumnElement[Any]
) -> ColumnElement[bool]:
    """Drop >= 2 points and >= 30 % of the baseline, for a follow-up score of the baseline's recall only."""
    drop = baseline - follow_up
    return and_(
        follow_up.is_not(None), baseline.is_not(None), like_recall(recall), drop >= 2, drop * 10 >= baseline * 3
    )


def _rom_responder(measure: ColumnElement[Any], change: ColumnElement[Any]) -> ColumnElement[int]:
    whens: list[tuple[ColumnElement[bool], int]] = []
    for name, rule in MEASURE_RULES.items():
        if name == PAIN or rule.threshold is None or rule.direction is None:
            continue
        improvement = change if rule.direction == "higher_better" else -change
        whens.append((and_(measure == name, improvement >= rule.threshold - THRESHOLD_SLACK), 1))
    return case(*whens, else_=0) if whens else literal(0, Integer)


def counts_stmt(f: Filters) -> Select[Any]:
    c = CONTACT.c
    answered = c.status == ANSWERED
    return (
        select(
            EPISODE.c.injury,
            c.step_id,
            func.min(c.scope).label("scope"),
            func.count().label("contacts_due"),
            func.sum(flag(answered)).label("contacts_answered"),
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


CHANGE_KEYS = ("injury", "step_id", "measure")
VALUES_ROW = "values"
PATIENTS_ROW = "patients"


def change_values(f: Filters) -> CompoundSelect:
    """Every paired change of the cohort: injury, step_id, measure, x (follow-up minus baseline), responders (1
    or 0) and patient_id; pain of the baseline's recall, and each ROM answer of the baseline's measure."""
    sr, e = RESPONSE.c, EPISODE.c
    where = _answer_conditions(f)
    pain = (
        select(
            e.injury,
            sr.step_id,
            cast(literal(PAIN), String).label("measure"),
            cast(sr.nprs_usual - e.baseline_pain_nprs, Float).label("x"),
            flag(pain_responder(e.baseline_pain_nprs, sr.nprs_usual, sr.nprs_usual_recall)).label("responders"),
            sr.patient_id,
        )
        .select_from(_answers_from())
        .where(*where, sr.nprs_usual.is_not(None), e.baseline_pain_nprs.is_not(None), like_recall(sr.nprs_usual_recall))
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
    return union_all(pain, rom)


def changes_stmt(f: Filters) -> CompoundSelect:
    """Per injury x step x measure, two kinds of rows (``kind``): ``values``, one per distinct change value ``x``
    with ``count`` answers and how many are ``responders``; and one ``patients`` row with the distinct patients
    (in ``count``; ``x`` and ``responders`` are NULL). No window function ranks the values (``aggregates``)."""
    values = change_values(f)
    counts = histogram_stmt(values, CHANGE_KEYS, sums=("responders",)).add_columns(
        cast(literal(VALUES_ROW), String).label("kind")
    )
    v = values.subquery("p")
    patients = select(
        *(v.c[k] for k in CHANGE_KEYS),
        cast(literal(None), Float).label("x"),
        func.count(distinct(v.c.patient_id)).label("count"),
        cast(literal(None), Integer).label("responders"),
        cast(literal(PATIENTS_ROW), String).label("kind"),
    ).group_by(*(v.c[k] for k in CHANGE_KEYS))
    return union_all(counts, patients)


def adverse_stmt(f: Filters) -> Select[Any]:
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
            func.max(flag(check)).label("due_check"),
            func.max(flag(and_(check, answered))).label("checked"),
            *(func.max(flag(and_(answered, condition))).label(name) for name, condition in flags.items()),
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


def escalation_counts_stmt(f: Filters) -> CompoundSelect:
    ec, cr = CASE.c, CASE_RULE.c
    acknowledged = func.sum(flag(ec.acknowledged_at.is_not(None))).label("acknowledged")
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


def ack_stmt(f: Filters) -> Select[Any]:
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
    return summary_stmt(union_all(by_rule, every), ("injury", "rule_id"))


def recovery_stmt(f: Filters) -> Select[Any]:
    e, c, sr = EPISODE.c, CONTACT.c, RESPONSE.c
    answered = and_(c.status == ANSWERED, sr.id.is_not(None))
    day = (epoch_seconds(sr.submitted_at) - epoch_seconds(e.started_at)) // SECONDS_PER_DAY
    improved = or_(
        pain_responder(e.baseline_pain_nprs, sr.nprs_usual, sr.nprs_usual_recall),
        and_(sr.groc15 >= 4, c.scope == "episode"),
    )
    where = [*episode_conditions(f), c.status.in_(DUE_STATUSES), *owner_of_episode(f, e.id)]
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
        func.sum(flag(pe.event_day.is_not(None))).label("events"),
        func.sum(flag(pe.event_day.is_(None))).label("censored"),
    ).group_by(pe.injury, time)


def trajectory_stmt(f: Filters) -> Select[Any]:
    e, sr = EPISODE.c, RESPONSE.c
    base_where = [*episode_conditions(f), *owner_of_episode(f, e.id)]
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
        .where(*_answer_conditions(f), sr.nprs_usual.is_not(None), like_recall(sr.nprs_usual_recall)),
        select(
            e.injury, sr.step_id, sr.rom_measure.label("measure"), cast(sr.rom_value, Float).label("x"), sr.patient_id
        )
        .select_from(_answers_from())
        .where(*_answer_conditions(f), sr.rom_value.is_not(None), sr.rom_measure.is_not(None)),
    ]
    return moments_stmt(union_all(*parts), ("injury", "step_id", "measure"))
