"""Response by channel: per injury × time point, which channels the follow-up messages went by and how the
answers came back, computed in SQL on SQLite and PostgreSQL (one grouped statement, no row per contact in Python).

Definitions (domain.md §4.3: record the channel, so that response rate and loss to follow-up can be reported):

- **Contacts** are the report's due contacts (``needlecare.outcomes.definitions``: status sent, answered or
  expired; the same cohort, filters and owner rule), so the groups of a time point add up to its "contacts due".
- **Channels tried** are the channels of the contact's messages that went out: its ``notification`` rows of kind
  ``survey`` (the first message, ``sequence`` 0) or ``reminder`` (``sequence`` 1..) with status ``sent``. Each
  contact falls in one group (:data:`GROUPS`): email only; email first, then SMS (an SMS reminder, or an SMS
  when the first email could not go); SMS only; SMS first, then email; no message recorded as sent.
- **Answered by SMS reply** = an answered contact whose ``survey_response.channel`` is ``sms``; **answered online**
  = every other answered contact (``web``: the survey page, reached from the link in an email or in an SMS;
  ``api``: the JSON answers API). Online + SMS reply = answered.
- **Response rate per group** = answered / contacts of the group, per 100, with a Wilson 95 % interval. The groups
  are not comparable arms: a reminder goes out only to someone who has not answered yet, so "email, then SMS"
  holds the patients who did not answer the email.

Small numbers follow the report's rules (``needlecare.outcomes.suppression``): each count of 1-10 reads "< 11",
the groups of a time point (contacts, answered) and the online/SMS split are partitions of the time point's shown
totals and get complementary suppression, a rate built on a hidden count is hidden, and :func:`channel_cells`
adds these cells and their relations to the report's equations so that ``needlecare.outcomes.report_protect``
hides whatever would give a hidden count back; :func:`withhold_hidden_totals` then hides the channel counts of a
time point whose answered or due count is hidden (a split would print the hidden total).
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.sql import Select
from sqlmodel import Session

from needlecare.outcomes.definitions import ANSWERED, DUE_STATUSES
from needlecare.outcomes.filters import (
    CONTACT,
    EPISODE,
    Filters,
    episode_conditions,
    flag,
    practitioner_conditions,
)
from needlecare.outcomes.finishing import step_key
from needlecare.outcomes.report_cells import build_cells
from needlecare.outcomes.report_protect import Model, seal
from needlecare.outcomes.results import OutcomeReport, StepRow, TrajectoryPoint
from needlecare.outcomes.suppression import Figure, share_figure, suppress_partition
from needlecare.safety.clinic_config import ReportPolicy

EMAIL, SMS = "email", "sms"

GROUPS: dict[str, str] = {
    "email": "Email only",
    "email_then_sms": "Email, then SMS",
    "sms": "SMS only",
    "sms_then_email": "SMS, then email",
    "none": "No message sent",
}
"""Channel group id → label, in display order."""


@dataclass(frozen=True)
class ChannelGroupRaw:
    contacts: int
    answered: int
    answered_sms: int


@dataclass(frozen=True)
class ChannelGroup:
    """The contacts of one time point whose messages went by one combination of channels."""

    group: str  # a key of GROUPS
    contacts: Figure
    answered: Figure
    response_rate: Figure  # answered / contacts, per 100, Wilson CI
    raw: ChannelGroupRaw


@dataclass(frozen=True)
class ChannelRaw:
    contacts: int
    answered: int
    answered_online: int
    answered_sms: int


@dataclass(frozen=True)
class ChannelStep:
    """One injury × time point: how its answers came back, and the response rate per channel group."""

    injury: str
    step_id: str
    answered_online: Figure  # web form or API
    answered_sms: Figure  # by SMS reply
    groups: tuple[ChannelGroup, ...]  # in GROUPS order; only groups with contacts
    raw: ChannelRaw


# ---------------------------------------------------------------------------------------------------- SQL


def channel_stmt(f: Filters) -> Select[Any]:
    """Per (injury, step, channels sent): contacts, answered and answered by SMS reply. ``email`` and ``sms`` are 1
    when the contact has a sent message of that channel, ``sms_first`` when its first message went by SMS;
    :func:`group_of` names the group.

    The flags are columns of the contact (``sent_email``, ``sent_sms``, ``first_by_sms``, ``answered_by_sms``),
    kept by the database from the contact's messages and answer (triggers on ``notification`` and
    ``survey_response``, migration 0014), and held in the ``ix_contact_report_episode`` covering index: each due
    contact of the cohort is read once, from that index alone. (Looking the sent messages and the answer up per
    contact instead, four index probes each, made this the slowest statement of a report: 7.3 s of 24 s on
    SQLite at 128k patients.)"""
    c = CONTACT.c
    answered = c.status == ANSWERED
    flags = (flag(c.sent_email).label("email"), flag(c.sent_sms).label("sms"), flag(c.first_by_sms).label("sms_first"))
    return (
        select(
            EPISODE.c.injury,
            c.step_id,
            *flags,
            func.count().label("contacts"),
            func.coalesce(func.sum(flag(answered)), 0).label("answered"),
            func.coalesce(func.sum(flag(and_(answered, c.answered_by_sms))), 0).label("answered_sms"),
        )
        .select_from(CONTACT.join(EPISODE, EPISODE.c.id == c.episode_id))
        .where(
            *episode_conditions(f),
            c.status.in_(DUE_STATUSES),
            *practitioner_conditions(f, c.session_id, c.episode_id),
        )
        .group_by(EPISODE.c.injury, c.step_id, c.sent_email, c.sent_sms, c.first_by_sms)
    )


def group_of(email: bool, sms: bool, sms_first: bool) -> str:
    """The :data:`GROUPS` key of a contact whose sent messages include email / SMS, the first of them by SMS."""
    if email and sms:
        return "sms_then_email" if sms_first else "email_then_sms"
    if email:
        return "email"
    if sms:
        return "sms"
    return "none"


# ---------------------------------------------------------------------------------------------- finishing


def channel_steps(rows: Sequence[Any], policy: ReportPolicy) -> tuple[ChannelStep, ...]:
    """The statement's rows as suppressed figures, one :class:`ChannelStep` per injury × time point."""
    by_step: dict[tuple[str, str], dict[str, ChannelGroupRaw]] = defaultdict(dict)
    for row in rows:
        found = by_step[(row.injury, row.step_id)]
        group = group_of(bool(row.email), bool(row.sms), bool(row.sms_first))
        before = found.get(group, ChannelGroupRaw(0, 0, 0))
        found[group] = ChannelGroupRaw(
            before.contacts + int(row.contacts),
            before.answered + int(row.answered or 0),
            before.answered_sms + int(row.answered_sms or 0),
        )
    steps: list[ChannelStep] = []
    for (injury, step_id), found in sorted(by_step.items(), key=lambda item: step_key(*item[0])):
        raws = [(g, found[g]) for g in GROUPS if g in found]
        answered = sum(r.answered for _, r in raws)
        by_sms = sum(r.answered_sms for _, r in raws)
        online_fig, sms_fig = suppress_partition([answered - by_sms, by_sms], policy)
        contact_figs = suppress_partition([r.contacts for _, r in raws], policy)
        answered_figs = suppress_partition([r.answered for _, r in raws], policy)
        groups = []
        for (group, raw), contacts_fig, answered_fig in zip(raws, contact_figs, answered_figs, strict=True):
            rest_fig = suppress_partition([raw.answered, raw.contacts - raw.answered], policy)[1]
            blocked = not (contacts_fig.shown and answered_fig.shown and rest_fig.shown)
            rate = share_figure(raw.answered, raw.contacts, policy, blocked=blocked)
            groups.append(ChannelGroup(group, contacts_fig, answered_fig, rate, raw))
        steps.append(
            ChannelStep(
                injury=injury,
                step_id=step_id,
                answered_online=online_fig,
                answered_sms=sms_fig,
                groups=tuple(groups),
                raw=ChannelRaw(
                    contacts=sum(r.contacts for _, r in raws),
                    answered=answered,
                    answered_online=answered - by_sms,
                    answered_sms=by_sms,
                ),
            )
        )
    return tuple(steps)


def _withheld(figure: Figure) -> Figure:
    """The figure hidden to protect another cell (its n too), as ``needlecare.outcomes.report_protect`` seals one."""
    if not figure.shown:
        return figure.model_copy(update={"n_shown": None, "n_display": figure.display})
    return seal(figure, "value")


def withhold_hidden_totals(steps: tuple[ChannelStep, ...], rows: Sequence[StepRow]) -> tuple[ChannelStep, ...]:
    """Where a time point's answered (or due) count is hidden, hide the channel counts that add up to it, and the
    rates built on them: shown beside it, a split such as "14 online, 0 by SMS" would print the hidden total."""
    hidden_answered = {(r.injury, r.step_id) for r in rows if not r.contacts_answered.shown}
    hidden_due = {(r.injury, r.step_id) for r in rows if not r.contacts_due.shown}
    result = []
    for step in steps:
        key = (step.injury, step.step_id)
        answered, due = key in hidden_answered, key in hidden_due
        if not (answered or due):
            result.append(step)
            continue
        groups = tuple(
            replace(
                g,
                contacts=_withheld(g.contacts) if due else g.contacts,
                answered=_withheld(g.answered) if answered else g.answered,
                response_rate=_withheld(g.response_rate),
            )
            for g in step.groups
        )
        online = _withheld(step.answered_online) if answered else step.answered_online
        sms = _withheld(step.answered_sms) if answered else step.answered_sms
        result.append(replace(step, answered_online=online, answered_sms=sms, groups=groups))
    return tuple(result)


def compute_channels(db: Session, f: Filters, policy: ReportPolicy) -> tuple[ChannelStep, ...]:
    """Response by channel for one report's filters (one statement)."""
    connection = db.connection()
    return channel_steps(connection.execute(channel_stmt(f)).all(), policy)


# ----------------------------------------------------------------------------------------------- equations

ChannelReport = tuple[OutcomeReport, tuple[TrajectoryPoint, ...], tuple[ChannelStep, ...]]
CHANNELS = 2
"""Where the channel figures sit in a :data:`ChannelReport`: the paths of :func:`channel_cells` start with it."""


def _count(model: Model, path: tuple[Any, ...], figure: Figure, key: str, value: int) -> str:
    model.cell(key, value)
    model.figure(path, figure, (key,), key)
    return key


def channel_cells(root: ChannelReport, policy: ReportPolicy) -> Model:
    """The report's equations (``needlecare.outcomes.report_cells``) plus the channel figures': per time point,
    answered = online + SMS reply, due = the groups' contacts, answered = the groups' answers, and per group
    contacts = answered + not answered (the last never printed)."""
    outcomes, points, channels = root
    model = build_cells((outcomes, points), policy)
    for i, step in enumerate(channels):
        k, raw, p = f"{step.injury}/{step.step_id}", step.raw, (CHANNELS, i)
        due, answered = f"{k}.due", f"{k}.answered"
        if due not in model.values:  # every due contact has a step row; kept for a report computed apart
            model.cell(due, raw.contacts)
            model.cell(answered, raw.answered)
        online_key = f"{k}.answered.online"
        online = _count(model, (*p, "answered_online"), step.answered_online, online_key, raw.answered_online)
        sms = _count(model, (*p, "answered_sms"), step.answered_sms, f"{k}.answered.sms", raw.answered_sms)
        model.relate(answered, online, sms)
        contacts_keys, answered_keys = [], []
        for j, g in enumerate(step.groups):
            gk, gp = f"{k}.channel.{g.group}", (*p, "groups", j)
            g_due = _count(model, (*gp, "contacts"), g.contacts, f"{gk}.due", g.raw.contacts)
            g_answered = _count(model, (*gp, "answered"), g.answered, f"{gk}.answered", g.raw.answered)
            rest = model.cell(f"{gk}.rest", g.raw.contacts - g.raw.answered)
            model.relate(g_due, g_answered, rest)
            model.figure((*gp, "response_rate"), g.response_rate, (g_answered, g_due), g_due)
            contacts_keys.append(g_due)
            answered_keys.append(g_answered)
        if contacts_keys:
            model.relate(due, *contacts_keys)
            model.relate(answered, *answered_keys)
    return model
