"""Survey links: the form (GET/POST /s/{token}) and the JSON answers API for apps and SMS gateways.

Both validate with ``needlecare.followup.questions``, store through ``needlecare.surveys.responses`` and show the
advice of the escalation rules (``needlecare.safety.advice``) in the same response (domain.md §6). A form refused
for errors elsewhere that ticks a red flag has its red-flag part stored (``record_partial``: a partial answer, its
rule evaluation and any case and alert), and the advice shown is that stored evaluation's; the rest of the form is
shown again to complete. A ticked red flag on a used or closed link shows its advice without storing. A form with
errors follows the GOV.UK pattern: "Error:" in the title, a summary that takes focus and links to each question, and
messages in the words of the page (``needlecare.surveys.wording``). After a stored answer that opened a case the
thank-you page says an alert is on its way to the clinic, and gives its phone. Pages for unusable links say nothing
about the patient, the clinic or the check."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlmodel import Session

from models import Clinic
from models.base import utcnow
from needlecare.core.db import get_engine
from needlecare.core.jsonin import JsonInputError, load_json
from needlecare.core.rendering import TEMPLATES_DIR, add_filters
from needlecare.core.settings import Settings
from needlecare.core.tokens import TokenExpired, TokenInvalid, read_token
from needlecare.followup.questions import (
    BRUISE_OPTIONS,
    GROC_LABELS,
    NONE_OF_THESE,
    PSFS_MAX_ACTIVITIES,
    InvalidAnswers,
    SurveyAnswers,
    lenient_answers,
    redflag_options,
    validate_answers,
)
from needlecare.safety import escalation, sla
from needlecare.safety.advice import Advice, advice_from
from needlecare.safety.clinic_config import config_of
from needlecare.safety.rules.evaluation import EvaluationInput, evaluate
from needlecare.safety.rules.ruleset import get_rules
from needlecare.surveys.responses import (
    Channel,
    Reason,
    SurveyContext,
    SurveyUnavailable,
    load_contact,
    partial_answers,
    record_answer,
    record_partial,
    survey_context,
)
from needlecare.surveys.wording import form_errors, partial_note
from needlecare.web.bodies import BodyTooLarge, read_limited
from needlecare.web.deps import DbDep, SettingsDep
from needlecare.web.ratelimit import TOO_MANY, rate_limited

router = APIRouter(tags=["surveys"])
# Own environment: patient pages echo what was typed, so escaping must not depend on file extensions
# (select_autoescape() does not treat *.html.j2 as HTML). Strict, so a missing variable is an error.
templates = Jinja2Templates(
    env=add_filters(
        Environment(loader=FileSystemLoader(str(TEMPLATES_DIR / "web")), autoescape=True, undefined=StrictUndefined)
    )
)
MAX_BODY_BYTES = 64 * 1024
PSFS_NEW_ROWS = 3

STATUS: dict[Reason, int] = {"invalid": 404, "expired": 410, "closed": 410, "answered": 409}
DETAIL: dict[Reason, str] = {
    "invalid": "unknown or invalid survey link",
    "expired": "this survey link has expired",
    "closed": "this check-in is closed and no longer takes answers",
    "answered": "answers for this check-in were already received",
}
# Patient pages may carry a first name and answers: never cached, never indexed, no referrer.
NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class _Outcome:
    """What to answer, for the page and the API alike."""

    status: int
    reason: Reason | None = None
    context: SurveyContext | None = None
    errors: dict[str, str] | None = None
    advice: Advice | None = None
    response_id: int | None = None
    alerted: bool = False  # the stored answer (or its red-flag part) opened a case: an alert to the clinic is queued
    partial_id: int | None = None  # the form was refused, but its red-flag part is stored in this response row


# ---- routes -------------------------------------------------------------------------------------------


@router.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
def survey_form(token: str, request: Request, settings: SettingsDep, db: DbDep) -> Response:
    try:
        context = _open(db, token, settings, utcnow())
    except SurveyUnavailable as exc:
        return _unavailable_page(request, exc.reason, None)
    return _form_page(request, context, values=_initial_values(context), errors={}, advice=None, status=200)


@router.post("/s/{token}", response_class=HTMLResponse, include_in_schema=False, dependencies=[rate_limited("survey")])
async def survey_submit(token: str, request: Request, settings: SettingsDep) -> Response:
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLarge:
        return _unavailable_page(request, "invalid", None, status=413)
    form = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=200)
    return await run_in_threadpool(_submit_form, request, token, form, settings)


_EXAMPLE_BODY = {"soreness": 3, "bruise": "small", "redflags": ["none"], "fainted": False, "free_text": "A bit stiff."}


@router.post(
    "/api/v1/surveys/{token}/answers",
    status_code=201,
    dependencies=[rate_limited("survey")],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": _EXAMPLE_BODY}},
        }
    },
    responses={
        201: {"description": "Stored. `advice` is what to show the patient now (null when nothing to act on)"},
        404: {"description": "Unknown, malformed or tampered link"},
        409: {"description": "This check-in was already answered"},
        410: {"description": "The link expired or the check-in is closed"},
        413: {"description": "Body larger than 64 KiB"},
        429: TOO_MANY,
        422: {
            "description": '`{"detail": {field: message}}`: what is allowed for each field. When a red flag is '
            'ticked, its part of the answers is stored all the same: `"partial": {"response_id": ..., "alerted": '
            "true|false}` (send the complete answers later to the same link)"
        },
    },
)
async def submit_answers(token: str, request: Request, settings: SettingsDep) -> JSONResponse:
    """Answers to one check-in, as JSON: only the fields of that check (nprs_usual, nprs_worst, soreness,
    bruise, groc15, rom, psfs, redflags, fainted, ran, run_pain, free_text).

    Error responses also carry `advice` when the body ticks a red flag: show it to the patient all the same.
    A 422 that ticks a red flag stored that part (`partial`); the link still takes the complete answers.
    """
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        return JSONResponse(status_code=413, content={"detail": str(exc)})
    outcome = await run_in_threadpool(_submit_api, token, raw, settings)
    advice = outcome.advice.as_dict() if outcome.advice else None
    if outcome.response_id is not None:
        content: dict[str, Any] = {"response_id": outcome.response_id, "advice": advice}
    elif outcome.errors is not None:
        content = {"detail": outcome.errors, "advice": advice}
        if outcome.partial_id is not None:
            content["partial"] = {"response_id": outcome.partial_id, "alerted": outcome.alerted}
    else:
        content = {"detail": DETAIL[outcome.reason or "invalid"], "advice": advice}
    return JSONResponse(status_code=outcome.status, content=content, headers=NO_STORE)


# ---- the work (in a thread: database calls block) ----------------------------------------------------


def _open(db: Session, token: str, settings: Settings, now: datetime) -> SurveyContext:
    try:
        claims = read_token(token, settings.secret_key.get_secret_value(), now)
    except TokenExpired:
        raise SurveyUnavailable("expired") from None
    except TokenInvalid:
        raise SurveyUnavailable("invalid") from None
    contact = load_contact(db, claims, now=now)
    try:
        return survey_context(db, contact)
    except KeyError:  # the contact's injury or step is no longer in its protocol pack
        raise SurveyUnavailable("closed") from None


def _answer(token: str, data: dict[str, Any], settings: Settings, *, channel: Channel) -> _Outcome:
    """Open, validate, advise, store; every refusal still carries advice for any ticked red flag."""
    now = utcnow()
    with Session(get_engine(settings.resolved_database_url), expire_on_commit=False) as db:
        try:
            context = _open(db, token, settings, now)
        except SurveyUnavailable as exc:
            return _Outcome(STATUS[exc.reason], reason=exc.reason, advice=_unsaved_advice(db, data, None, now))
        try:
            answers = validate_answers(
                data,
                protocol=context.protocol,
                step=context.step,
                regions_needled=context.regions_needled,
                previous_activities=context.previous_activities or None,
            )
        except InvalidAnswers as exc:
            return _refused(db, context, data, exc.errors, channel=channel, now=now)
        try:
            answered = record_answer(db, context.contact, answers, channel=channel, now=now)
        except SurveyUnavailable as exc:  # lost a race with another submit, or the window closed meanwhile
            return _Outcome(
                STATUS[exc.reason], reason=exc.reason, advice=_advice(db, answers, context, now, saved=False)
            )
        advice = advice_from(answered.outcome.evaluation, saved=True, clinic_open=_clinic_open(db, context, now))
        return _Outcome(
            201,
            context=context,
            advice=advice,
            response_id=answered.response.id,
            alerted=answered.outcome.case_id is not None,
        )


def _refused(
    db: Session,
    context: SurveyContext,
    data: dict[str, Any],
    errors: dict[str, str],
    *,
    channel: Channel,
    now: datetime,
) -> _Outcome:
    """Answers the validator refused: store their red-flag part when a red flag is ticked, and advise from the
    evaluation stored with it; with no red flag nothing is stored and the advice is computed as for a used link."""
    partial = partial_answers(data, context, errors)
    if partial is None:
        return _Outcome(422, context=context, errors=errors, advice=_unsaved_advice(db, data, context, now))
    try:
        stored = record_partial(db, context.contact, partial, channel=channel, now=now)
    except SurveyUnavailable as exc:  # the complete answer, or the end of the window, came first
        return _Outcome(STATUS[exc.reason], reason=exc.reason, advice=_advice(db, partial, context, now, saved=False))
    return _Outcome(
        422,
        context=context,
        errors=errors,
        advice=advice_from(stored.outcome.evaluation, saved=False, clinic_open=_clinic_open(db, context, now)),
        alerted=stored.outcome.case_id is not None,
        partial_id=stored.response.id,
    )


def _advice(
    db: Session, answers: SurveyAnswers, context: SurveyContext | None, now: datetime, *, saved: bool
) -> Advice | None:
    """Advice for answers that were not stored: the same rules, with whatever context the link gives."""
    if context is not None:
        inputs = escalation.inputs_for(db, context.contact, now, answers)
    else:
        inputs = EvaluationInput.from_answers(answers, hours_since_session=0)
    return advice_from(evaluate(get_rules(), inputs), saved=saved, clinic_open=_clinic_open(db, context, now))


def _clinic_open(db: Session, context: SurveyContext | None, now: datetime) -> bool:
    clinic = db.get(Clinic, context.clinic_id) if context is not None else None
    if clinic is None:
        return False  # no clinic to call: point to urgent care
    return sla.is_open(now, config_of(clinic.config).opening_hours, clinic.timezone)


def _unsaved_advice(db: Session, data: dict[str, Any], context: SurveyContext | None, now: datetime) -> Advice | None:
    return _advice(db, lenient_answers(data), context, now, saved=False)


def _submit_api(token: str, raw: bytes, settings: Settings) -> _Outcome:
    try:
        data = load_json(raw)
    except JsonInputError:
        data = None
    if not isinstance(data, dict):
        return _body_not_object(token, settings)
    return _answer(token, data, settings, channel="api")


def _body_not_object(token: str, settings: Settings) -> _Outcome:
    """A body that is not a JSON object: a bad link is still reported as such first."""
    with Session(get_engine(settings.resolved_database_url), expire_on_commit=False) as db:
        try:
            _open(db, token, settings, utcnow())
        except SurveyUnavailable as exc:
            return _Outcome(STATUS[exc.reason], reason=exc.reason)
    return _Outcome(422, errors={"body": 'must be a JSON object of answers, e.g. {"soreness": 3, ...}'})


def _submit_form(request: Request, token: str, form: dict[str, list[str]], settings: Settings) -> Response:
    values = {key: items[0] for key, items in form.items() if items and key != "redflags"}
    values_redflags = [flag for flag in form.get("redflags", []) if flag]
    data = _form_data(form)
    outcome = _answer(token, data, settings, channel="web")
    if outcome.response_id is not None:
        return _thanks_page(request, outcome)
    context = outcome.context
    if outcome.errors is not None and context is not None:
        kept: dict[str, Any] = {**values, "redflags": values_redflags}
        errors = form_errors(
            outcome.errors,
            {**values, "redflags": values_redflags, "psfs": data.get("psfs") or []},
            protocol=context.protocol,
            step=context.step,
            previous_activities=context.previous_activities,
        )
        note = partial_note(alerted=outcome.alerted) if outcome.partial_id is not None else None
        return _form_page(request, context, values=kept, errors=errors, advice=outcome.advice, status=422, partial=note)
    return _unavailable_page(request, outcome.reason or "invalid", outcome.advice)


def _form_data(form: dict[str, list[str]]) -> dict[str, Any]:
    """Form fields → the answer shape the validator takes (the same as the JSON API's).

    Every question field is read; the validator refuses only those the step does not ask and the form
    cannot contain them. run_pain is dropped when the patient says they did not run: a radio button
    cannot be cleared without JavaScript.
    """

    def first(name: str) -> str | None:
        items = form.get(name)
        return items[0] if items else None

    data: dict[str, Any] = {}
    for name in ("nprs_usual", "nprs_worst", "soreness", "bruise", "groc15", "fainted", "ran", "free_text"):
        if first(name) is not None:
            data[name] = first(name)
    if first("run_pain") is not None and first("ran") != "no":
        data["run_pain"] = first("run_pain")
    redflags = [flag for flag in form.get("redflags", []) if flag]
    if redflags:
        data["redflags"] = redflags
    rom_value, rom_measure = first("rom_value"), first("rom_measure")
    if rom_value is not None and rom_value.strip():
        data["rom"] = {"measure": rom_measure or "", "value": rom_value}
    rows = []
    for index in range(PSFS_MAX_ACTIVITIES):
        activity, score = first(f"psfs_activity_{index}") or "", first(f"psfs_score_{index}") or ""
        if activity.strip() or score.strip():
            rows.append({"activity": activity, "score": score})
    if rows:
        data["psfs"] = rows
    return data


# ---- pages --------------------------------------------------------------------------------------------


def _initial_values(context: SurveyContext) -> dict[str, Any]:
    values: dict[str, Any] = {"redflags": []}
    for index, activity in enumerate(context.previous_activities[:PSFS_MAX_ACTIVITIES]):
        values[f"psfs_activity_{index}"] = activity
    return values


def _form_page(
    request: Request,
    context: SurveyContext,
    *,
    values: dict[str, Any],
    errors: dict[str, str],
    advice: Advice | None,
    status: int,
    partial: str | None = None,
) -> Response:
    previous = context.previous_activities[:PSFS_MAX_ACTIVITIES]
    rows = len(previous) or PSFS_NEW_ROWS
    page = {
        "step": context.step,
        "questions": list(context.step.questions),
        "first_name": context.first_name,
        "rom_test": context.protocol.rom_test,
        "redflag_options": redflag_options(context.contact.injury, context.regions_needled),
        "none_of_these": NONE_OF_THESE,
        "trunk_needled": context.trunk_needled,
        "bruise_options": BRUISE_OPTIONS,
        "groc_labels": GROC_LABELS,
        "psfs_rows": list(range(rows)),
        "psfs_fixed": bool(previous),
        "values": values,
        "errors": errors,
        "advice": advice,
        "partial_note": partial,
        "clinic_phone": context.clinic_phone,
        "emergency_number": context.emergency_number,
        "action": request.url.path,
    }
    return templates.TemplateResponse(request, "survey.html.j2", page, status_code=status, headers=NO_STORE)


def _thanks_page(request: Request, outcome: _Outcome) -> Response:
    context = outcome.context
    page = {
        "advice": outcome.advice,
        "alerted": outcome.alerted,
        "clinic_phone": context.clinic_phone if context and outcome.advice else None,
        "emergency_number": context.emergency_number if context else None,
    }
    return templates.TemplateResponse(request, "survey_thanks.html.j2", page, status_code=200, headers=NO_STORE)


def _unavailable_page(
    request: Request, reason: Reason, advice: Advice | None, *, status: int | None = None
) -> Response:
    page = {"reason": reason, "advice": advice}
    return templates.TemplateResponse(
        request, "survey_unavailable.html.j2", page, status_code=status or STATUS[reason], headers=NO_STORE
    )
