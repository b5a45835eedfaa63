"""The shape of a follow-up protocol: its steps (when each is sent, how long its answers are valid, when to
remind, which questions it asks, by which channels) and its self-test (``rom_test``), each checked as it is
read. The question ids and channels a step may use are fixed here; ``needlecare.followup.protocols`` loads and
merges the packs."""

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

QUESTION_IDS: frozenset[str] = frozenset(
    {
        "nprs_usual",
        "nprs_worst",
        "soreness",
        "bruise",
        "groc15",
        "rom",
        "psfs",
        "redflags",
        "fainted",
        "ran",
        "run_pain",
        "free_text",
    }
)

CHANNELS: tuple[str, ...] = ("email", "sms")
SLUG = r"^[a-z0-9_]+$"
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z0-9(\"']|\s*$)")
NonEmpty = Annotated[str, Field(min_length=1)]


def allowed(values: frozenset[str] | list[str] | set[str]) -> str:
    """The allowed values, sorted, as listed in a problem message."""
    return ", ".join(sorted(values))


class RomTest(BaseModel):
    """A self-test the patient can do safely alone; its value is recorded against a catalogue measure."""

    model_config = ConfigDict(extra="forbid")
    measure: str = Field(pattern=SLUG)
    name: NonEmpty
    unit: NonEmpty
    min: float
    max: float
    step: float = Field(gt=0)
    how_to: NonEmpty
    source: NonEmpty

    @field_validator("max")
    @classmethod
    def _max_above_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min")
        if low is not None and value <= low:
            raise ValueError(f"must be above min ({low:g}); got {value:g}")
        return value

    @field_validator("how_to")
    @classmethod
    def _short_instructions(cls, value: str) -> str:
        sentences = len(_SENTENCE_END.findall(value.strip()))
        if not 2 <= sentences <= 5:
            raise ValueError(f"must be 2 to 5 short sentences ending in '.', '!' or '?'; found {sentences}")
        return value


class Step(BaseModel):
    """One follow-up message: when it is sent, when answers count, reminders, questions, the channels its
    first message and its reminders may go by (in order of preference), and which questions a text reply
    answers."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SLUG)
    title: NonEmpty
    scope: Literal["session", "episode"]
    offset_hours: float = Field(ge=0)
    window_start_hours: float = Field(ge=0)
    window_end_hours: float
    reminder_hours: list[float] = Field(default_factory=list)
    questions: list[str] = Field(min_length=1)
    safety: bool
    skip_if_next_session_before_due: bool = False
    groc_anchor: str | None = Field(default=None, validate_default=True)
    channels: list[str] = Field(default_factory=lambda: ["email"])
    reminder_channels: list[str] = Field(default_factory=lambda: ["email"])
    sms_reply_questions: list[str] = Field(default_factory=list)
    source: NonEmpty

    @field_validator("window_start_hours")
    @classmethod
    def _start_not_after_offset(cls, value: float, info: ValidationInfo) -> float:
        offset = info.data.get("offset_hours")
        if offset is not None and value > offset:
            raise ValueError(f"must be at or before offset_hours ({offset:g}); got {value:g}")
        return value

    @field_validator("window_end_hours")
    @classmethod
    def _end_after_offset(cls, value: float, info: ValidationInfo) -> float:
        offset = info.data.get("offset_hours")
        if offset is not None and value <= offset:
            raise ValueError(
                f"must be after offset_hours ({offset:g}) so the window contains the send time; got {value:g}"
            )
        return value

    @field_validator("reminder_hours")
    @classmethod
    def _reminders_inside_window(cls, value: list[float], info: ValidationInfo) -> list[float]:
        offset, end = info.data.get("offset_hours"), info.data.get("window_end_hours")
        previous = 0.0
        for index, hours in enumerate(value):
            if hours <= previous:
                raise ValueError(
                    f"[{index}]: {hours:g}: reminders are hours after the first send and must be above 0 and increasing"
                )
            previous = hours
            if offset is not None and end is not None and hours >= end - offset:
                raise ValueError(
                    f"[{index}]: {hours:g} falls after the answer window closes: must be below "
                    f"window_end_hours - offset_hours = {end - offset:g}"
                )
        return value

    @field_validator("questions")
    @classmethod
    def _known_questions(cls, value: list[str]) -> list[str]:
        return _known_once(value, QUESTION_IDS, "a question id")

    @field_validator("safety")
    @classmethod
    def _safety_asks_red_flags(cls, value: bool, info: ValidationInfo) -> bool:
        questions = info.data.get("questions")
        if value and questions is not None and "redflags" not in questions:
            raise ValueError("a safety step must ask 'redflags' (the red-flag checklist)")
        return value

    @field_validator("skip_if_next_session_before_due")
    @classmethod
    def _skip_only_per_session(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("scope") == "episode":
            raise ValueError("only allowed for scope = 'session' (an episode step does not follow one session)")
        return value

    @field_validator("groc_anchor")
    @classmethod
    def _anchor_with_groc(cls, value: str | None, info: ValidationInfo) -> str | None:
        questions = info.data.get("questions")
        if questions is None:
            return value
        if "groc15" in questions and not (value and value.strip()):
            raise ValueError(
                "required when questions include 'groc15': say what the patient compares against, "
                "e.g. 'before your last session' or 'before this episode started'"
            )
        if "groc15" not in questions and value is not None:
            raise ValueError("only allowed when questions include 'groc15'")
        return value

    @field_validator("channels", "reminder_channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(
                f"must list at least one channel, in order of preference; allowed: {allowed(set(CHANNELS))}"
            )
        return _known_once(value, set(CHANNELS), "a channel")

    @field_validator("sms_reply_questions")
    @classmethod
    def _reply_questions_asked(cls, value: list[str], info: ValidationInfo) -> list[str]:
        questions = info.data.get("questions")
        for index, question in enumerate(value):
            if questions is not None and question not in questions:
                raise ValueError(
                    f"[{index}]: '{question}' is not one of this step's questions ({', '.join(questions)}); "
                    "a reply can answer only questions the step asks"
                )
            if question in value[:index]:
                raise ValueError(f"[{index}]: '{question}' is listed twice")
        texted = {*info.data.get("channels", []), *info.data.get("reminder_channels", [])}
        if value and "channels" in info.data and "reminder_channels" in info.data and "sms" not in texted:
            raise ValueError("needs 'sms' in channels or reminder_channels (a reply answers a text message)")
        return value


class Protocol(BaseModel):
    """The follow-up protocol of one injury (or the default that injury packs may extend)."""

    model_config = ConfigDict(extra="forbid")
    injury: str = Field(pattern=SLUG)
    version: NonEmpty
    name: NonEmpty
    rom_test: RomTest | None = None
    aftercare_points: list[NonEmpty] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent_steps(self) -> "Protocol":
        seen: dict[str, int] = {}
        for index, step in enumerate(self.steps):
            if step.id in seen:
                raise ValueError(
                    f"steps[{index}].id: step id '{step.id}' is already used by steps[{seen[step.id]}]; "
                    "step ids must be unique"
                )
            seen[step.id] = index
            if "rom" in step.questions and self.rom_test is None:
                raise ValueError(
                    f"steps[{index}].questions: asks 'rom' but this pack has no rom_test; add a [rom_test] "
                    "table or remove 'rom'"
                )
        self.steps = sorted(self.steps, key=lambda s: s.offset_hours)
        return self

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(
            f"protocol '{self.injury}' has no step '{step_id}'; its steps: {', '.join(s.id for s in self.steps)}"
        )


def _known_once(value: list[str], known: "set[str] | frozenset[str]", what: str) -> list[str]:
    """``value`` when every item is in ``known`` and none is listed twice; else the first problem, by index."""
    for index, item in enumerate(value):
        if item not in known:
            raise ValueError(f"[{index}]: '{item}' is not {what}; allowed: {allowed(known)}")
        if item in value[:index]:
            raise ValueError(f"[{index}]: '{item}' is listed twice")
    return value
