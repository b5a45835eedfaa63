"""Practitioner alerts: compose and send queued ``Alert`` rows through the clinic's Apprise routes.

An alert names the tier, the rules (their practitioner messages, which hold no patient data), the SLA
deadline and a link to the case page behind the login — never the patient's name or answers.
Routing: a primary alert goes to every route tagged with its tier (``emergency``, ``same_day``,
``next_bd``); a backup alert (the SLA passed unacknowledged) to every route tagged ``backup``. A clinic
with no routes configured gets every alert at its own email address through the app's mail transport.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from models import Alert, AlertStatus, AuditEvent, CaseRule, CaseStatus, Clinic, EscalationCase
from models.base import utcnow
from needlecare.core import claims, clock
from needlecare.core.receipts import Receipt
from needlecare.core.rendering import place_time, render_email
from needlecare.core.settings import Settings
from needlecare.followup import undelivered
from needlecare.followup.delivery import AlertMessage, DeliveryError, Route, failure_outcome, send_alert
from needlecare.safety.clinic_config import TAGS, config_of, tier_tag
from needlecare.safety.rules.ruleset import get_rules

A = AlertStatus
# How a tier reads in an alert's sentences, and at the start of its subject (the emergency one in capitals).
TIER_WORDS = {"EMERGENCY": "emergency", "SAME_DAY": "same-day", "NEXT_BD": "next-business-day"}
TIER_SUBJECT_WORDS = {"EMERGENCY": "EMERGENCY", "SAME_DAY": "Same-day", "NEXT_BD": "Next-business-day"}


@dataclass
class AlertPass:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0


def routes_for(clinic: Clinic, settings: Settings) -> list[Route]:
    config = config_of(clinic.config)
    if config.alerts:
        return [Route(route.url, tuple(route.tags)) for route in config.alerts]
    base = settings.resolved_patient_email_url
    sep = "&" if "?" in base else "?"
    return [Route(f"{base}{sep}to={clinic.email}", TAGS)]


def case_url(case_id: int, settings: Settings) -> str:
    return f"{settings.public_base_url.rstrip('/')}/cases/{case_id}"


def article(words: str) -> str:
    """The article before ``words``: "an" before a vowel ("an emergency case"), else "a" ("a same-day case")."""
    return "an" if words[:1].lower() in "aeiou" else "a"


def compose(
    case: EscalationCase, alert: Alert, clinic: Clinic, db: Session, settings: Settings
) -> tuple[str, AlertMessage]:
    """Title and body of one alert: the plain-text body, carrying its HTML version for email routes
    (templates/emails/alert.*.j2). Both hold the tier, the rules' titles and practitioner messages, the
    deadline and the case link; never the patient's name, contact details or answers."""
    rule_ids = db.exec(select(CaseRule.rule_id).where(CaseRule.case_id == case.id).order_by(col(CaseRule.id))).all()
    known = {rule.id: rule for rule in get_rules().rules}
    words = TIER_WORDS.get(case.tier, case.tier.replace("_", " ").lower())
    due = f"{clock.local(case.due_at, clinic.timezone):%a %d %b %H:%M} ({place_time(clinic.timezone)})"
    backup = alert.audience == "backup"
    if backup:
        opening = f"Nobody has acknowledged this {words} case, due by {due}."
        banner = f"Overdue: {words} case, not acknowledged"
    else:
        opening = f"A patient's answers opened {article(words)} {words} case. Acknowledge by {due}."
        banner = f"{words.capitalize()} case"
    rules = [
        {"title": known[rule_id].title, "message": known[rule_id].practitioner_message}
        if rule_id in known
        else {"title": "A rule no longer in the rule set", "message": f"Rule {rule_id}: see the case page."}
        for rule_id in rule_ids
    ]
    rendered = render_email(
        "alert",
        {
            "backup": backup,
            "words": words,
            "subject_words": TIER_SUBJECT_WORDS.get(case.tier, words.capitalize()),
            "tier": case.tier,
            "banner": banner,
            "case_id": case.id,
            "clinic_name": clinic.name,
            "opening": opening,
            "rules": rules,
            "case_url": case_url(case.id or 0, settings),
        },
    )
    return rendered.subject, AlertMessage(rendered.text, html=rendered.html)


def deliver(
    db: Session, claim: claims.Claim | int, *, now: datetime, settings: Settings, clock: claims.PassClock | None = None
) -> AlertStatus:
    """Send one claimed alert, or record why not. A case alert is useful until its case is acknowledged, an
    undelivered-message alert for a week: a transient failure is retried (capped, jittered backoff) until then."""
    clock = clock or claims.PassClock(now)
    alert = db.get(Alert, claim if isinstance(claim, int) else claim.id)
    if alert is None or alert.status != A.SENDING:
        return A(alert.status) if alert else A.FAILED
    if isinstance(claim, int):
        claim = claims.Claim(claim, alert.claim_token or "")
    receipt = claims.receipt(db, Alert, alert, settings.resolved_receipts_dir)
    accepted_at = receipt.accepted_at()
    if accepted_at is not None:  # the last sender stopped after its routes took it, before recording that
        return _record_sent(db, alert, claim, receipt, claims.FROM_RECEIPT, claims.receipt_values(alert, accepted_at))
    clinic = db.get(Clinic, alert.clinic_id)
    useful_until = None  # a case alert is useful while its case is open
    if alert.audience == undelivered.AUDIENCE:
        if clinic is None:
            return _finish(db, alert, claim, A.FAILED, error="clinic row is missing")
        title, body = undelivered.compose(db, alert, clinic, settings)
        tag, useful_until = "backup", alert.created_at + undelivered.USEFUL_FOR
    else:
        case = db.get(EscalationCase, alert.case_id) if alert.case_id is not None else None
        if case is None or clinic is None:
            return _finish(db, alert, claim, A.FAILED, error="case or clinic row is missing")
        if case.status != CaseStatus.OPEN.value:
            return _finish(db, alert, claim, A.SKIPPED, skip_reason=f"case {case.status} before the alert went out")
        title, body = compose(case, alert, clinic, db, settings)
        tag = "backup" if alert.audience == "backup" else tier_tag(alert.tier)
    if not claims.begin_send(db, Alert, claim, now=clock.now()):
        return A.SENDING  # another sender holds it now
    error: str | None = None
    with claims.held(db.get_bind(), Alert, claim, clock=clock, lease_seconds=settings.claim_lease_seconds):
        try:
            send_alert(
                routes_for(clinic, settings), tag, title, body, timeout_seconds=settings.delivery_timeout_seconds
            )
        except DeliveryError as exc:
            final, reason, values = failure_outcome(
                exc,
                attempts=alert.attempts,
                ambiguous_attempts=alert.ambiguous_attempts,
                now=clock.now(),
                useful_until=useful_until,
                settings=settings,
            )
            status, error, fields = (A.FAILED if final else A.RETRY), reason, values
        else:
            sent_at = clock.now()
            receipt.write(sent_at)
            status, fields = A.SENT, {"sent_at": sent_at}
        # The lease is still renewed while the outcome is written, through a database outage if need be.
        if status == A.SENT:
            return _record_sent(db, alert, claim, receipt, None, fields)
        return claims.persist(db, lambda: _finish(db, alert, claim, status, error=error, fields=fields))


def _record_sent(
    db: Session, alert: Alert, claim: claims.Claim, receipt: Receipt, note: str | None, fields: dict[str, object]
) -> AlertStatus:
    """Record the alert sent; its receipt goes once that is committed by this caller (a caller that lost the
    claim leaves it for the row's new holder, which records it instead of sending again)."""
    status = claims.persist(db, lambda: _finish(db, alert, claim, A.SENT, error=note, fields=fields))
    if status == A.SENT:
        receipt.remove()
    return status


def _finish(
    db: Session,
    alert: Alert,
    claim: claims.Claim,
    status: AlertStatus,
    *,
    error: str | None = None,
    skip_reason: str | None = None,
    fields: dict[str, object] | None = None,
) -> AlertStatus:
    """Record the outcome if this caller still holds the claim (else nothing, and ``sending`` is returned)."""
    values = {**(fields or {}), "status": status.value, "skip_reason": skip_reason}
    if error:
        values["last_error"] = error[:2000]
    if alert in db:
        db.expunge(alert)  # the row is written by the conditional UPDATE below only
    if not claims.release(db, Alert, claim, values):
        db.rollback()
        return A.SENDING
    if status == A.FAILED:
        undelivered.queue_for_alert(db, alert, now=utcnow())
    if status != A.RETRY:
        db.add(
            AuditEvent(
                actor="alerts",
                action=f"alert.{status.value}",
                entity="escalation_case",
                entity_id=str(alert.case_id),
                detail={"alert_id": alert.id, "audience": alert.audience, "reason": skip_reason or error},
            )
        )
    db.commit()
    return status


def send_due(db: Session, *, now: datetime, settings: Settings, batch: int = 100) -> AlertPass:
    """Send every alert that is due, batch by batch."""
    clock = claims.PassClock(now)
    ids, statuses = claims.drain(
        db,
        Alert,
        lambda claim: deliver(db, claim, now=now, settings=settings, clock=clock).value,
        now=now,
        batch=min(batch, settings.claim_batch),
        lease_seconds=settings.claim_lease_seconds,
    )
    return AlertPass(
        claimed=len(ids),
        sent=statuses[A.SENT.value],
        retried=statuses[A.RETRY.value],
        failed=statuses[A.FAILED.value],
        skipped=statuses[A.SKIPPED.value],
    )
