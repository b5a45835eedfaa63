"""Follow-up protocol packs: one validated TOML file per injury plus a default, loaded as data.

A pack says when each follow-up step is sent, how long its answers are valid, when to remind,
which questions it asks and which self-test (``rom_test``) the patient may do. The shipped packs
live in ``protocols/`` at the project root; a clinic's override directory
(``Settings.protocols_dir``) may hold files of the same name that replace them. The file format is
described in the header of ``protocols/default.toml``.

Every problem is reported as a :class:`ProtocolError` that names the file, the field path
(``steps[1].window_end_hours``) and what is wrong or allowed.
"""

import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from needlecare.core.catalogue import Catalogue, get_catalogue
from needlecare.core.settings import get_settings

PROTOCOLS_DIR: Path = Path(__file__).resolve().parents[2] / "protocols"
DEFAULT_PACK = "default"

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

_SLUG = r"^[a-z0-9_]+$"
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z0-9(\"']|\s*$)")
_NonEmpty = Annotated[str, Field(min_length=1)]


class ProtocolError(ValueError):
    """A protocol pack that cannot be used. Each problem names the file, the field path and the fix."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in protocol packs:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(message)


def _allowed(values: frozenset[str] | list[str] | set[str]) -> str:
    return ", ".join(sorted(values))


class RomTest(BaseModel):
    """A self-test the patient can do safely alone; its value is recorded against a catalogue measure."""

    model_config = ConfigDict(extra="forbid")
    measure: str = Field(pattern=_SLUG)
    name: _NonEmpty
    unit: _NonEmpty
    min: float
    max: float
    step: float = Field(gt=0)
    how_to: _NonEmpty
    source: _NonEmpty

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
    """One follow-up message: when it is sent, when answers count, reminders and questions."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_SLUG)
    title: _NonEmpty
    scope: Literal["session", "episode"]
    offset_hours: float = Field(ge=0)
    window_start_hours: float = Field(ge=0)
    window_end_hours: float
    reminder_hours: list[float] = Field(default_factory=list)
    questions: list[str] = Field(min_length=1)
    safety: bool
    skip_if_next_session_before_due: bool = False
    groc_anchor: str | None = Field(default=None, validate_default=True)
    source: _NonEmpty

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
        for index, question in enumerate(value):
            if question not in QUESTION_IDS:
                raise ValueError(f"[{index}]: '{question}' is not a question id; allowed: {_allowed(QUESTION_IDS)}")
            if question in value[:index]:
                raise ValueError(f"[{index}]: '{question}' is listed twice")
        return value

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


class Protocol(BaseModel):
    """The follow-up protocol of one injury (or the default that injury packs may extend)."""

    model_config = ConfigDict(extra="forbid")
    injury: str = Field(pattern=_SLUG)
    version: _NonEmpty
    name: _NonEmpty
    rom_test: RomTest | None = None
    aftercare_points: list[_NonEmpty] = Field(default_factory=list)
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


class _PackFile(BaseModel):
    """What a pack file may contain: a Protocol plus the loader's own keys (extends, rom_in_steps)."""

    model_config = ConfigDict(extra="forbid")
    injury: str = Field(pattern=_SLUG)
    version: _NonEmpty
    name: _NonEmpty
    extends: Literal["default"] | None = None
    rom_test: RomTest | None = None
    rom_in_steps: list[str] = Field(default_factory=list)
    aftercare_points: list[_NonEmpty] = Field(default_factory=list)
    steps: list[Step] | None = None


_KEYS_BY_TABLE: dict[str, type[BaseModel]] = {"": _PackFile, "steps": Step, "rom_test": RomTest}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_problems(label: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            table = str(loc[0]) if len(loc) > 1 else ""
            model = _KEYS_BY_TABLE.get(table)
            allowed = f"; allowed keys: {', '.join(model.model_fields)}" if model else ""
            msg = f"unknown key{allowed}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        path = _path(loc)
        if path and re.match(r"^\[\d+\]: ", msg):  # a list validator naming the item: questions[2]: 'x' ...
            index, _, msg = msg.partition(": ")
            path += index
        problems.append(f"{label}: {path}: {msg}" if path else f"{label}: {msg}")
    return problems


def _read(file: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{file}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{file}: cannot be read: {exc}") from None


def _pack_files(shipped_dir: Path, override_dir: Path | None) -> tuple[dict[str, Path], list[str]]:
    problems: list[str] = []
    files: dict[str, Path] = {}
    for label, directory in (("shipped protocol", shipped_dir), ("override protocol", override_dir)):
        if directory is None:
            continue
        if not directory.is_dir():
            problems.append(f"{directory}: {label} directory not found")
            continue
        for file in sorted(directory.glob("*.toml")):
            files[file.stem] = file  # an override replaces the shipped file of the same name
    return files, problems


def _check_against_catalogue(file: Path, pack: _PackFile, catalogue: Catalogue) -> list[str]:
    problems: list[str] = []
    slug = file.stem
    if pack.injury != slug:
        problems.append(f"{file}: injury: is '{pack.injury}' but the file is named {slug}.toml; they must match")
    if slug == DEFAULT_PACK:
        for key, given in (("extends", pack.extends), ("rom_test", pack.rom_test), ("rom_in_steps", pack.rom_in_steps)):
            if given:
                problems.append(f"{file}: {key}: not allowed in the default pack (it belongs in an injury pack)")
        if pack.steps is None:
            problems.append(f"{file}: steps: required key is missing; the default pack must define its steps")
        return problems
    if pack.steps is None and pack.extends is None:
        problems.append(f'{file}: steps: required key is missing; give [[steps]] or set extends = "default"')
    rom = pack.rom_test
    if rom is not None:
        injury_measures = catalogue.injuries[slug].measures
        if rom.measure not in catalogue.measures:
            problems.append(
                f"{file}: rom_test.measure: '{rom.measure}' is not a catalogue measure; allowed for {slug}: "
                f"{', '.join(injury_measures)}"
            )
        elif rom.measure not in injury_measures:
            problems.append(
                f"{file}: rom_test.measure: '{rom.measure}' is not a measure of {slug} in the catalogue; "
                f"allowed: {', '.join(injury_measures)}"
            )
        else:
            measure = catalogue.measures[rom.measure]
            if rom.unit != measure.unit:
                problems.append(f"{file}: rom_test.unit: must be the catalogue unit '{measure.unit}'; got '{rom.unit}'")
            if rom.min < measure.min:
                problems.append(f"{file}: rom_test.min: {rom.min:g} is below the catalogue minimum {measure.min:g}")
            if rom.max > measure.max:
                problems.append(f"{file}: rom_test.max: {rom.max:g} is above the catalogue maximum {measure.max:g}")
    if pack.rom_in_steps and rom is None:
        problems.append(f"{file}: rom_in_steps: needs a [rom_test] table (there is no self-test to ask for)")
    return problems


def _add_rom(file: Path, steps: list[dict[str, Any]], rom_in_steps: list[str]) -> list[str]:
    """Add the 'rom' question (before free_text) to the steps rom_in_steps names; return problems."""
    problems: list[str] = []
    by_id = {step["id"]: step for step in steps}
    for index, step_id in enumerate(rom_in_steps):
        step = by_id.get(step_id)
        if step is None:
            problems.append(f"{file}: rom_in_steps[{index}]: no step '{step_id}'; steps: {', '.join(by_id)}")
        elif "rom" in step["questions"]:
            problems.append(f"{file}: rom_in_steps[{index}]: step '{step_id}' already asks 'rom'")
        elif step_id in rom_in_steps[:index]:
            problems.append(f"{file}: rom_in_steps[{index}]: '{step_id}' is listed twice")
        else:
            questions = list(step["questions"])
            at = questions.index("free_text") if "free_text" in questions else len(questions)
            questions.insert(at, "rom")
            step["questions"] = questions
    return problems


def _build(file: Path, pack: _PackFile, base_steps: list[dict[str, Any]] | None) -> Protocol:
    own = pack.steps is not None
    steps = [s.model_dump() for s in pack.steps] if pack.steps is not None else [dict(s) for s in base_steps or []]
    problems = _add_rom(file, steps, pack.rom_in_steps)
    if problems:
        raise ProtocolError(problems)
    data = {
        "injury": pack.injury,
        "version": pack.version,
        "name": pack.name,
        "rom_test": pack.rom_test,
        "aftercare_points": pack.aftercare_points,
        "steps": steps,
    }
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        label = str(file) if own else f"{file} (steps inherited from default.toml)"
        raise ProtocolError(_validation_problems(label, exc)) from None


def load_protocols(
    shipped_dir: Path = PROTOCOLS_DIR, override_dir: Path | None = None, catalogue: Catalogue | None = None
) -> dict[str, Protocol]:
    """Load, merge and validate every pack; return {injury slug: Protocol} for each catalogue injury.

    Raises ProtocolError listing every problem found (each naming its file and field path).
    """
    catalogue = catalogue or get_catalogue()
    files, problems = _pack_files(shipped_dir, override_dir)
    known = {*catalogue.injuries, DEFAULT_PACK}
    packs: dict[str, tuple[Path, _PackFile]] = {}
    for slug, file in files.items():
        if slug not in known:
            problems.append(
                f"{file}: unknown injury '{slug}' (from the file name); allowed: {DEFAULT_PACK}, "
                f"{_allowed(set(catalogue.injuries))}"
            )
            continue
        try:
            pack = _PackFile.model_validate(_read(file))
        except ProtocolError as exc:
            problems.extend(exc.problems)
            continue
        except ValidationError as exc:
            problems.extend(_validation_problems(str(file), exc))
            continue
        found = _check_against_catalogue(file, pack, catalogue)
        if found:
            problems.extend(found)
            continue
        packs[slug] = (file, pack)

    default: Protocol | None = None
    if DEFAULT_PACK in packs:
        try:
            default = _build(*packs[DEFAULT_PACK], None)
        except ProtocolError as exc:
            problems.extend(exc.problems)
    base_steps = [s.model_dump() for s in default.steps] if default else None

    protocols: dict[str, Protocol] = {}
    for slug in catalogue.injuries:
        if slug not in files:
            problems.append(
                f"{shipped_dir / (slug + '.toml')}: missing: every catalogue injury needs a pack; "
                f'add {slug}.toml (it may contain extends = "default")'
            )
            continue
        if slug not in packs:
            continue  # already reported
        file, pack = packs[slug]
        if pack.steps is None and base_steps is None:
            if DEFAULT_PACK not in files:
                problems.append(f"{file}: extends: 'default' but there is no default.toml")
            continue  # a broken default.toml is already reported
        try:
            protocols[slug] = _build(file, pack, base_steps)
        except ProtocolError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ProtocolError(problems)
    return protocols


@lru_cache(maxsize=1)
def get_protocols() -> dict[str, Protocol]:
    """The shipped packs merged with the clinic's override directory (settings.protocols_dir); cached."""
    return load_protocols(override_dir=get_settings().protocols_dir)


def get_protocol(injury: str) -> Protocol:
    protocols = get_protocols()
    try:
        return protocols[injury]
    except KeyError:
        raise KeyError(f"no protocol for injury '{injury}'; known: {_allowed(set(protocols))}") from None
