"""What goes into the aftercare notice for one session: a template context, IDs in, words out."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from models import Clinic, Patient, TreatmentSession
from needlecare.core.catalogue import Catalogue

TEMPLATE = "aftercare"


@dataclass(frozen=True)
class AftercareInputs:
    clinic: Clinic
    patient: Patient
    session: TreatmentSession


def context(inputs: AftercareInputs, catalogue: Catalogue, *, now: datetime, base_url: str) -> dict[str, Any]:
    clinic, patient, session = inputs.clinic, inputs.patient, inputs.session
    local = session.completed_at.astimezone(ZoneInfo(patient.timezone))
    regions = [catalogue.regions[r].name for r in session.regions_needled if r in catalogue.regions]
    return {
        "first_name": patient.first_name,
        "clinic": {"name": clinic.name, "phone": clinic.phone, "email": clinic.email},
        "injury_name": catalogue.injuries[session.injury].name if session.injury in catalogue.injuries else "",
        "regions": regions,
        "trunk_warning": catalogue.is_trunk(session.regions_needled),
        "session_day": f"{local:%A} {local.day} {local:%B}",
        "base_url": base_url.rstrip("/"),
        "sent_year": now.year,
    }
