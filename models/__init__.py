"""SQLModel tables and their schemas. Nothing here imports Prefect, FastAPI or Apprise."""

from models.audit import AuditEvent
from models.clinic import Clinic, ClinicCreate, ClinicPublic, Practitioner
from models.contact import Contact, ContactStatus
from models.episode import Episode
from models.notification import Notification, NotificationStatus
from models.patient import Patient
from models.session import SessionCompleted, SessionPublic, TreatmentSession
from models.survey import SurveyResponse

__all__ = [
    "AuditEvent",
    "Clinic",
    "ClinicCreate",
    "ClinicPublic",
    "Contact",
    "ContactStatus",
    "Episode",
    "Notification",
    "NotificationStatus",
    "Patient",
    "Practitioner",
    "SessionCompleted",
    "SessionPublic",
    "SurveyResponse",
    "TreatmentSession",
]
