"""The demo's clinic: the refusal to run on production, the clinic created when it is missing (the demo clinic
exactly as ``make run`` creates it), and the session-completed body its system sends for a synthetic session."""

from typing import Any

from sqlmodel import Session

from models import Clinic, ClinicCreate
from needlecare.core.settings import Settings
from needlecare.demo.cohort import (
    SyntheticPatient,
    SyntheticSession,
    practitioner_email,
    practitioner_external_id,
    practitioner_name,
)
from needlecare.demo.figures import CLINIC_TZ
from needlecare.intake.clinics import add_clinic
from needlecare.intake.sample import DEMO_CLINIC_ID

ACTOR = "demo"


class DemoRefused(RuntimeError):
    """The demo will not run here (a production database)."""


def session_event(patient: SyntheticPatient, session: SyntheticSession, clinic_id: str) -> dict[str, Any]:
    """The session-completed body a clinic's system would send for this synthetic session (README contract)."""
    return {
        "clinic_id": clinic_id,
        "external_session_id": session.external_id,
        "completed_at": session.completed_at.isoformat().replace("+00:00", "Z"),
        "practitioner": {
            "external_id": practitioner_external_id(patient.practitioner),
            "name": practitioner_name(patient.practitioner),
            "email": practitioner_email(patient.practitioner),
        },
        "patient": {
            "external_id": patient.external_id,
            "first_name": patient.first_name,
            "last_name": patient.last_name,
            "email": patient.email,
            "timezone": patient.timezone,
            "consent": {"email": patient.consent_email, "sms": False},
        },
        "injury": patient.injury,
        "side": patient.side,
        "regions_needled": list(session.regions),
        "muscles_needled": list(session.muscles),
        "baseline": {
            "pain_nprs": session.pain_nprs,
            "rom": {"measure": patient.rom_measure, "value": session.rom_value},
        },
    }


def ensure_clinic(db: Session, clinic_id: str, settings: Settings) -> bool:
    """Create the clinic if it is missing (the demo clinic exactly as ``make run`` creates it); True if created."""
    if db.get(Clinic, clinic_id) is not None:
        return False
    if clinic_id == DEMO_CLINIC_ID:
        from needlecare.intake.sample import ensure_demo_clinic

        url = db.get_bind().engine.url.render_as_string(hide_password=False)
        ensure_demo_clinic(settings.model_copy(update={"database_url": url}))
        return True
    add_clinic(
        db,
        ClinicCreate(
            id=clinic_id, name=f"Demo clinic {clinic_id}", email="front-desk@example.invalid", timezone=CLINIC_TZ
        ),
        actor=ACTOR,
    )
    return True
