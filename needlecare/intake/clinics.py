"""Registering clinics and finding the secret that signs their events."""

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models import AuditEvent, Clinic, ClinicCreate
from needlecare.core.settings import Settings
from needlecare.core.signing import new_webhook_secret


class ClinicExists(ValueError):
    pass


def add_clinic(db: Session, data: ClinicCreate, *, actor: str, secret: str | None = None) -> tuple[Clinic, str]:
    """Create a clinic; returns it with its webhook secret (shown once to the operator)."""
    if db.get(Clinic, data.id) is not None:
        raise ClinicExists(f"clinic '{data.id}' already exists")
    secret = secret or new_webhook_secret()
    clinic = Clinic(**data.model_dump(), webhook_secret=secret)
    db.add(clinic)
    db.add(AuditEvent(actor=actor, action="clinic.added", entity="clinic", entity_id=data.id))
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise ClinicExists(f"clinic '{data.id}' already exists") from None
    return clinic, secret


def webhook_secret(clinic: Clinic, settings: Settings) -> str:
    """A secret from settings (e.g. a secrets manager) wins over the one in the database."""
    override = settings.webhook_secrets.get(clinic.id)
    return override.get_secret_value() if override else clinic.webhook_secret
