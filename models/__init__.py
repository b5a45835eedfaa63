"""SQLModel tables and their schemas. Nothing here imports Prefect, FastAPI or Apprise."""

from models.audit import AuditEvent
from models.clinic import Clinic, ClinicCreate, ClinicPublic, Practitioner
from models.contact import Contact, ContactStatus
from models.episode import Episode
from models.escalation import Alert, AlertStatus, CaseRule, CaseStatus, EscalationCase, RuleEvaluation
from models.notification import Notification, NotificationStatus
from models.patient import Patient
from models.ratelimit import RateBucket
from models.reporting import ReportSnapshot
from models.session import SessionCompleted, SessionPublic, TreatmentSession
from models.sms import InboundAction, SmsInbound
from models.staff import StaffUser, WebSession
from models.survey import SurveyResponse

__all__ = [
    "Alert",
    "AlertStatus",
    "AuditEvent",
    "CaseRule",
    "CaseStatus",
    "Clinic",
    "ClinicCreate",
    "ClinicPublic",
    "Contact",
    "ContactStatus",
    "Episode",
    "EscalationCase",
    "InboundAction",
    "Notification",
    "NotificationStatus",
    "Patient",
    "Practitioner",
    "RateBucket",
    "ReportSnapshot",
    "RuleEvaluation",
    "SessionCompleted",
    "SessionPublic",
    "SmsInbound",
    "StaffUser",
    "SurveyResponse",
    "TreatmentSession",
    "WebSession",
]
