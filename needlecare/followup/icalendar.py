"""The patient's follow-up calendar: iCalendar (RFC 5545 / 5546) files listing check-in times, and the record
of what each sent message put in the patient's calendar.

Each check-in is one event whose UID names the contact row and the installation's domain
(:func:`installation_domain`), so it is unique across installations and stays the same for the check-in's
life. A message that lists events records them (an ``calendar.attached`` audit event on the notification,
contact ids, times and sequence numbers only); :func:`announced` folds the records of the messages that were
sent into what the patient's calendar now shows, so a later message can move an event (same UID, higher
SEQUENCE) or cancel it (``METHOD:CANCEL``).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from models import AuditEvent, Notification, NotificationStatus
from needlecare.core.settings import Settings

_FMT = "%Y%m%dT%H%M%SZ"
ATTACHED = "calendar.attached"
FALLBACK_DOMAIN = "needlecare.local"


@dataclass(frozen=True)
class CheckDate:
    """One check-in event: ``starts_at`` is when the check-in email will be sent."""

    uid: str
    title: str
    starts_at: datetime
    sequence: int = 0


def installation_domain(settings: Settings) -> str:
    """The domain that makes event UIDs unique to this installation: the public URL's host when it is a DNS
    name, else the domain of ``mail_from``, else ``needlecare.local``."""
    host = (urlsplit(settings.public_base_url).hostname or "").lower()
    if host and host != "localhost" and "." in host and not _is_ip(host):
        return host
    domain = settings.mail_from.rpartition("@")[2].strip().lower()
    return domain or FALLBACK_DOMAIN


def _is_ip(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def event_uid(contact_key: str, domain: str) -> str:
    """``session-12-check_24h@clinic.example``: the contact's key and the installation's domain."""
    return f"{contact_key.replace(':', '-')}@{domain}"


def follow_up_calendar(checks: list[CheckDate], *, clinic_name: str, organizer: str, now: datetime) -> bytes:
    """A ``METHOD:PUBLISH`` calendar of check-ins (new ones at SEQUENCE 0, moved ones at a higher SEQUENCE)."""
    lines = _head("PUBLISH")
    for check in checks:
        lines += _event(check, clinic_name=clinic_name, organizer=organizer, now=now)
        lines += ["DESCRIPTION:We will email you a short check-in link around this time.", "END:VEVENT"]
    return _finish(lines)


def cancelled_calendar(checks: list[CheckDate], *, clinic_name: str, organizer: str, now: datetime) -> bytes:
    """A ``METHOD:CANCEL`` calendar removing check-ins that will not be sent (``starts_at``: the time shown)."""
    lines = _head("CANCEL")
    for check in checks:
        lines += _event(check, clinic_name=clinic_name, organizer=organizer, now=now)
        lines += ["STATUS:CANCELLED", "DESCRIPTION:This check-in will not be sent.", "END:VEVENT"]
    return _finish(lines)


def _head(method: str) -> list[str]:
    return [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//needlecare//follow-up//EN",
        "CALSCALE:GREGORIAN",
        f"METHOD:{method}",
    ]


def _event(check: CheckDate, *, clinic_name: str, organizer: str, now: datetime) -> list[str]:
    return [
        "BEGIN:VEVENT",
        f"UID:{check.uid}",
        f"SEQUENCE:{check.sequence}",
        f"DTSTAMP:{now.astimezone(UTC).strftime(_FMT)}",
        f"DTSTART:{check.starts_at.astimezone(UTC).strftime(_FMT)}",
        "DURATION:PT15M",
        f"ORGANIZER;CN={_param(clinic_name)}:mailto:{organizer}",
        f"SUMMARY:{_escape(check.title)} ({_escape(clinic_name)})",
        "TRANSP:TRANSPARENT",
    ]


def _finish(lines: list[str]) -> bytes:
    lines.append("END:VCALENDAR")
    return ("\r\n".join(_fold(line) for line in lines) + "\r\n").encode()


def _fold(line: str) -> str:
    """RFC 5545 §3.1: lines longer than 75 octets continue on the next line after a space."""
    out: list[str] = []
    current = ""
    for ch in line:
        limit = 75 if not out else 74
        if len((current + ch).encode()) > limit:
            out.append(current)
            current = ch
        else:
            current += ch
    out.append(current)
    return "\r\n ".join(out)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _param(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


# ---- What the patient's calendar holds -----------------------------------------------------------------


@dataclass(frozen=True)
class Announced:
    """What the patient's calendar shows for one check-in: its start (None: cancelled) and SEQUENCE."""

    starts_at: datetime | None
    sequence: int


def announced(db: Session, patient_id: int, *, excluding: int | None = None) -> dict[int, Announced]:
    """Contact id → what the patient's calendar shows, from the calendar records of this patient's sent
    messages (a later record wins), leaving out the records of notification ``excluding``."""
    sent = db.exec(
        select(Notification.id).where(
            Notification.patient_id == patient_id, Notification.status == NotificationStatus.SENT.value
        )
    ).all()
    ids = [str(i) for i in sent if i is not None and i != excluding]
    if not ids:
        return {}
    records = db.exec(
        select(AuditEvent)
        .where(AuditEvent.action == ATTACHED, AuditEvent.entity == "notification", col(AuditEvent.entity_id).in_(ids))
        .order_by(col(AuditEvent.id))
    ).all()
    shown: dict[int, Announced] = {}
    for record in records:
        for key, value in dict(record.detail.get("events", {})).items():
            start = value.get("start")
            shown[int(key)] = Announced(datetime.fromisoformat(start) if start else None, int(value["sequence"]))
    return shown


def record_attached(db: Session, notification_id: int, events: dict[int, Announced]) -> None:
    """Note (in this transaction) what a message puts in the patient's calendar; ids and times only."""
    detail = {
        str(cid): {"start": a.starts_at.astimezone(UTC).isoformat() if a.starts_at else None, "sequence": a.sequence}
        for cid, a in sorted(events.items())
    }
    db.add(
        AuditEvent(
            actor="outbox",
            action=ATTACHED,
            entity="notification",
            entity_id=str(notification_id),
            detail={"events": detail},
        )
    )
