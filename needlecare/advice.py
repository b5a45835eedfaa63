"""The advice a patient sees straight after submitting answers (interim mapping).

This is the interim version until the rule engine (versioned rules, practitioner alerts) lands. It only
decides what the patient is told in the same response, which domain.md §6 requires to happen at once,
before any practitioner sees the answers. Mapping (domain.md §3.3 red flags, §6 rules; every threshold
there is an [E] proposal awaiting clinician sign-off):

- EMERGENCY: breathless / chest_pain / pain_on_breathing after any needling (§6 R1, R2: never suppress the
  general red flag); uncontrolled_bleeding (R3); fainted_after_leaving with chest_pain, palpitations or
  injury_from_fall (R4).
- SAME_DAY: any other red flag (R4 otherwise, R5, R6, R14, R15); bruise large or spreading (R7);
  nprs_worst ≥ 8 (R8).

Patient text must never suggest that someone watches answers in real time (domain.md header note, §6), so
messages say only that the answers are saved with the record.
"""

from dataclasses import asdict, dataclass
from typing import Literal

from needlecare.answers import BSI, BSI_ONLY, REDFLAGS, SurveyAnswers

Tier = Literal["EMERGENCY", "SAME_DAY"]

SAVED = "Your answers are saved with your record."
EMERGENCY_TITLE = "Call your local emergency number now"
SAME_DAY_TITLE = "Contact the clinic today"
SAME_DAY_ACTION = "Contact the clinic today; if it is closed or you get worse, go to urgent care."
SEVERE_PAIN = 8  # domain.md §6 R8

_BREATHING = ("breathless", "chest_pain", "pain_on_breathing")
_FAINT_WITH = ("chest_pain", "palpitations", "injury_from_fall")


@dataclass(frozen=True)
class Advice:
    tier: Tier
    title: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def advice_for(answers: SurveyAnswers, *, trunk_needled: bool, injury: str, saved: bool = True) -> Advice | None:
    """The most urgent advice these answers call for, or None when nothing needs acting on.

    ``saved=False`` when the answers were not stored (a form with errors, a closed or used link): the
    advice is shown all the same, without saying the answers are saved.
    """
    flags = set(answers.ticked_redflags)
    closing = f" {SAVED}" if saved else ""

    if flags & set(_BREATHING):
        where = (
            " After needling near the chest, upper back, shoulder or neck this can be a sign of a collapsed lung."
            if trunk_needled
            else ""
        )
        return _emergency(
            "Call your local emergency number now (for example 911, 999 or 112) and say you are short of breath "
            f"or have chest pain.{where} Do not drive yourself.{closing}"
        )
    if "uncontrolled_bleeding" in flags:
        return _emergency(
            "Call your local emergency number now, or go straight to an emergency department. "
            f"Keep pressing firmly on the bleeding spot with a clean cloth until help arrives.{closing}"
        )
    if "fainted_after_leaving" in flags and flags & set(_FAINT_WITH):
        return _emergency(
            "Call your local emergency number now. Fainting together with chest pain, a racing or irregular "
            f"heartbeat, or an injury from a fall needs checking straight away. Do not drive yourself.{closing}"
        )

    reasons = [REDFLAGS[flag] for flag in answers.ticked_redflags if flag in REDFLAGS]
    if answers.bruise in ("large", "spreading"):
        reasons.append("a bruise that is larger than your palm" if answers.bruise == "large" else "a spreading bruise")
    if answers.nprs_worst is not None and answers.nprs_worst >= SEVERE_PAIN:
        reasons.append(f"worst pain {answers.nprs_worst} out of 10")
    if not reasons:
        return None
    extra = ""
    if injury == BSI and flags & BSI_ONLY:
        extra = " Please do not run until you have spoken to the clinic."
    told = "; ".join(reason[0].lower() + reason[1:] for reason in reasons)
    return Advice(
        tier="SAME_DAY",
        title=SAME_DAY_TITLE,
        message=f"You told us about: {told}. {SAME_DAY_ACTION}{extra}{closing}",
    )


def _emergency(message: str) -> Advice:
    return Advice(tier="EMERGENCY", title=EMERGENCY_TITLE, message=message)
