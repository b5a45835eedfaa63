"""The demo's clinic: a clinic of its own, separate from the one ``make run`` serves (``riverside-physio``), created
by the demo with a development-only staff login; the refusals (production, a clinic the demo did not create); and
the session-completed body its system sends for a synthetic session."""

from typing import Any

from sqlmodel import Session, select

from models import AuditEvent, Clinic, ClinicCreate, StaffUser
from needlecare.core.settings import Settings
from needlecare.demo.cohort import (
    SyntheticPatient,
    SyntheticSession,
    practitioner_email,
    practitioner_external_id,
    practitioner_name,
)
from needlecare.demo.defaults import DEMO_HISTORY_CLINIC_ID as DEMO_HISTORY_CLINIC_ID
from needlecare.demo.figures import CLINIC_TZ
from needlecare.intake.clinics import add_clinic
from needlecare.intake.sample import DEMO_CLINIC_ID, ensure_demo_clinic
from needlecare.staff.auth import create_user, find_user

ACTOR = "demo"
DEMO_STAFF_PASSWORD = "needlecare-demo-only"  # development databases only: the demo refuses production


class DemoRefused(RuntimeError):
    """The demo will not run here (a production database, or a clinic the demo did not create)."""


def demo_staff_email(clinic_id: str) -> str:
    """The development-only staff login the demo creates for its clinic (``lead@demo-clinic.example``)."""
    return f"lead@{clinic_id}.example"


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
            "phone": patient.phone,
            "timezone": patient.timezone,
            "consent": {"email": patient.consent_email, "sms": patient.consent_sms},
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


def created_by_demo(db: Session, clinic_id: str) -> bool:
    """Whether the demo created this clinic (its ``clinic.added`` audit row names the demo as actor)."""
    return (
        db.exec(
            select(AuditEvent.id).where(
                AuditEvent.action == "clinic.added",
                AuditEvent.entity == "clinic",
                AuditEvent.entity_id == clinic_id,
                AuditEvent.actor == ACTOR,
            )
        ).first()
        is not None
    )


def ensure_clinic(db: Session, clinic_id: str, settings: Settings) -> bool:
    """For the benchmarks' ``bulk_load``: create the clinic if it is missing (``riverside-physio`` exactly as
    ``make run`` creates it); True if created. ``run_demo`` uses :func:`own_clinic` instead."""
    if db.get(Clinic, clinic_id) is not None:
        return False
    if clinic_id == DEMO_CLINIC_ID:
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


def own_clinic(db: Session, clinic_id: str, settings: Settings) -> bool:
    """The demo's own clinic, created if missing; True if created. Refuses (``DemoRefused``) a clinic that exists
    but was not created by the demo: the demo never writes into a clinic the live stack serves."""
    if settings.env == "production":
        raise DemoRefused("the demo writes synthetic patients; it does not run with NEEDLECARE_ENV=production")
    if db.get(Clinic, clinic_id) is not None:
        if not created_by_demo(db, clinic_id):
            raise DemoRefused(
                f"clinic '{clinic_id}' was not created by the demo; the demo writes only into a clinic of its own "
                "(choose another --clinic, e.g. the default demo-clinic)"
            )
        return False
    add_clinic(
        db,
        ClinicCreate(
            id=clinic_id,
            name="Demo Running Clinic" if clinic_id == DEMO_HISTORY_CLINIC_ID else f"Demo clinic {clinic_id}",
            email=f"front-desk@{clinic_id}.example",
            phone="+15550100300",
            timezone=CLINIC_TZ,
        ),
        actor=ACTOR,
    )
    return True


def ensure_staff(db: Session, clinic_id: str) -> StaffUser:
    """The demo clinic's development-only staff login (it resolves the demo's cases); created when missing."""
    email = demo_staff_email(clinic_id)
    user = find_user(db, email)
    if user is not None and user.clinic_id == clinic_id:
        return user
    if user is not None:
        raise DemoRefused(f"the demo's staff login {email} belongs to another clinic")
    return create_user(db, clinic_id, email, "Demo Clinic Lead", DEMO_STAFF_PASSWORD, actor=ACTOR)
