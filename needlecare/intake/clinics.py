"""Registering clinics, the secrets that sign their events, and rotating those secrets without downtime.

A clinic has one primary webhook secret and, while a rotation is in progress, the previous one: events signed
with either are accepted, so the clinic's system can switch over whenever it is ready. The rotation ends with
``finish_rotation`` (or at the time set when it began); from then on only the primary is accepted.
"""

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models import AuditEvent, Clinic, ClinicCreate
from needlecare.core.settings import Settings
from needlecare.core.signing import new_webhook_secret

log = logging.getLogger("needlecare.intake.clinics")


class ClinicExists(ValueError):
    pass


class RotationError(ValueError):
    """A rotation that cannot start or finish as asked (unknown clinic, one already in progress, none to finish)."""


def add_clinic(db: Session, data: ClinicCreate, *, actor: str, secret: str | None = None) -> tuple[Clinic, str]:
    """Create a clinic; returns it with its webhook secret (shown once to the operator).

    A new clinic accepts only the timestamped signature (``t=…,v1=…``), never the deprecated ``sha256=``."""
    if db.get(Clinic, data.id) is not None:
        raise ClinicExists(f"clinic '{data.id}' already exists")
    secret = secret or new_webhook_secret()
    clinic = Clinic(**data.model_dump(), webhook_secret=secret, webhook_legacy_signatures=False)
    db.add(clinic)
    db.add(AuditEvent(actor=actor, action="clinic.added", entity="clinic", entity_id=data.id))
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise ClinicExists(f"clinic '{data.id}' already exists") from None
    return clinic, secret


def webhook_secret(clinic: Clinic, settings: Settings) -> str:
    """The primary secret: one from settings (e.g. a secrets manager) wins over the one in the database."""
    override = settings.webhook_secrets.get(clinic.id)
    return override.get_secret_value() if override else clinic.webhook_secret


def active_webhook_secrets(clinic: Clinic, settings: Settings, now: datetime) -> list[str]:
    """Every secret an event from ``clinic`` may be signed with at ``now``: the primary, then the previous one while
    its rotation lasts. A secret from settings replaces the database's (rotate it in the secrets manager)."""
    override = settings.webhook_secrets.get(clinic.id)
    if override:
        return [override.get_secret_value()]
    found = [clinic.webhook_secret]
    previous, until = clinic.webhook_secret_previous, clinic.webhook_secret_previous_until
    if previous and (until is None or now < until):
        found.append(previous)
    return found


@dataclass(frozen=True)
class Rotation:
    clinic_id: str
    new_secret: str
    previous_valid_until: datetime | None  # None: until finish_rotation


def rotate_secret(
    db: Session, clinic_id: str, *, actor: str, now: datetime, previous_valid_until: datetime | None = None
) -> Rotation:
    """Make a new primary secret; the current one stays valid until ``previous_valid_until`` or
    :func:`finish_rotation`. Refused while an earlier rotation is still in progress (its old secret would be
    dropped without warning)."""
    clinic = db.get(Clinic, clinic_id)
    if clinic is None:
        raise RotationError(f"no clinic '{clinic_id}'; see `needlecare clinic list`")
    if previous_valid_until is not None and previous_valid_until <= now:
        raise RotationError("the old secret's end must be in the future")
    until = clinic.webhook_secret_previous_until
    if clinic.webhook_secret_previous and (until is None or now < until):
        raise RotationError(
            f"clinic '{clinic_id}' is still rotating its secret (the previous one is accepted "
            f"{'until ' + until.isoformat() if until else 'until finished'}); finish that first with "
            f"`needlecare clinic rotate-secret {clinic_id} --finish`"
        )
    new = new_webhook_secret()
    clinic.webhook_secret_previous = clinic.webhook_secret
    clinic.webhook_secret_previous_until = previous_valid_until
    clinic.webhook_secret = new
    db.add(clinic)
    db.add(AuditEvent(actor=actor, action="clinic.secret_rotated", entity="clinic", entity_id=clinic_id))
    db.commit()
    return Rotation(clinic_id, new, previous_valid_until)


def finish_rotation(db: Session, clinic_id: str, *, actor: str) -> None:
    """Stop accepting the previous secret: only the primary signs events from now on."""
    clinic = db.get(Clinic, clinic_id)
    if clinic is None:
        raise RotationError(f"no clinic '{clinic_id}'; see `needlecare clinic list`")
    if not clinic.webhook_secret_previous:
        raise RotationError(f"clinic '{clinic_id}' has no rotation in progress")
    clinic.webhook_secret_previous = None
    clinic.webhook_secret_previous_until = None
    db.add(clinic)
    db.add(AuditEvent(actor=actor, action="clinic.secret_rotation_finished", entity="clinic", entity_id=clinic_id))
    db.commit()


_warned: set[str] = set()
_warned_lock = threading.Lock()


def note_legacy_signature(clinic_id: str) -> bool:
    """Log, once per clinic and process, that it still signs with the deprecated ``sha256=`` header.
    Returns True when this call logged."""
    with _warned_lock:
        if clinic_id in _warned:
            return False
        _warned.add(clinic_id)
    log.warning(
        "clinic %s signs events with the deprecated untimed 'sha256=' X-Needlecare-Signature; switch its "
        "integration to 't=<unix time>,v1=<hex>' (see README, Security)",
        clinic_id,
    )
    return True


def set_sms_route(
    db: Session, clinic_id: str, *, region: str | None, sms_url: str | None, clear_url: bool, actor: str
) -> Clinic:
    """Store a clinic's phone region and/or its own SMS route (the URL holds credentials: the audit row says
    only that it changed). ``region`` or ``sms_url`` None leaves that value as it is; ``clear_url`` removes the
    clinic's route, so the installation's NEEDLECARE_PATIENT_SMS_URL is used again."""
    clinic = db.get(Clinic, clinic_id)
    if clinic is None:
        raise LookupError(f"no clinic '{clinic_id}'")
    changed: list[str] = []
    if region is not None:
        ClinicCreate.model_validate(
            {**clinic.model_dump(include={"id", "name", "email", "timezone"}), "region": region}
        )
        clinic.region = region
        changed.append("region")
    if clear_url:
        clinic.sms_url = None
        changed.append("sms_url cleared")
    elif sms_url is not None:
        clinic.sms_url = sms_url
        changed.append("sms_url")
    db.add(clinic)
    db.add(
        AuditEvent(
            actor=actor,
            action="clinic.sms_configured",
            entity="clinic",
            entity_id=clinic_id,
            detail={"changed": changed},
        )
    )
    db.commit()
    return clinic
