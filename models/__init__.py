"""SQLModel tables and their schemas. Nothing here imports Prefect, FastAPI or Apprise."""

from models.audit import AuditEvent
from models.clinic import Clinic, ClinicCreate, ClinicPublic, Practitioner
from models.notification import Notification, NotificationStatus
from models.patient import Patient
from models.session import SessionCompleted, SessionPublic, TreatmentSession

__all__ = [
    "AuditEvent",
    "Clinic",
    "ClinicCreate",
    "ClinicPublic",
    "Notification",
    "NotificationStatus",
    "Patient",
    "Practitioner",
    "SessionCompleted",
    "SessionPublic",
    "TreatmentSession",
]
