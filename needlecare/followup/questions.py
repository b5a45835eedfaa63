"""Survey answers: what may be asked, the patient-facing choices, and validation.

One validator serves the web form and the JSON API, so both accept and refuse the same things and say
the same thing about each field. Only the questions of the contact's step are accepted.

Sources: shared/domain.md §2 (NPRS 0-10, GROC -7..+7 with an explicit anchor, PSFS 0-10 re-rating the
same activities, post-needling soreness 0-10), §3.3 (the red-flag list) and §6 (variable names).
"""

import math
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from models.survey import RECALL_COLUMNS, PainRecall
from needlecare.followup.protocol_schema import QUESTION_IDS, Protocol, Step

NONE_OF_THESE = "none"
BSI = "bone_stress_injury"

# Red flags, in the order the checklist shows them: id → patient-facing label (domain.md §3.3, §6).
REDFLAGS: dict[str, str] = {
    "breathless": "Short of breath",
    "chest_pain": "Chest pain",
    "pain_on_breathing": "Pain when you breathe in",
    "uncontrolled_bleeding": "Bleeding from a needle site that did not stop after 10 minutes of firm pressure",
    "fainted_after_leaving": "Fainted or nearly fainted after you left the clinic",
    "palpitations": "A racing, pounding or irregular heartbeat",
    "injury_from_fall": "Hurt yourself in a fall or when you fainted",
    "spreading_redness": "Redness spreading out from a needle site",
    "pus": "Pus or cloudy fluid coming from a needle site",
    "red_streaks": "Red lines or streaks running from a needle site",
    "site_hot_swollen": "A needle site that is hot and swollen",
    "fever": "A temperature of 38 °C (100.4 °F) or higher",
    "new_numbness": "New numbness in the treated arm or leg",
    "new_tingling": "New pins and needles in the treated arm or leg",
    "new_weakness": "New weakness, for example the knee gives way or you cannot rise onto your toes",
    "foot_drop": "Your foot drags or slaps down because you cannot lift the front of it",
    "calf_swollen_warm_one_leg": "New swelling, warmth and pain in one calf",
    "leg_swelling": "A swollen leg",
    "new_focal_bone_pain": "New pain in one spot on the bone",
    "night_pain": "Bone pain that wakes you at night",
    "pain_walking": "Pain when you walk",
    "pain_hopping": "Pain when you hop",
}
BSI_ONLY = frozenset({"new_focal_bone_pain", "night_pain", "pain_walking", "pain_hopping"})
# Shown to everyone: a general medical red flag even after lower-limb-only needling (domain.md §6 R1/R2).
BREATHING = frozenset({"breathless", "chest_pain", "pain_on_breathing"})
# The nerve items (domain.md §3.3, §6 R6) and the two follow-ups asked when one of them is ticked: R6 is an
# emergency when the symptom is getting worse or stops the patient walking (§3.3: "emergency if weakness is
# severe or getting worse"; §6 R6). Ticked follow-ups are stored in the red-flag answer beside the items;
# they are not checklist items themselves (not counted, never offered without a nerve item).
NERVE = frozenset({"new_numbness", "new_tingling", "new_weakness", "foot_drop"})
NERVE_FOLLOW_UPS: dict[str, str] = {
    "nerve_getting_worse": "The numbness, pins and needles or weakness is getting worse",
    "nerve_cannot_walk": "Cannot walk normally because of the numbness, pins and needles or weakness",
}
# A warning sign reported by text message: the reply "1" / "yes" to the 24-hour check's "any warning sign from
# your aftercare notice?", which does not say which one. Never on the web checklist; accepted only in an SMS answer
# (validate_sms_reply) and acted on by its own rule (rules/escalation.toml L2).
BY_TEXT = "warning_sign_by_text"
BY_TEXT_LABEL = "A warning sign, reported by text message (not said which)"
NERVE_FOLLOW_UP_ALONE = (
    "You ticked that it is getting worse or that you cannot walk normally: also tick which of new numbness, "
    "pins and needles, weakness or a dragging foot you have."
)

Bruise = Literal["none", "small", "large", "spreading"]
BRUISE_OPTIONS: dict[str, str] = {
    "none": "No bruise",
    "small": "A small bruise",
    "large": "A bruise larger than the palm of your hand",
    "spreading": "A bruise that is still spreading or swelling",
}

# The 15-point global rating of change (Jaeschke, Singer & Guyatt 1989; domain.md §2).
GROC_LABELS: dict[int, str] = {
    -7: "A very great deal worse",
    -6: "A great deal worse",
    -5: "Quite a bit worse",
    -4: "Moderately worse",
    -3: "Somewhat worse",
    -2: "A little bit worse",
    -1: "A tiny bit worse, almost the same",
    0: "About the same",
    1: "A tiny bit better, almost the same",
    2: "A little bit better",
    3: "Somewhat better",
    4: "Moderately better",
    5: "Quite a bit better",
    6: "A great deal better",
    7: "A very great deal better",
}

PSFS_MAX_ACTIVITIES = 5
PSFS_ACTIVITY_MAX = 80
FREE_TEXT_MAX = 2000

# Each 0-10 score, the recall period it is asked with and its question (domain.md §2: always store the recall).
# nprs_usual is compared with the episode baseline (usual pain over the last 24 h, models.survey
# BASELINE_PAIN_RECALL) by rules R9, R14, R17 and the outcome figures, so it is asked with that same recall;
# nprs_worst (worst over 24 h) feeds R8. The survey page, the FHIR Questionnaire and the stored *_recall
# columns all take the recall and the words from here.
PAIN_RECALL: dict[str, PainRecall] = {
    "nprs_usual": PainRecall.AVERAGE_24H,
    "nprs_worst": PainRecall.WORST_24H,
    "soreness": PainRecall.NOW,
    "run_pain": PainRecall.DURING_RUN,
}
PAIN_QUESTIONS: dict[str, str] = {
    "nprs_usual": "On average over the last 24 hours, how much has your injury hurt?",
    "nprs_worst": "What was the worst pain from your injury in the last 24 hours?",
    "soreness": "How sore are the spots where the needles went in?",
    "run_pain": "If you ran: how much did your injury hurt during the run?",
}

# Required unless listed here. rom: the patient may skip the self-test. run_pain: only when ran is yes.
OPTIONAL = frozenset({"free_text", "rom", "run_pain"})

MESSAGES: dict[str, str] = {
    "nprs_usual": "Choose a whole number from 0 (no pain) to 10 (worst pain imaginable).",
    "nprs_worst": "Choose a whole number from 0 (no pain) to 10 (worst pain imaginable).",
    "soreness": "Choose a whole number from 0 (no soreness) to 10 (worst soreness imaginable).",
    "bruise": "Choose one of: none, small, large (bigger than your palm), spreading.",
    "groc15": "Choose a whole number from -7 (a very great deal worse) through 0 (about the same) "
    "to +7 (a very great deal better).",
    "psfs": f"Rate 1 to {PSFS_MAX_ACTIVITIES} activities, each with a name (up to {PSFS_ACTIVITY_MAX} characters) "
    "and a score from 0 (unable to do it) to 10 (as well as before the injury).",
    "redflags": "Tick each one that applies, or tick only 'None of these'. With new numbness, pins and needles, "
    "weakness or foot drop, also tick nerve_getting_worse if it is getting worse and nerve_cannot_walk if you "
    "cannot walk normally.",
    "fainted": "Answer yes or no.",
    "ran": "Answer yes or no.",
    "run_pain": "Choose a whole number from 0 (no pain) to 10 (worst pain imaginable) for pain during your run.",
    "free_text": f"Use up to {FREE_TEXT_MAX} characters.",
}
NOT_ASKED = "not asked in this check"


class InvalidAnswers(ValueError):
    """Answers that cannot be stored; ``errors`` maps each field to what is allowed."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


class RomAnswer(BaseModel):
    model_config = ConfigDict(frozen=True)
    measure: str
    value: float


class PsfsItem(BaseModel):
    model_config = ConfigDict(frozen=True)
    activity: str
    score: int


class SurveyAnswers(BaseModel):
    """Validated answers; a field is None when its question was not asked (or, for optional ones, skipped)."""

    model_config = ConfigDict(frozen=True)

    nprs_usual: int | None = None
    nprs_worst: int | None = None
    soreness: int | None = None
    bruise: Bruise | None = None
    groc15: int | None = None
    rom: RomAnswer | None = None
    psfs: list[PsfsItem] | None = None
    redflags: list[str] = []
    fainted: bool | None = None
    ran: bool | None = None
    run_pain: int | None = None
    free_text: str | None = None

    @property
    def ticked_redflags(self) -> list[str]:
        """Checklist red flag ids ticked ("none" and the nerve follow-ups removed)."""
        return [flag for flag in self.redflags if flag != NONE_OF_THESE and flag not in NERVE_FOLLOW_UPS]

    @property
    def getting_worse(self) -> bool | None:
        """The nerve symptom is getting worse: None unless a nerve item was ticked (the follow-up was not asked)."""
        return self._follow_up("nerve_getting_worse")

    @property
    def cannot_walk(self) -> bool | None:
        """The nerve symptom stops normal walking: None unless a nerve item was ticked."""
        return self._follow_up("nerve_cannot_walk")

    def _follow_up(self, key: str) -> bool | None:
        if not NERVE.intersection(self.redflags):
            return None
        return key in self.redflags

    def recalls(self) -> dict[str, str | None]:
        """The ``*_recall`` column of each stored 0-10 score: its :data:`PAIN_RECALL`, or None when unanswered."""
        return {
            column: None if getattr(self, score) is None else PAIN_RECALL[score].value
            for score, column in RECALL_COLUMNS.items()
        }


def redflag_options(injury: str, regions_needled: list[str] | None = None) -> dict[str, str]:
    """The checklist for this patient, in display order. The bone-stress items only for that injury.

    ``regions_needled`` does not remove anything: the breathing items are shown after any needling
    (domain.md §3.3: show the warning whenever trunk, neck or shoulder was needled; §6 R2: never suppress
    it after lower-limb needling either). The form adds a note when the trunk was needled.
    """
    return {key: label for key, label in REDFLAGS.items() if key not in BSI_ONLY or injury == BSI}


def validate_answers(
    data: dict[str, Any],
    *,
    protocol: Protocol,
    step: Step,
    regions_needled: list[str],
    previous_activities: list[str] | None = None,
    by_text: bool = False,
) -> SurveyAnswers:
    """Check ``data`` against the step's questions; raises ``InvalidAnswers`` listing every problem.

    ``previous_activities``: the PSFS activities this patient rated last time in this episode; when given,
    the same activities must be re-rated (domain.md §1.4 PSFS, §2). ``by_text``: an SMS answer, whose only red-flag
    items are :data:`BY_TEXT` or "none" (see :func:`validate_sms_reply`).
    """
    errors: dict[str, str] = {}
    asked = [q for q in step.questions if q in QUESTION_IDS]
    for key, value in data.items():
        if value is None or key in asked:
            continue
        errors[key] = NOT_ASKED if key in QUESTION_IDS else f"unknown field; this check asks: {', '.join(asked)}"

    values: dict[str, Any] = {}
    for question in asked:
        raw = data.get(question)
        if _blank(raw):
            if question not in OPTIONAL:
                errors[question] = "This question needs an answer. " + _message(question, protocol)
            continue
        try:
            values[question] = _CHECKS[question](raw, protocol, previous_activities)
        except _Bad as bad:
            errors[question] = bad.message or _message(question, protocol)
        except (TypeError, ValueError):
            errors[question] = _message(question, protocol)

    if "redflags" in values:
        allowed = {BY_TEXT: BY_TEXT_LABEL} if by_text else redflag_options(protocol.injury, regions_needled)
        flags = values["redflags"]
        unknown = [f for f in flags if f != NONE_OF_THESE and f not in allowed and f not in NERVE_FOLLOW_UPS]
        if unknown:
            errors["redflags"] = f"Unknown item(s): {', '.join(unknown[:5])}. " + MESSAGES["redflags"]
        elif NERVE_FOLLOW_UPS.keys() & set(flags) and not NERVE & set(flags):
            errors["redflags"] = NERVE_FOLLOW_UP_ALONE
    if "run_pain" in asked and "run_pain" not in errors:
        ran = values.get("ran")
        if ran is True and "run_pain" not in values and "ran" in asked:
            errors["run_pain"] = "You said you ran, so please rate it. " + MESSAGES["run_pain"]
        elif ran is not True and "run_pain" in values and "ran" in asked:
            errors["run_pain"] = "Only answer this if you ran."
    if errors:
        raise InvalidAnswers(errors)
    return SurveyAnswers.model_validate(values)


def validate_sms_reply(
    data: dict[str, Any], *, protocol: Protocol, step: Step, regions_needled: list[str]
) -> SurveyAnswers:
    """An answer by text message: only the step's ``sms_reply_questions`` (the web form still needs all of its
    questions), each checked as on the form; a warning sign is :data:`BY_TEXT`. Raises ``InvalidAnswers``."""
    if not step.sms_reply_questions:
        raise InvalidAnswers({"step": "this check cannot be answered by text message"})
    reply_step = step.model_copy(update={"questions": list(step.sms_reply_questions)})
    return validate_answers(data, protocol=protocol, step=reply_step, regions_needled=regions_needled, by_text=True)


def lenient_answers(data: dict[str, Any]) -> SurveyAnswers:
    """Only what the advice needs (red flags, bruise, worst pain), from answers that may not validate.

    Used when answers cannot be stored (errors elsewhere in the form, a closed or used link): a ticked red
    flag must still show its advice at once (domain.md §6). Anything unreadable is left out.
    """
    flags = data.get("redflags")
    known = REDFLAGS.keys() | NERVE_FOLLOW_UPS.keys()
    redflags = [f for f in flags if isinstance(f, str) and f in known] if isinstance(flags, list) else []
    bruise = data.get("bruise")
    worst: int | None
    try:
        worst = _whole(data.get("nprs_worst"), 0, 10)
    except _Bad:
        worst = None
    return SurveyAnswers(
        redflags=list(dict.fromkeys(redflags)),
        bruise=bruise if isinstance(bruise, str) and bruise in BRUISE_OPTIONS else None,
        nprs_worst=worst,
    )


class _Bad(ValueError):
    def __init__(self, message: str = "") -> None:
        self.message = message
        super().__init__(message)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _message(question: str, protocol: Protocol) -> str:
    if question == "rom":
        test = protocol.rom_test
        if test is None:
            return NOT_ASKED
        return (
            f"{test.name}: enter a number from {test.min:g} to {test.max:g} {test.unit}, "
            "or leave it empty to skip the self-test."
        )
    return MESSAGES[question]


def _whole(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise _Bad()
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,3}", value.strip()):
        number = int(value.strip())
    else:
        raise _Bad()
    if not low <= number <= high:
        raise _Bad()
    return number


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Bad()
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,6}([.,]\d{1,4})?", value.strip()):
        number = float(value.strip().replace(",", "."))
    else:
        raise _Bad()
    if not math.isfinite(number):
        raise _Bad()
    return number


def _yes_no(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"yes", "true"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"no", "false"}:
        return False
    raise _Bad()


def _scale(value: Any, _protocol: Protocol, _previous: list[str] | None) -> int:
    return _whole(value, 0, 10)


def _groc(value: Any, _protocol: Protocol, _previous: list[str] | None) -> int:
    return _whole(value, -7, 7)


def _bruise(value: Any, _protocol: Protocol, _previous: list[str] | None) -> str:
    if not isinstance(value, str) or value.strip() not in BRUISE_OPTIONS:
        raise _Bad()
    return value.strip()


def _bool(value: Any, _protocol: Protocol, _previous: list[str] | None) -> bool:
    return _yes_no(value)


def _free_text(value: Any, _protocol: Protocol, _previous: list[str] | None) -> str:
    if not isinstance(value, str):
        raise _Bad()
    text = value.strip()
    if len(text) > FREE_TEXT_MAX:
        raise _Bad(f"Use up to {FREE_TEXT_MAX} characters; this is {len(text)}.")
    return text


def _rom(value: Any, protocol: Protocol, _previous: list[str] | None) -> RomAnswer:
    test = protocol.rom_test
    if test is None:
        raise _Bad(NOT_ASKED)
    if not isinstance(value, dict) or set(value) - {"measure", "value"}:
        raise _Bad(f'Send {{"measure": "{test.measure}", "value": <number>}}, or leave it out to skip the self-test.')
    if value.get("measure") != test.measure:
        raise _Bad(f"measure must be '{test.measure}' for this check.")
    number = _number(value.get("value"))
    if not test.min <= number <= test.max:
        raise _Bad()
    return RomAnswer(measure=test.measure, value=number)


def _psfs(value: Any, _protocol: Protocol, previous: list[str] | None) -> list[PsfsItem]:
    if not isinstance(value, list) or not 1 <= len(value) <= PSFS_MAX_ACTIVITIES:
        raise _Bad()
    items: list[PsfsItem] = []
    for row in value:
        if not isinstance(row, dict) or set(row) - {"activity", "score"}:
            raise _Bad()
        activity = row.get("activity")
        if not isinstance(activity, str) or not activity.strip():
            raise _Bad("Each rated activity needs its name. " + MESSAGES["psfs"])
        name = " ".join(activity.split())
        if len(name) > PSFS_ACTIVITY_MAX:
            raise _Bad(f"Activity names can be up to {PSFS_ACTIVITY_MAX} characters.")
        if _blank(row.get("score")):
            raise _Bad(f"Give '{name}' a score from 0 (unable to do it) to 10 (as well as before the injury).")
        items.append(PsfsItem(activity=name, score=_whole(row.get("score"), 0, 10)))
    names = [item.activity.casefold() for item in items]
    if len(set(names)) != len(names):
        raise _Bad("Each activity only once, please.")
    if previous and sorted(names) != sorted(" ".join(p.split()).casefold() for p in previous):
        raise _Bad("Rate the same activities as last time: " + "; ".join(previous) + ".")
    return items


def _redflags(value: Any, _protocol: Protocol, _previous: list[str] | None) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Bad()
    flags = list(dict.fromkeys(item.strip() for item in value))
    if NONE_OF_THESE in flags and len(flags) > 1:
        raise _Bad("You ticked 'None of these' and another item: untick one of them.")
    return flags


_CHECKS: dict[str, Callable[[Any, Protocol, list[str] | None], Any]] = {
    "nprs_usual": _scale,
    "nprs_worst": _scale,
    "soreness": _scale,
    "run_pain": _scale,
    "groc15": _groc,
    "bruise": _bruise,
    "fainted": _bool,
    "ran": _bool,
    "free_text": _free_text,
    "rom": _rom,
    "psfs": _psfs,
    "redflags": _redflags,
}
