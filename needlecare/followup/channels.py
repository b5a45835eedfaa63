"""Which channel a patient message can go by now: consent, address and opt-out per channel, and the route.

Email needs ``consent_email``, an email address and no ``opted_out_at``. SMS needs ``consent_sms``, a phone
number, no ``sms_opted_out_at`` (the patient replied STOP), no ``opted_out_at`` (the unsubscribe link stops
every message, by any channel) and an SMS route (the clinic's own ``sms_url``, else the installation's
``resolved_patient_sms_url``). A step lists its channels in order of preference (``Step.channels`` for the
first message, ``Step.reminder_channels`` for reminders); the first usable one is used.
"""

from dataclasses import dataclass

from models import Clinic, Patient
from needlecare.core.settings import Settings
from needlecare.followup.protocol_schema import Step

EMAIL, SMS = "email", "sms"
OPTED_OUT = "patient opted out"
NO_SMS_ROUTE = "no SMS route configured"


@dataclass(frozen=True)
class Choice:
    """The channel to use (None: none is usable, ``reason`` says why for each channel tried)."""

    channel: str | None
    reason: str = ""


def sms_route(clinic: Clinic | None, settings: Settings) -> str | None:
    """The Apprise URL (without the recipient) texts to this clinic's patients go through; None: no SMS."""
    if clinic is not None and clinic.sms_url:
        return clinic.sms_url
    return settings.resolved_patient_sms_url


def refusal(channel: str, patient: Patient, *, route: str | None, ignore_opt_out: bool = False) -> str | None:
    """Why ``channel`` cannot be used for ``patient`` now, or None when it can. ``ignore_opt_out`` (the answer
    to a STOP or HELP text only) lets an SMS go after either opt-out."""
    if channel == EMAIL:
        if patient.opted_out_at is not None:
            return OPTED_OUT
        if not patient.consent_email:
            return "no consent to email"
        if not patient.email:
            return "no email address on file"
        return None
    if not ignore_opt_out and patient.opted_out_at is not None:
        return OPTED_OUT
    if not patient.consent_sms and not ignore_opt_out:
        return "no consent to SMS"
    if not patient.phone:
        return "no phone number on file"
    if not ignore_opt_out and patient.sms_opted_out_at is not None:
        return "SMS opted out (replied STOP)"
    if route is None:
        return NO_SMS_ROUTE
    return None


def choose(channels: list[str], patient: Patient, *, route: str | None) -> Choice:
    """The first of ``channels`` usable now, or why none is (one reason per channel, in order)."""
    reasons: list[str] = []
    for channel in channels:
        why = refusal(channel, patient, route=route)
        if why is None:
            return Choice(channel)
        if why not in reasons:
            reasons.append(why)
    return Choice(None, "; ".join(reasons) or "no channel allowed for this message")


def for_message(step: Step, sequence: int) -> list[str]:
    """The channels a check-in's first message (sequence 0) or reminder (1, 2, ...) may go by, in order."""
    return list(step.channels if sequence == 0 else step.reminder_channels)
