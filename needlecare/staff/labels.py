"""Plain words for the staff pages: what each internal code (tier, time point, rule, measure, audit action,
alert status) is called on a page. Names come from the data where the data has them (protocol step titles,
rule titles, catalogue measure names and units); the few codes without a data home are mapped here, once.
"""

import re
from typing import Any

from needlecare.core.catalogue import get_catalogue
from needlecare.core.rendering import format_phone, place_time, tel_uri
from needlecare.followup.protocols import get_protocols
from needlecare.safety.rules.ruleset import get_rules

TIER_NAMES: dict[str, str] = {
    "EMERGENCY": "Emergency",
    "SAME_DAY": "Same day",
    "NEXT_BD": "Next business day",
    "INFO": "For information",
}
CASE_STATUS_NAMES: dict[str, str] = {"open": "Open", "acknowledged": "Acknowledged", "resolved": "Resolved"}
ALERT_STATUS_NAMES: dict[str, str] = {
    "pending": "Waiting to be sent",
    "sending": "Being sent",
    "retry": "Will be tried again",
    "sent": "Sent",
    "failed": "Not delivered",
    "skipped": "Not sent",
}
AUDIENCE_NAMES: dict[str, str] = {
    "primary": "On-call routes for this tier",
    "backup": "Backup routes (not acknowledged in time)",
    "undelivered": "Backup routes (a message was not delivered)",
}
UNIT_NAMES: dict[str, str] = {"deg": "degrees", "cm": "cm", "reps": "repetitions", "s": "seconds", "0-10": "0 to 10"}
CHANNEL_NAMES: dict[str, str] = {"web": "on the web page", "api": "through the clinic's system"}


def tier_name(tier: str | None) -> str:
    """ "Same day" for ``SAME_DAY``; an unknown tier is spaced out rather than shown as a code."""
    if not tier:
        return "None"
    return TIER_NAMES.get(tier, tier.replace("_", " ").capitalize())


def step_name(step_id: str) -> str:
    """The protocol's title of a follow-up step ("1-day check-in"); an unknown id is spaced out."""
    for protocol in get_protocols().values():
        for step in protocol.steps:
            if step.id == step_id:
                return step.title
    return step_id.replace("_", " ")


def rule_title(rule_id: str) -> str:
    """The rule set's title of a rule, or a plain note when the rule has left the rule set."""
    for rule in get_rules().rules:
        if rule.id == rule_id:
            return rule.title
    return "A rule no longer in the rule set"


def measure_name(measure: str) -> str:
    """ "Modified Ober test hip adduction, degrees" for ``ober_deg``, from the catalogue."""
    found = get_catalogue().measures.get(measure)
    if found is None:
        return measure.replace("_", " ")
    return f"{found.name}, {UNIT_NAMES.get(found.unit, found.unit)}"


def injury_name(slug: str) -> str:
    found = get_catalogue().injuries.get(slug)
    return found.name if found else slug.replace("_", " ")


def zone_name(tz: str) -> str:
    """ "New York time" for ``America/New_York``: the place of a time zone, as the emails say it."""
    return place_time(tz)


def side_name(side: str) -> str:
    return {"left": "Left", "right": "Right", "both": "Both sides"}.get(side, side)


def case_status_name(status: str) -> str:
    return CASE_STATUS_NAMES.get(status, status.capitalize())


def alert_status_name(status: str) -> str:
    return ALERT_STATUS_NAMES.get(status, status.capitalize())


def audience_name(audience: str) -> str:
    return AUDIENCE_NAMES.get(audience, audience.capitalize())


def channel_name(channel: str) -> str:
    return CHANNEL_NAMES.get(channel, channel)


def audit_sentence(action: str, who: str, detail: dict[str, Any] | None) -> str:
    """One line of a case's history in plain words: "Case opened from the patient's answers",
    "Acknowledged by Dana Reyes". ``who`` is a staff member's name, or the system actor's code."""
    detail = detail or {}
    if action == "case.opened":
        if "R13" in (detail.get("rules") or []):
            return "Case opened: a safety check had no answer after its reminder"
        return "Case opened from the patient's answers"
    if action == "case.acknowledged":
        return f"Acknowledged by {who}"
    if action == "case.resolved":
        return f"Resolved by {who}"
    if action == "case.realerted":
        return "Not acknowledged in time: the backup routes were alerted"
    if action.startswith("alert."):
        status = action.split(".", 1)[1]
        audience = detail.get("audience")
        what = "Backup alert" if audience == "backup" else "Alert"
        sentence = {"sent": f"{what} sent", "failed": f"{what} could not be delivered", "skipped": f"{what} not sent"}
        text = sentence.get(status, f"{what}: {alert_status_name(status).lower()}")
        reason = detail.get("reason")
        return f"{text} ({reason})" if reason and status != "sent" else text
    return f"{action.replace('.', ' ').replace('_', ' ').capitalize()} ({who})"


_STEP_IN_TEXT = re.compile(r"\bcheck-in ([a-z0-9_]+)\b")
_ALERT_IN_TEXT = {"primary alert": "on-call alert", "undelivered alert": "alert about an undelivered message"}


def message_description(what: str) -> str:
    """An undelivered message's description with its codes in words: "reminder 1 of check-in check_24h"
    becomes "reminder 1 of the 1-day check-in", "primary alert for case #3" "on-call alert for case #3"."""
    text = _STEP_IN_TEXT.sub(lambda m: f"the {step_name(m.group(1))}", what)
    for code, words in _ALERT_IN_TEXT.items():
        text = text.replace(code, words)
    return text


def phone_href(phone: str) -> str:
    """The ``tel:`` target of a stored number (the digits, with the leading + when there is one)."""
    return tel_uri(phone)


def phone_display(phone: str) -> str:
    """A stored number grouped as people write it ("+1 555-123-4567"), as the emails show it."""
    return format_phone(phone)


def filters() -> dict[str, Any]:
    """The functions above under the names the staff templates use."""
    return {
        "tier_name": tier_name,
        "step_name": step_name,
        "rule_title": rule_title,
        "measure_name": measure_name,
        "injury_name": injury_name,
        "side_name": side_name,
        "zone_name": zone_name,
        "case_status_name": case_status_name,
        "alert_status_name": alert_status_name,
        "audience_name": audience_name,
        "channel_name": channel_name,
        "audit_sentence": audit_sentence,
        "message_description": message_description,
        "phone_href": phone_href,
        "phone_display": phone_display,
    }
