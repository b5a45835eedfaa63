"""A sample session-completed event, as a clinic's integration would send it."""

import json
import secrets
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from models import Clinic, ClinicCreate
from models.base import utcnow
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.intake.clinics import add_clinic

DEMO_CLINIC_ID = "riverside-physio"


# The optional bone stress injury fields (domain.md §1.3) of the contract, as a clinic would send them.
BONE_STRESS_FIELDS: dict[str, Any] = {
    "injury": "bone_stress_injury",
    "regions_needled": ["calf"],
    "muscles_needled": ["soleus"],
    "baseline": {"pain_nprs": 4},
    "bsi_site": "Front of the left shin, mid third",
    "bsi_site_code": "anterior_tibia",
    "bsi_risk_class": "high",
    "mri_grade": 2,
    "cleared_to_hop": False,
}


def sample_event(
    clinic_id: str = DEMO_CLINIC_ID, external_session_id: str | None = None, *, bone_stress: bool = False
) -> dict[str, Any]:
    """A valid body; ``bone_stress=True`` gives a bone stress injury session with the §1.3 fields."""
    event = _achilles_event(clinic_id, external_session_id)
    return {**event, **BONE_STRESS_FIELDS} if bone_stress else event


def _achilles_event(clinic_id: str, external_session_id: str | None) -> dict[str, Any]:
    completed = (utcnow() - timedelta(minutes=5)).replace(microsecond=0)
    return {
        "clinic_id": clinic_id,
        "external_session_id": external_session_id or f"S-{secrets.token_hex(4).upper()}",
        "completed_at": completed.isoformat().replace("+00:00", "Z"),
        "practitioner": {"external_id": "P-7", "name": "Dana Reyes", "email": "dana@riverside.example"},
        "patient": {
            "external_id": "PT-991",
            "first_name": "Sam",
            "last_name": "Okafor",
            "email": "sam@example.org",
            "phone": "+15551234567",
            "timezone": "America/New_York",
            "consent": {"email": True, "sms": False},
        },
        "injury": "achilles_tendinopathy",
        "side": "left",
        "regions_needled": ["calf"],
        "muscles_needled": ["gastrocnemius", "soleus"],
        "baseline": {"pain_nprs": 6, "rom": {"measure": "wblt_cm", "value": 7.5}},
    }


def sample_bytes(**kwargs: Any) -> bytes:
    return json.dumps(sample_event(**kwargs), indent=2).encode()


def ensure_demo_clinic(settings: Settings) -> str:
    """The demo clinic in the application database (created once); returns its webhook secret."""
    with Session(database.get_engine(settings.resolved_database_url)) as db:
        clinic = db.get(Clinic, DEMO_CLINIC_ID)
        if clinic is not None:
            return clinic.webhook_secret
        _, secret = add_clinic(
            db,
            ClinicCreate(
                id=DEMO_CLINIC_ID,
                name="Riverside Physio",
                email="front-desk@riverside.example",
                phone="+15550100200",
                timezone="America/New_York",
            ),
            actor="make-run",
        )
        return secret
