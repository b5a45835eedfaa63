"""Recording a completed session: validate, store in one transaction, idempotently, then emit.

Used by the HTTP ingress and the CLI alike, so both give the same answers and the same errors. A patient's
phone number is read with the ``phonenumbers`` library and stored in E.164 form. One given with '+' must be
possible (the right length for its country code), as the E.164 check before it required: the reserved
fictional ranges (+44 7700 900xxx, +1 NPA 555 01xx) used by tests and demos stay usable. One without '+' is
read as dialled in the clinic's region (else ``settings.sms_default_region``) and must be a number in use
there, so a number read in the wrong country is refused rather than stored. A number a provider refuses
fails for good and is shown to staff on the undelivered page.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import phonenumbers
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import AuditEvent, Clinic, Patient, Practitioner, SessionCompleted, TreatmentSession
from models.base import utcnow
from needlecare.core import events
from needlecare.core.catalogue import Catalogue, get_catalogue
from needlecare.core.jsonin import JsonInputError, load_json
from needlecare.core.settings import get_settings
from needlecare.intake.bsi_sites import BsiSites, get_bsi_sites

FUTURE_TOLERANCE = timedelta(minutes=10)
OLDEST_ACCEPTED = timedelta(days=366)
BSI = "bone_stress_injury"
BSI_FIELDS = ("bsi_site", "bsi_site_code", "bsi_risk_class", "mri_grade", "cleared_to_hop")


@dataclass(frozen=True)
class Problem:
    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, Any]:
        return {"loc": ["body", *self.loc], "msg": self.msg, "type": self.type}


class InvalidSession(ValueError):
    """The body cannot be accepted; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc)) or 'body'}: {p.msg}" for p in problems))


@dataclass(frozen=True)
class Recorded:
    session_id: int
    clinic_id: str
    created: bool

    @property
    def status(self) -> str:
        return "accepted" if self.created else "duplicate"


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        data = load_json(raw)
    except JsonInputError as exc:
        raise InvalidSession([Problem((), str(exc), "json_invalid")]) from None
    if not isinstance(data, dict):
        raise InvalidSession([Problem((), "body must be a JSON object", "type_error")])
    return data


def find_clinic(db: Session, data: dict[str, Any]) -> Clinic:
    clinic_id = data.get("clinic_id")
    if not isinstance(clinic_id, str) or not clinic_id:
        raise InvalidSession([Problem(("clinic_id",), "required: the clinic's id, e.g. riverside-physio", "missing")])
    clinic = db.get(Clinic, clinic_id)
    if clinic is None:
        raise InvalidSession(
            [
                Problem(
                    ("clinic_id",),
                    f"unknown clinic '{clinic_id[:64]}'; register it with `needlecare clinic add`",
                    "unknown_clinic",
                )
            ]
        )
    return clinic


def validate(
    data: dict[str, Any], catalogue: Catalogue | None = None, *, region: str | None = None
) -> SessionCompleted:
    """Structural checks (the contract), then checks against the clinical catalogue. Unknown injuries and
    regions are reported together with any structural problem, so one answer lists everything to fix.
    ``region`` (the clinic's, e.g. "GB"; default ``settings.sms_default_region``) reads a phone number
    given without '+'; the number is returned in E.164 form."""
    catalogue = catalogue or get_catalogue()
    try:
        body = SessionCompleted.model_validate(data)
    except ValidationError as exc:
        problems = [Problem(tuple(e["loc"]), _message(e), e["type"]) for e in exc.errors()]
        seen = {p.loc for p in problems}
        names = _unknown_names(data.get("injury"), data.get("regions_needled"), catalogue)
        raise InvalidSession(problems + [p for p in names if p.loc not in seen]) from None
    problems = _unknown_names(body.injury, body.regions_needled, catalogue)
    if body.completed_at > utcnow() + FUTURE_TOLERANCE:
        problems.append(Problem(("completed_at",), "is in the future; send the time the session ended"))
    elif body.completed_at < utcnow() - OLDEST_ACCEPTED:
        problems.append(Problem(("completed_at",), "is more than a year ago; send the time the session ended"))
    rom = body.baseline.rom
    if rom is not None and body.injury in catalogue.injuries:
        allowed_measures = catalogue.injuries[body.injury].measures
        if rom.measure not in allowed_measures:
            problems.append(
                Problem(
                    ("baseline", "rom", "measure"),
                    f"'{rom.measure}' is not a ROM measure for {body.injury}; allowed: {', '.join(allowed_measures)}",
                )
            )
        else:
            m = catalogue.measures[rom.measure]
            if not m.min <= rom.value <= m.max:
                problems.append(
                    Problem(
                        ("baseline", "rom", "value"), f"{rom.value} {m.unit} is outside {m.min:g} to {m.max:g} {m.unit}"
                    )
                )
    problems += _bone_stress_problems(body, get_bsi_sites())
    phone, problem = e164_phone(body.patient.phone, region or get_settings().sms_default_region)
    if problem is not None:
        problems.append(problem)
    if problems:
        raise InvalidSession(problems)
    body.patient.phone = phone
    return body


_NOT_POSSIBLE = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "its country code is not one in use",
    phonenumbers.ValidationResult.TOO_SHORT: "it is too short for its country",
    phonenumbers.ValidationResult.TOO_LONG: "it is too long for its country",
    phonenumbers.ValidationResult.INVALID_LENGTH: "its length does not fit its country's numbers",
}


def e164_phone(value: str | None, region: str) -> tuple[str | None, Problem | None]:
    """``value`` in E.164 form (read as dialled in ``region`` when it has no '+'), or the problem with it."""
    if value is None:
        return None, None
    fix = f"send it in E.164 form ('+' then country code and number, e.g. +447700900123) or as dialled in {region}"
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None, Problem(("patient", "phone"), f"is not a phone number; {fix}")
    result = phonenumbers.is_possible_number_with_reason(number)
    if result not in (phonenumbers.ValidationResult.IS_POSSIBLE, phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        why = _NOT_POSSIBLE.get(result, "it is not a possible number")
        return None, Problem(("patient", "phone"), f"is not a possible phone number ({why}); {fix}")
    if result == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return None, Problem(("patient", "phone"), f"is too short for its country (no area code?); {fix}")
    if not value.lstrip().startswith("+") and not phonenumbers.is_valid_number(number):
        return None, Problem(("patient", "phone"), f"is not a number in use in {region}; {fix}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def _bone_stress_problems(body: SessionCompleted, sites: BsiSites) -> list[Problem]:
    """The domain.md §1.3 fields: only for a bone stress injury, a known site code, a class that agrees."""
    given = [name for name in BSI_FIELDS if getattr(body, name) is not None]
    if given and body.injury != BSI:
        return [Problem((name,), f"only for injury '{BSI}'; leave it out for {body.injury[:64]}") for name in given]
    code = body.bsi_site_code
    if code is None:
        return []
    site = sites.sites.get(code)
    if site is None:
        return [Problem(("bsi_site_code",), f"unknown site code '{code}'; allowed: {', '.join(sites.sites)}")]
    if body.bsi_risk_class is not None and body.bsi_risk_class != site.risk_class:
        return [
            Problem(
                ("bsi_risk_class",),
                f"'{body.bsi_risk_class}' contradicts bsi_site_code '{code}' ({site.name}), a {site.risk_class}-risk "
                "site; send the class that matches the site",
            )
        ]
    return []


def _unknown_names(injury: object, regions: object, catalogue: Catalogue) -> list[Problem]:
    """An injury or region (as sent: values of the wrong type are the structural check's to report) that the
    catalogue does not know."""
    problems: list[Problem] = []
    if isinstance(injury, str) and injury not in catalogue.injuries:
        allowed = ", ".join(sorted(catalogue.injuries))
        problems.append(Problem(("injury",), f"unknown injury '{injury}'; allowed: {allowed}"))
    for index, region in enumerate(regions if isinstance(regions, list) else []):
        if isinstance(region, str) and region not in catalogue.regions:
            allowed = ", ".join(catalogue.regions)
            problems.append(Problem(("regions_needled", index), f"unknown region '{region}'; allowed: {allowed}"))
    return problems


def _message(error: Any) -> str:
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def record(db: Session, body: SessionCompleted, *, actor: str) -> Recorded:
    """Store the session with its patient and practitioner in one transaction; idempotent."""
    for _attempt in range(3):
        existing = _existing(db, body)
        if existing is not None:
            return Recorded(existing, body.clinic_id, created=False)
        try:
            session_id = _insert(db, body, actor=actor)
            db.commit()
            return Recorded(session_id, body.clinic_id, created=True)
        except IntegrityError:
            # A concurrent request stored the same session (or the same new patient) first.
            db.rollback()
    existing = _existing(db, body)
    if existing is None:  # pragma: no cover - three lost races in a row
        raise RuntimeError("could not store the session after three attempts")
    return Recorded(existing, body.clinic_id, created=False)


def record_and_emit(db: Session, body: SessionCompleted, *, actor: str) -> Recorded:
    result = record(db, body, actor=actor)
    if result.created:
        events.emit(events.session_completed(result.session_id, result.clinic_id))
    return result


def _existing(db: Session, body: SessionCompleted) -> int | None:
    return db.exec(
        select(TreatmentSession.id).where(
            TreatmentSession.clinic_id == body.clinic_id,
            TreatmentSession.external_session_id == body.external_session_id,
        )
    ).first()


def _insert(db: Session, body: SessionCompleted, *, actor: str) -> int:
    now = utcnow()
    practitioner = db.exec(
        select(Practitioner).where(
            Practitioner.clinic_id == body.clinic_id,
            Practitioner.external_id == body.practitioner.external_id,
        )
    ).first() or Practitioner(clinic_id=body.clinic_id, external_id=body.practitioner.external_id, name="")
    practitioner.name = body.practitioner.name
    practitioner.email = body.practitioner.email
    db.add(practitioner)

    p = body.patient
    patient = db.exec(
        select(Patient).where(Patient.clinic_id == body.clinic_id, Patient.external_id == p.external_id)
    ).first() or Patient(clinic_id=body.clinic_id, external_id=p.external_id, first_name="", last_name="")
    patient.first_name, patient.last_name = p.first_name, p.last_name
    patient.email, patient.phone, patient.timezone = p.email, p.phone, p.timezone
    patient.consent_email, patient.consent_sms = p.consent.email, p.consent.sms
    patient.updated_at = now
    db.add(patient)
    db.flush()

    rom = body.baseline.rom
    session = TreatmentSession(
        clinic_id=body.clinic_id,
        external_session_id=body.external_session_id,
        patient_id=_id(patient.id),
        practitioner_id=_id(practitioner.id),
        completed_at=body.completed_at,
        injury=body.injury,
        side=body.side,
        regions_needled=list(body.regions_needled),
        muscles_needled=list(body.muscles_needled),
        baseline_pain_nprs=body.baseline.pain_nprs,
        baseline_rom_measure=rom.measure if rom else None,
        baseline_rom_value=rom.value if rom else None,
        bsi_site=body.bsi_site,
        bsi_site_code=body.bsi_site_code,
        bsi_risk_class=body.bsi_risk_class,
        mri_grade=body.mri_grade,
        cleared_to_hop=body.cleared_to_hop,
        received_at=now,
    )
    db.add(session)
    db.flush()
    session_id = _id(session.id)
    db.add(
        AuditEvent(
            actor=actor,
            action="session.recorded",
            entity="treatment_session",
            entity_id=str(session_id),
            detail={"patient_id": patient.id, "clinic_id": body.clinic_id},
        )
    )
    return session_id


def _id(value: int | None) -> int:
    if value is None:  # pragma: no cover - flush always assigns ids
        raise RuntimeError("row has no id after flush")
    return value
