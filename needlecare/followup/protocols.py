"""Follow-up protocol packs: one validated TOML file per injury plus a default, loaded as data.

A pack says when each follow-up step is sent, how long its answers are valid, when to remind,
which questions it asks and which self-test (``rom_test``) the patient may do. The shipped packs
live in ``protocols/`` at the project root; a clinic's override directory
(``Settings.protocols_dir``) may hold files of the same name that replace them. The file format is
described in the header of ``protocols/default.toml``; the shape of a protocol (steps, self-test, the question
ids) is ``needlecare.followup.protocol_schema``, and this module reads, merges and checks the files.

Every problem is reported as a :class:`ProtocolError` that names the file, the field path
(``steps[1].window_end_hours``) and what is wrong or allowed.
"""

import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from needlecare.core.catalogue import Catalogue, get_catalogue
from needlecare.core.settings import get_settings
from needlecare.followup.protocol_schema import SLUG, NonEmpty, Protocol, RomTest, Step, allowed

PROTOCOLS_DIR: Path = Path(__file__).resolve().parents[2] / "protocols"
DEFAULT_PACK = "default"


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


class _PackFile(BaseModel):
    """What a pack file may contain: a Protocol plus the loader's own keys (extends, rom_in_steps)."""

    model_config = ConfigDict(extra="forbid")
    injury: str = Field(pattern=SLUG)
    version: NonEmpty
    name: NonEmpty
    extends: Literal["default"] | None = None
    rom_test: RomTest | None = None
    rom_in_steps: list[str] = Field(default_factory=list)
    aftercare_points: list[NonEmpty] = Field(default_factory=list)
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
                f"{allowed(set(catalogue.injuries))}"
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
        raise KeyError(f"no protocol for injury '{injury}'; known: {allowed(set(protocols))}") from None
