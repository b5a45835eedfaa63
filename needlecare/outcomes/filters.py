"""The cohort of an outcome figure: :class:`Filters` (clinic, injury, practitioner, period), the tables the
statements read, and the SQL conditions that select the cohort's episodes and apply the owner rule (a
session-scoped row belongs to its session's practitioner, an episode-scoped one to the practitioner of the
episode's first session).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, func, select
from sqlalchemy.sql import ColumnElement
from sqlmodel import SQLModel

import models  # noqa: F401  (registers every table on SQLModel.metadata)


@dataclass(frozen=True)
class Filters:
    clinic_id: str
    injury: str | None = None
    practitioner_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def make_filters(
    clinic_id: str, injury: str | None, practitioner_id: int | None, since: datetime | None, until: datetime | None
) -> Filters:
    """The filters of one call; the period bounds must be timezone-aware."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    return Filters(clinic_id=clinic_id, injury=injury, practitioner_id=practitioner_id, since=since, until=until)


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


EPISODE = _table("episode")
CONTACT = _table("contact")
RESPONSE = _table("survey_response")
SESSION = _table("treatment_session")
CASE = _table("escalation_case")
CASE_RULE = _table("case_rule")


def flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
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


def first_practitioner(episode_id: ColumnElement[Any]) -> ColumnElement[Any]:
    first = SESSION.alias("ts_first")
    return (
        select(first.c.practitioner_id)
        .where(first.c.episode_id == episode_id)
        .order_by(first.c.completed_at, first.c.id)
        .limit(1)
        .scalar_subquery()
    )


def treated_by(practitioner_id: int, episode_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """The episode has a session of this practitioner: true of every episode holding a row the practitioner
    owns (a session-scoped row's session and an episode's first session are sessions of that episode).

    Not the owner rule itself, a narrowing beside it: one uncorrelated list, read once per statement, that the
    databases can start from (a practitioner's own episodes through ``ix_treatment_session_practitioner_id``)
    instead of testing the owner of every row of the clinic with correlated lookups. On SQLite at 128k patients
    the owner lookups per row made a one-practitioner report slower than the whole clinic's."""
    ts = SESSION.alias("ts_of")
    return episode_id.in_(select(ts.c.episode_id).where(ts.c.practitioner_id == practitioner_id))


def owner_of_episode(f: Filters, episode_id: ColumnElement[Any]) -> list[ColumnElement[bool]]:
    """Episode-scoped owner rule: the practitioner of the episode's first session."""
    if f.practitioner_id is None:
        return []
    return [treated_by(f.practitioner_id, episode_id), first_practitioner(episode_id) == f.practitioner_id]


def practitioner_conditions(
    f: Filters, session_id: ColumnElement[Any] | None, episode_id: ColumnElement[Any]
) -> list[ColumnElement[bool]]:
    """The owner rule: the session's practitioner, else the practitioner of the episode's first session."""
    if f.practitioner_id is None:
        return []
    if session_id is None:
        return owner_of_episode(f, episode_id)
    own = SESSION.alias("ts_own")
    of_session = select(own.c.practitioner_id).where(own.c.id == session_id).scalar_subquery()
    return [
        treated_by(f.practitioner_id, episode_id),
        func.coalesce(of_session, first_practitioner(episode_id)) == f.practitioner_id,
    ]
