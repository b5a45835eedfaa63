"""FHIR Patient resources for the export, so every ``Patient/<id>`` reference of a response or observation resolves.

By default a Patient carries its id and one identifier (the internal id, in the system
:data:`PATIENT_ID_SYSTEM`) and nothing else: no name, email, phone, time zone or the clinic's own patient number.
:class:`PatientFields` adds more only when asked for (minimum necessary by default); each extra field is read
from the database only when it is asked for.
"""

from collections.abc import Iterable, Iterator
from typing import Any

from fhir.resources.R4B.patient import Patient as FhirPatient
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlmodel import Session, col

from models import Patient
from needlecare.outcomes.fhir_codes import FHIR_BASE

PATIENT_ID_SYSTEM = f"{FHIR_BASE}/NamingSystem/patient-id"
"""The system of the identifier every exported Patient carries: the internal patient id (the reference's id)."""


class PatientFields(BaseModel):
    """What an exported Patient holds beyond its id and identifier; all off by default (minimum necessary)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clinic_number: bool = False  # the clinic's own patient number (external id) as a second identifier
    name: bool = False  # first and last name
    telecom: bool = False  # email and phone


def clinic_number_system(clinic_id: str) -> str:
    """The identifier system of a clinic's own patient numbers."""
    return f"{FHIR_BASE}/NamingSystem/clinic-patient-number/{clinic_id}"


def build_patient(row: Any, fields: PatientFields) -> FhirPatient:
    """One Patient from a row with ``id`` (and ``clinic_id``, ``external_id``, names, ``email``, ``phone`` when
    ``fields`` asks for them)."""
    identifiers: list[dict[str, Any]] = [{"use": "secondary", "system": PATIENT_ID_SYSTEM, "value": str(row.id)}]
    data: dict[str, Any] = {"resourceType": "Patient", "id": str(row.id)}
    if fields.clinic_number:
        identifiers.append({"use": "usual", "system": clinic_number_system(row.clinic_id), "value": row.external_id})
    data["identifier"] = identifiers
    if fields.name:
        data["name"] = [{"family": row.last_name, "given": [row.first_name]}]
    if fields.telecom:
        telecom = []
        if row.email:
            telecom.append({"system": "email", "value": row.email})
        if row.phone:
            telecom.append({"system": "phone", "value": row.phone})
        if telecom:
            data["telecom"] = telecom
    return FhirPatient.model_validate(data)


def iter_patients(
    db: Session, patient_ids: Iterable[int], fields: PatientFields, *, batch_size: int = 500
) -> Iterator[FhirPatient]:
    """The Patients of ``patient_ids`` in id order, read in batches; only the columns ``fields`` needs are read."""
    columns: list[Any] = [col(Patient.id)]
    if fields.clinic_number:
        columns += [col(Patient.clinic_id), col(Patient.external_id)]
    if fields.name:
        columns += [col(Patient.first_name), col(Patient.last_name)]
    if fields.telecom:
        columns += [col(Patient.email), col(Patient.phone)]
    ids = sorted(set(patient_ids))
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        rows = (
            db.connection().execute(select(*columns).where(col(Patient.id).in_(chunk)).order_by(col(Patient.id))).all()
        )
        for row in rows:
            yield build_patient(row, fields)
