"""The advice a patient sees straight after answering, from the rule evaluation of those answers.

domain.md §6: red-flag answers show emergency or urgent advice in the same response, before any
practitioner sees them. The text is the fired rules' own patient messages (rules/escalation.toml) for the
highest tier reached. Outside the clinic's opening hours a same-day message points to urgent care first
(§6 implementation rules). Patient text never suggests that someone watches answers in real time.
"""

from dataclasses import asdict, dataclass

from needlecare.safety.rules.evaluation import Evaluation
from needlecare.safety.rules.variables import Tier

SAVED = "Your answers are saved with your record."
EMERGENCY_TITLE = "Call your local emergency number now"
SAME_DAY_TITLE = "Contact the clinic today"
CLOSED_TITLE = "Get urgent care today if you cannot reach the clinic"
CLOSED_NOTE = "The clinic is closed now: if you cannot reach it, go to urgent care rather than waiting for it to open."
TITLES: dict[str, str] = {
    "EMERGENCY": EMERGENCY_TITLE,
    "SAME_DAY": SAME_DAY_TITLE,
    "NEXT_BD": "Your practitioner will look at this",
    "INFO": "Good progress",
}


@dataclass(frozen=True)
class Advice:
    tier: Tier
    title: str
    message: str

    @property
    def urgent(self) -> bool:
        return self.tier in ("EMERGENCY", "SAME_DAY")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def advice_from(evaluation: Evaluation, *, saved: bool = True, clinic_open: bool = True) -> Advice | None:
    """The advice for the highest tier the evaluation reached, or None when no rule fired.

    ``saved=False`` when the answers were not stored (a form with errors, a closed or used link): the advice
    is shown all the same, without saying the answers are saved.
    """
    tier = evaluation.highest_tier
    if tier is None:
        return None
    messages: list[str] = []
    for rule in evaluation.fired:
        if rule.tier == tier and rule.patient_message not in messages:
            messages.append(rule.patient_message)
    title = TITLES[tier]
    if tier == "SAME_DAY" and not clinic_open:
        title = CLOSED_TITLE
        messages.append(CLOSED_NOTE)
    if saved:
        messages.append(SAVED)
    return Advice(tier=tier, title=title, message=" ".join(messages))
