"""The escalation rules file: its schema (rules, upgrades, the rule set), the loader that reads and checks it,
and the shipped rule set (``rules/escalation.toml``, loaded once). Every problem in a file is a
:class:`RulesError` naming the file, the field path and what is allowed."""

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from needlecare.safety.rules.conditions import CONDITION_TAGS, Condition
from needlecare.safety.rules.variables import TIER_RANK, TIERS, Tier, allowed

DEFAULT_PATH: Path = Path(__file__).resolve().parents[3] / "rules" / "escalation.toml"

_SLUG = r"^[A-Za-z0-9_]+$"
_NonEmpty = Annotated[str, Field(min_length=1)]


class RulesError(ValueError):
    """A rules file that cannot be used. Each problem names the file, the field path and what is allowed."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{len(self.problems)} problems in the rules file:\n{listed}"
        super().__init__(message)


class Upgrade(BaseModel):
    """A more urgent tier for some cases of a rule: when ``when`` holds or any of ``when_rules`` fired."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tier: Tier
    when: Condition | None = None
    when_rules: list[Annotated[str, Field(pattern=_SLUG)]] = []
    patient_message: _NonEmpty
    practitioner_message: _NonEmpty

    @model_validator(mode="after")
    def _some_trigger(self) -> "Upgrade":
        if self.when is None and not self.when_rules:
            raise ValueError("an upgrade needs `when` (a condition) or `when_rules` (rule ids), or both")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=_SLUG)
    version: int = Field(ge=1)
    tier: Tier
    title: str = Field(min_length=1, max_length=80)  # shown to staff in place of the id
    when: Condition
    upgrade: Upgrade | None = None
    patient_message: _NonEmpty
    practitioner_message: _NonEmpty
    source: _NonEmpty


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: _NonEmpty
    rules: list[Rule] = Field(min_length=1)


# ---- Loading ---------------------------------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in CONDITION_TAGS:
            continue  # union tags pydantic adds to the location
        else:
            out += f".{part}" if out else part
    return out


def _validation_problems(file: Path, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error" and err["loc"] and err["loc"][-1] == "tier":
            msg = f"unknown tier {err['input']!r}; allowed: {allowed(TIERS)}"
        path = _path(err["loc"])
        problems.append(f"{file}: {path}: {msg}" if path else f"{file}: {msg}")
    return problems


def _cross_checks(file: Path, rule_set: RuleSet) -> list[str]:
    problems: list[str] = []
    first: dict[str, int] = {}
    for index, rule in enumerate(rule_set.rules):
        if rule.id in first:
            problems.append(f"{file}: rules[{index}].id: duplicate id '{rule.id}' (also rules[{first[rule.id]}])")
        else:
            first[rule.id] = index
    for index, rule in enumerate(rule_set.rules):
        upgrade = rule.upgrade
        if upgrade is None:
            continue
        if TIER_RANK[upgrade.tier] <= TIER_RANK[rule.tier]:
            more_urgent = [t for t in TIERS if TIER_RANK[t] > TIER_RANK[rule.tier]]
            problems.append(
                f"{file}: rules[{index}].upgrade.tier: '{upgrade.tier}' is not more urgent than the rule's tier "
                f"'{rule.tier}'; allowed: {allowed(more_urgent) or 'none (the rule is already EMERGENCY)'}"
            )
        for j, other in enumerate(upgrade.when_rules):
            if other not in first:
                problems.append(
                    f"{file}: rules[{index}].upgrade.when_rules[{j}]: no rule '{other}'; allowed: {allowed(first)}"
                )
            elif other == rule.id:
                problems.append(f"{file}: rules[{index}].upgrade.when_rules[{j}]: a rule cannot upgrade on itself")
    return problems


def load_rules(path: Path = DEFAULT_PATH) -> RuleSet:
    """Read and check a rules file; raises RulesError listing every problem (file, field path, what is allowed)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot be read: {exc}") from None
    try:
        rule_set = RuleSet.model_validate(raw)
    except ValidationError as exc:
        raise RulesError(_validation_problems(path, exc)) from None
    problems = _cross_checks(path, rule_set)
    if problems:
        raise RulesError(problems)
    return rule_set


@lru_cache(maxsize=1)
def get_rules() -> RuleSet:
    """The shipped rules, loaded once."""
    return load_rules(DEFAULT_PATH)
