"""What the survey page says about answers it cannot take, in the words of the page.

The validator (``needlecare.followup.questions``) words its messages for the JSON API: they name the stored
values (``none, small, large``) an app sends. The page shows labels instead ("A small bruise"), so it says
what to do with those: one message per question, for the error summary at the top and beside the question.
The validator still decides what is refused; this only chooses the words, from what was sent.
"""

from typing import Any

from needlecare.followup.protocol_schema import Protocol, Step
from needlecare.followup.questions import (
    FREE_TEXT_MAX,
    NERVE,
    NERVE_FOLLOW_UP_ALONE,
    NERVE_FOLLOW_UPS,
    NONE_OF_THESE,
    PSFS_ACTIVITY_MAX,
)

OTHER = "form"  # the key for answers to no question on this page (a tampered form): one message for them all

_MESSAGES: dict[str, str] = {
    "nprs_usual": "Choose how much your injury has hurt on average over the last 24 hours, from 0 to 10",
    "nprs_worst": "Choose the worst pain from your injury in the last 24 hours, from 0 to 10",
    "soreness": "Choose how sore the needle spots are, from 0 to 10",
    "bruise": "Choose whether you have a bruise where the needles went in, and how big it is",
    "fainted": "Choose “Yes” if you fainted or felt faint, or “No” if you did not",
    "ran": "Choose “Yes” if you have been for a run, or “No” if you have not",
    "run_pain": "You said you ran: choose how much your injury hurt during the run, from 0 to 10",
    "redflags": "Tick each warning sign you have had, or tick “None of these”",
}
RUN_PAIN_NOT_RAN = "Only answer this if you ran: choose “Yes” under “Have you been for a run” if you did"
REDFLAGS_BOTH = "You ticked “None of these” and a warning sign: untick one of them"
PSFS_NONE = "Name at least one activity that is hard because of your injury, and give it a score from 0 to 10"
PSFS_FIXED = "Give each activity a score from 0 to 10"
PSFS_NO_NAME = "Write the name of each activity you give a score to"
PSFS_LONG = f"Activity names must be {PSFS_ACTIVITY_MAX} characters or fewer"
PSFS_TWICE = "Name each activity only once"
OTHER_MESSAGE = "Some answers did not match the questions on this page: please check your answers and send them again"
# A form refused for errors elsewhere whose ticked warning signs were stored (a partial answer).
PARTIAL_SAVED = "The warning signs you ticked are saved with your record."
PARTIAL_ALERTED = "We are sending your clinic an alert about them. It may not be read straight away."
PARTIAL_REST = "Your other answers are not saved yet: answer the questions below and tap “Send my answers”."


def partial_note(*, alerted: bool) -> str:
    """What the page says when only the warning signs of a refused form were stored, and whether an alert is on
    its way to the clinic (the stored answer opened a case)."""
    return " ".join([PARTIAL_SAVED, *([PARTIAL_ALERTED] if alerted else []), PARTIAL_REST])


def form_errors(
    errors: dict[str, str],
    data: dict[str, Any],
    *,
    protocol: Protocol,
    step: Step,
    previous_activities: list[str],
) -> dict[str, str]:
    """The page's message for each refused question, in the order of the page; ``data`` is what was sent."""
    asked = list(step.questions)
    worded = {
        name: _message(name, data, protocol=protocol, step=step, previous=previous_activities)
        for name in asked
        if name in errors
    }
    if any(name not in asked for name in errors):
        worded[OTHER] = OTHER_MESSAGE
    return worded


def _message(name: str, data: dict[str, Any], *, protocol: Protocol, step: Step, previous: list[str]) -> str:
    if name == "groc15":
        return f"Choose how your injury is now compared with {step.groc_anchor or 'before'}"
    if name == "rom" and protocol.rom_test is not None:
        test = protocol.rom_test
        return f"Enter your result in {test.unit}, from {test.min:g} to {test.max:g}, or leave the box empty"
    if name == "free_text":
        length = len(str(data.get("free_text") or "").strip())
        return f"Your message must be {FREE_TEXT_MAX} characters or fewer (it has {length})"
    if name == "redflags":
        ticked = data.get("redflags") or []
        if NONE_OF_THESE in ticked and len(set(ticked)) > 1:
            return REDFLAGS_BOTH
        if NERVE_FOLLOW_UPS.keys() & set(ticked) and not NERVE & set(ticked):
            return NERVE_FOLLOW_UP_ALONE.rstrip(".")
    if name == "run_pain" and data.get("ran") != "yes" and data.get("run_pain") not in (None, ""):
        return RUN_PAIN_NOT_RAN
    if name == "psfs":
        return _psfs_message(data.get("psfs") or [], previous)
    return _MESSAGES.get(name, OTHER_MESSAGE)


def _psfs_message(rows: list[dict[str, str]], previous: list[str]) -> str:
    names = [" ".join(str(row.get("activity", "")).split()) for row in rows]
    folded = [name.casefold() for name in names if name]
    if previous and folded and sorted(folded) != sorted(" ".join(p.split()).casefold() for p in previous):
        return "Rate the same activities as last time: " + "; ".join(previous)
    for name, row in zip(names, rows, strict=True):
        if not name and str(row.get("score", "")).strip():
            return PSFS_NO_NAME
        if len(name) > PSFS_ACTIVITY_MAX:
            return PSFS_LONG
        if name and not str(row.get("score", "")).strip():
            return f"Give “{name}” a score from 0 to 10"
    if len(set(folded)) != len(folded):
        return PSFS_TWICE
    return PSFS_FIXED if previous else PSFS_NONE
