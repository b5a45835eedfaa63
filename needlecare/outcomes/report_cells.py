"""The cells of an outcome report and the relations between them, as :func:`needlecare.outcomes.report_protect.protect`
needs them: every count the report holds (shown or not, plus the ones it only implies, such as "not
responders" or "sessions due a check but not checked"), which figure gives each back, and how they add up.

What a figure gives back (the equations an attacker can use):

- a shown count gives itself; any figure gives back the n it prints (``n_shown``);
- a share per 100 with its Wilson interval gives back its numerator and its denominator (the interval's width
  fixes n); so does "lost to follow-up" (100 minus a share);
- a rate per 100 sessions gives back the sessions from its count, and the count from the sessions;
- a mean with its SD and t-interval gives back its n, and so does a mean printed at full precision (its
  denominator); a median, quartile or Kaplan-Meier median only through the n it prints.

Relations: due = answered + not answered (contacts, patients, episodes, checked sessions), paired = responders +
not responders, checked sessions = with the event + without it, recovery: followed = events + censored,
escalations = acknowledged + not yet; and "at most" links (``Model.slack``): paired answers and the answers
behind a mean at a time point <= answered, patients <= answers, answered patients <= answered contacts,
sessions due a check <= sessions.
"""

from typing import Any

from needlecare.outcomes.report_protect import Model, Path, Report
from needlecare.outcomes.results import ChangeStats
from needlecare.safety.clinic_config import ReportPolicy


def _slack(model: Model, total: str, part: str) -> None:
    if model.values[total] >= model.values[part]:
        model.slack(total, part)


def _split(model: Model, total: str, part: str, rest_key: str, rest_value: int, *, sensitive: bool = True) -> str:
    rest = model.cell(rest_key, rest_value, sensitive=sensitive)
    if rest_value >= 0:
        model.relate(total, part, rest)
    return rest


def _change(model: Model, path: Path, change: ChangeStats, key: str, answered: str, patients_answered: str) -> None:
    n = model.cell(f"{key}.n", change.raw.n)
    model.figure((*path, "n"), change.n, (n,), n)
    patients = model.cell(f"{key}.patients", change.raw.patients)
    model.figure((*path, "patients"), change.patients, (patients,), patients)
    _slack(model, answered, n)
    _slack(model, patients_answered, patients)
    _slack(model, n, patients)
    for name in ("mean", "sd"):
        model.figure((*path, name), getattr(change, name), (n,), n)
    for name in ("median", "q1", "q3"):
        model.figure((*path, name), getattr(change, name), (), n)
    if change.threshold is None:
        model.figure((*path, "responders"), change.responders, (), n)
        model.figure((*path, "responder_rate"), change.responder_rate, (), n)
        return
    responders = model.cell(f"{key}.responders", change.raw.responders)
    model.figure((*path, "responders"), change.responders, (responders,), responders)
    _split(model, n, responders, f"{key}.not_responders", change.raw.n - change.raw.responders)
    model.figure((*path, "responder_rate"), change.responder_rate, (responders, n), n)


def _count(model: Model, path: Path, figure: Any, key: str, value: int) -> str:
    model.cell(key, value)
    model.figure(path, figure, (key,), key)
    return key


def build_cells(root: Report, policy: ReportPolicy) -> Model:
    """The model of one report (``(OutcomeReport, trajectory)``), paths rooted at that pair."""
    outcomes, points = root
    m = Model()

    h, hp = outcomes.headline, (0, "headline")
    h_due = _count(m, (*hp, "patients_due"), h.patients_due, "headline.due", h.raw.patients_due)
    h_answered = _count(
        m, (*hp, "patients_answered"), h.patients_answered, "headline.answered", h.raw.patients_answered
    )
    _split(m, h_due, h_answered, "headline.not_answered", h.raw.patients_due - h.raw.patients_answered)
    m.figure((*hp, "response_rate"), h.response_rate, (h_answered, h_due), h_due)
    h_n = _count(m, (*hp, "n"), h.n, "headline.n", h.raw.paired)
    h_resp = _count(m, (*hp, "responders"), h.responders, "headline.responders", h.raw.responders)
    _split(m, h_n, h_resp, "headline.not_responders", h.raw.paired - h.raw.responders)
    m.figure((*hp, "responder_rate"), h.responder_rate, (h_resp, h_n), h_n)
    _slack(m, h_answered, h_n)

    answered_at: dict[tuple[str, str], tuple[str, str]] = {}
    for i, row in enumerate(outcomes.rows):
        p, k, raw = (0, "rows", i), f"{row.injury}/{row.step_id}", row.raw
        due = _count(m, (*p, "contacts_due"), row.contacts_due, f"{k}.due", raw.contacts_due)
        answered = _count(m, (*p, "contacts_answered"), row.contacts_answered, f"{k}.answered", raw.contacts_answered)
        rest = raw.contacts_due - raw.contacts_answered
        m.relate(due, answered, _count(m, (*p, "contacts_not_answered"), row.contacts_not_answered, f"{k}.rest", rest))
        for name in ("response_rate", "loss_to_follow_up"):
            m.figure((*p, name), getattr(row, name), (answered, due), due)
        p_due = _count(m, (*p, "patients_due"), row.patients_due, f"{k}.p_due", raw.patients_due)
        p_ans = _count(m, (*p, "patients_answered"), row.patients_answered, f"{k}.p_answered", raw.patients_answered)
        p_rest = raw.patients_due - raw.patients_answered
        m.relate(
            p_due, p_ans, _count(m, (*p, "patients_not_answered"), row.patients_not_answered, f"{k}.p_rest", p_rest)
        )
        m.figure((*p, "patient_response_rate"), row.patient_response_rate, (p_ans, p_due), p_due)
        _slack(m, due, p_due)
        _slack(m, answered, p_ans)
        answered_at[(row.injury, row.step_id)] = (answered, due)
        if row.pain is not None:
            _change(m, (*p, "pain"), row.pain, f"{k}.change.{row.pain.measure}", answered, p_ans)
        for j, change in enumerate(row.rom):
            _change(m, (*p, "rom", j), change, f"{k}.change.{change.measure}", answered, p_ans)

    for i, point in enumerate(points):
        key = f"{point.injury}/{point.step_id}.mean.{point.measure}"
        n = _count(m, (1, i, "n"), point.n, key, point.raw.n)
        m.figure((1, i, "mean"), point.mean, (n,), n)
        step = answered_at.get((point.injury, point.step_id))
        if step is not None and point.step_id != "baseline":
            _slack(m, step[0], n)
            m.figure((1, i, "response_rate"), point.response_rate, step, step[1])

    checked_of: dict[str, tuple[str, str]] = {}
    for i, adverse in enumerate(outcomes.adverse):
        p, k, raw_a = (0, "adverse", i), f"{adverse.injury}/adverse", adverse.raw
        sessions = _count(m, (*p, "sessions"), adverse.sessions, f"{k}.sessions", raw_a.sessions)
        checked = _count(m, (*p, "sessions_checked"), adverse.sessions_checked, f"{k}.checked", raw_a.sessions_checked)
        due_check = m.cell(f"{k}.due_check", raw_a.sessions_due_check)
        _split(m, due_check, checked, f"{k}.not_checked", raw_a.sessions_due_check - raw_a.sessions_checked)
        _slack(m, sessions, due_check)
        m.figure((*p, "check_response_rate"), adverse.check_response_rate, (checked, due_check), due_check)
        checked_of[adverse.injury] = (checked, due_check)
        for kind, event in adverse.events.items():
            count = raw_a.counts[kind]
            e = _count(m, (*p, "events", kind, "count"), event.count, f"{k}.{kind}", count)
            _split(m, checked, e, f"{k}.{kind}.without", raw_a.sessions_checked - count)
            m.figure((*p, "events", kind, "per_100_sessions"), event.per_100_sessions, (e, checked), checked)
        for sub in ("bruise_large", "bruise_spreading"):
            if "bruise_any" in adverse.events and sub in adverse.events:
                _slack(m, f"{k}.bruise_any", f"{k}.{sub}")

    for i, esc in enumerate(outcomes.escalations):
        p, k, raw_e = (0, "escalations", i), f"{esc.injury}/escalations/{esc.rule_id}", esc.raw
        count_key = _count(m, (*p, "count"), esc.count, k, raw_e.count)
        beside = checked_of.get(esc.injury)
        checked_key = beside[0] if beside else m.cell(f"{esc.injury}/adverse.checked", raw_e.sessions_checked)
        m.figure((*p, "per_100_sessions"), esc.per_100_sessions, (count_key, checked_key), checked_key)
        if beside is not None:
            m.figure((*p, "check_response_rate"), esc.check_response_rate, beside, beside[1])
        acknowledged = m.cell(f"{k}.acknowledged", raw_e.ack_seconds.n)
        m.figure((*p, "ack_median_hours"), esc.ack_median_hours, (), acknowledged)
        _split(m, count_key, acknowledged, f"{k}.open", raw_e.count - raw_e.ack_seconds.n)

    for i, rec in enumerate(outcomes.recovery):
        p, k, raw_r = (0, "recovery", i), f"{rec.injury}/recovery", rec.raw
        due = _count(m, (*p, "episodes_due"), rec.episodes_due, f"{k}.due", raw_r.episodes_due)
        followed = _count(m, (*p, "episodes_followed"), rec.episodes_followed, f"{k}.followed", raw_r.episodes_followed)
        _split(m, due, followed, f"{k}.not_followed", raw_r.episodes_due - raw_r.episodes_followed)
        m.figure((*p, "response_rate"), rec.response_rate, (followed, due), due)
        events = _count(m, (*p, "events"), rec.events, f"{k}.events", raw_r.km.total_events)
        _split(m, followed, events, f"{k}.censored", raw_r.episodes_followed - raw_r.km.total_events)
        m.figure((*p, "median_days"), rec.median_days, (), followed)
    return m
