"""Safety escalation rules (domain.md §6) as versioned data, and a pure evaluator.

The rules live in ``rules/escalation.toml`` at the project root (its header documents the format). Each rule
has an id, a version, a tier, a condition written as data (``all`` / ``any`` of ``{var, op, value}`` tests;
nothing is evaluated as code), an optional ``upgrade`` to a more urgent tier, a patient message, a
practitioner message and a source.

:func:`evaluate` is pure: no database, no clock, no I/O. It returns the fired rules, the highest tier, the
rule-set version and the inputs, so the caller can store "rule version, inputs, result" for the audit log.

Safety properties:
- a test on a variable with no value is false, and the language has no negation, so a missing answer never
  fires a rule that needs it and no rule can remove another rule's escalation (free-text keywords only add);
- every problem in the file is a :class:`RulesError` naming the file, the field path and what is allowed.
"""

import math
import re
import tomllib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from needlecare.core.catalogue import get_catalogue
from needlecare.followup.questions import BRUISE_OPTIONS, NONE_OF_THESE, REDFLAGS, Bruise, SurveyAnswers

DEFAULT_PATH: Path = Path(__file__).resolve().parents[2] / "rules" / "escalation.toml"

Tier = Literal["EMERGENCY", "SAME_DAY", "NEXT_BD", "INFO"]
TIERS: tuple[Tier, ...] = ("EMERGENCY", "SAME_DAY", "NEXT_BD", "INFO")  # most urgent first
_RANK: dict[str, int] = {tier: len(TIERS) - i for i, tier in enumerate(TIERS)}  # higher = more urgent

Kind = Literal["number", "text", "bool", "list", "free_text"]
# Every variable a condition may name, with its kind. Derived values are computed in EvaluationInput.variables.
VARIABLES: dict[str, Kind] = {
    "baseline_nprs": "number",
    "nprs_usual": "number",
    "nprs_worst": "number",
    "nprs_usual_change": "number",
    "nprs_usual_drop": "number",
    "nprs_usual_drop_pct": "number",
    "soreness": "number",
    "groc15": "number",
    "previous_groc15": "number",
    "hours_since_session": "number",
    "fever_c": "number",
    "step_id": "text",
    "injury_slug": "text",
    "bsi_risk_class": "text",
    "bruise": "text",
    "previous_check_tier": "text",
    "regions_needled": "list",
    "redflags": "list",
    "fainted": "bool",
    "getting_worse": "bool",
    "cannot_walk": "bool",
    "missed_after_reminder": "bool",
    "free_text": "free_text",
}
OPERATORS: dict[Kind, tuple[str, ...]] = {
    "number": (">=", ">", "<=", "<", "=="),
    "text": ("==", "in"),
    "bool": ("==",),
    "list": ("contains_any",),
    "free_text": ("matches_keywords",),
}
_VALUE_HELP: dict[str, str] = {
    ">=": "a number",
    ">": "a number",
    "<=": "a number",
    "<": "a number",
    "contains_any": "a non-empty list of strings",
    "matches_keywords": "a non-empty list of non-empty strings",
    "in": "a non-empty list of strings",
}
_SLUG = r"^[A-Za-z0-9_]+$"
_NonEmpty = Annotated[str, Field(min_length=1)]


def _known_values() -> dict[str, frozenset[str]]:
    """Values a text or list variable can take, where they are fixed (checked when the file loads)."""
    catalogue = get_catalogue()
    return {
        "redflags": frozenset(REDFLAGS),
        "regions_needled": frozenset(catalogue.regions),
        "injury_slug": frozenset(catalogue.injuries),
        "bruise": frozenset(BRUISE_OPTIONS),
        "previous_check_tier": frozenset(TIERS),
        "bsi_risk_class": frozenset({"high", "low"}),
    }


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


def _allowed(values: Iterable[str]) -> str:
    return ", ".join(values)


# ---- Conditions ------------------------------------------------------------------------------------------


class Predicate(BaseModel):
    """``{ var = "nprs_worst", op = ">=", value = 8 }``: one test on one variable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    var: str
    op: str
    value: Any

    @field_validator("var")
    @classmethod
    def _var(cls, var: str) -> str:
        if var not in VARIABLES:
            raise ValueError(f"unknown variable '{var}'; allowed: {_allowed(VARIABLES)}")
        return var

    @field_validator("op")
    @classmethod
    def _op(cls, op: str, info: ValidationInfo) -> str:
        var = info.data.get("var")
        if var is None:
            return op  # the variable is already reported
        allowed = OPERATORS[VARIABLES[var]]
        if op not in allowed:
            kind = VARIABLES[var]
            raise ValueError(f"unknown operator '{op}' for {kind} variable '{var}'; allowed: {_allowed(allowed)}")
        return op

    @field_validator("value")
    @classmethod
    def _value(cls, value: Any, info: ValidationInfo) -> Any:
        var, op = info.data.get("var"), info.data.get("op")
        if var is None or op is None:
            return value  # already reported
        kind = VARIABLES[var]
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"operator '{op}' on '{var}' needs a number; got {value!r}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"operator '{op}' on '{var}' needs true or false; got {value!r}")
            return value
        if op == "==":
            if not isinstance(value, str):
                raise ValueError(f"operator '==' on '{var}' needs a string; got {value!r}")
            values = [value]
        else:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"operator '{op}' on '{var}' needs {_VALUE_HELP[op]}; got {value!r}")
            values = value
        known = _known_values().get(var)
        if known is not None:
            unknown = [v for v in values if v not in known]
            if unknown:
                given = _allowed(repr(v) for v in unknown)
                raise ValueError(f"unknown value(s) for '{var}': {given}; allowed: {_allowed(sorted(known))}")
        if op == "matches_keywords":
            return [_normalise(v) for v in values]
        return value


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    all: list["Condition"] = Field(min_length=1)


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    any: list["Condition"] = Field(min_length=1)


def _condition_kind(raw: Any) -> str | None:
    if isinstance(raw, dict):
        if "all" in raw:
            return "all_of"
        if "any" in raw:
            return "any_of"
        return "test"
    if isinstance(raw, Predicate):
        return "test"
    if isinstance(raw, AllOf):
        return "all_of"
    if isinstance(raw, AnyOf):
        return "any_of"
    return None


_CONDITION_TAGS = ("test", "all_of", "any_of")
Condition = Annotated[
    Union[Annotated[Predicate, Tag("test")], Annotated[AllOf, Tag("all_of")], Annotated[AnyOf, Tag("any_of")]],  # noqa: UP007
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition is a table: all = [...], any = [...], or var, op and value",
    ),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()


# ---- Rules -----------------------------------------------------------------------------------------------


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
        elif part in _CONDITION_TAGS:
            continue  # union tags pydantic adds to the location
        else:
            out += f".{part}" if out else part
    return out


def _validation_problems(file: Path, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error" and err["loc"] and err["loc"][-1] == "tier":
            msg = f"unknown tier {err['input']!r}; allowed: {_allowed(TIERS)}"
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
        if _RANK[upgrade.tier] <= _RANK[rule.tier]:
            more_urgent = [t for t in TIERS if _RANK[t] > _RANK[rule.tier]]
            problems.append(
                f"{file}: rules[{index}].upgrade.tier: '{upgrade.tier}' is not more urgent than the rule's tier "
                f"'{rule.tier}'; allowed: {_allowed(more_urgent) or 'none (the rule is already EMERGENCY)'}"
            )
        for j, other in enumerate(upgrade.when_rules):
            if other not in first:
                problems.append(
                    f"{file}: rules[{index}].upgrade.when_rules[{j}]: no rule '{other}'; allowed: {_allowed(first)}"
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


# ---- Inputs ----------------------------------------------------------------------------------------------

_Scale = Annotated[int, Field(ge=0, le=10)]
_Groc = Annotated[int, Field(ge=-7, le=7)]


class EvaluationInput(BaseModel):
    """Everything a rule may look at (domain.md §6 variables). None means not asked, skipped or unknown.

    History is supplied by the caller: ``previous_groc15`` (GROC at the previous check of the episode),
    ``previous_check_tier`` (highest tier the previous check fired) and ``missed_after_reminder`` (this safety
    check got no answer after its reminder; evaluate with no answers). Derived values (``nprs_usual_change``,
    ``nprs_usual_drop``, ``nprs_usual_drop_pct``) are computed here and nowhere else.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours_since_session: float = Field(ge=0)
    step_id: str | None = None
    regions_needled: list[str] = []
    injury_slug: str | None = None
    bsi_risk_class: Literal["high", "low"] | None = None
    baseline_nprs: _Scale | None = None
    nprs_usual: _Scale | None = None
    nprs_worst: _Scale | None = None
    soreness: _Scale | None = None
    groc15: _Groc | None = None
    previous_groc15: _Groc | None = None
    redflags: list[str] = []
    bruise: Bruise | None = None
    fever_c: float | None = Field(default=None, ge=25, le=45)
    fainted: bool | None = None
    getting_worse: bool | None = None
    cannot_walk: bool | None = None
    previous_check_tier: Tier | None = None
    missed_after_reminder: bool | None = None
    free_text: str | None = None

    @field_validator("redflags")
    @classmethod
    def _drop_none(cls, flags: list[str]) -> list[str]:
        return [flag for flag in flags if flag != NONE_OF_THESE]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def nprs_usual_change(self) -> int | None:
        """nprs_usual − baseline_nprs: positive means worse than at the start of the episode."""
        if self.nprs_usual is None or self.baseline_nprs is None:
            return None
        return self.nprs_usual - self.baseline_nprs

    @computed_field  # type: ignore[prop-decorator]
    @property
    def nprs_usual_drop(self) -> int | None:
        """baseline_nprs − nprs_usual: positive means better."""
        change = self.nprs_usual_change
        return None if change is None else -change

    @computed_field  # type: ignore[prop-decorator]
    @property
    def nprs_usual_drop_pct(self) -> float | None:
        """The drop as a percentage of the baseline (None when the baseline is 0 or unknown)."""
        drop = self.nprs_usual_drop
        if drop is None or not self.baseline_nprs:
            return None
        return 100.0 * drop / self.baseline_nprs

    def variables(self) -> dict[str, Any]:
        """Every variable a condition may name, by name (inputs and derived values)."""
        values = self.model_dump()
        return {name: values[name] for name in VARIABLES}

    @classmethod
    def from_answers(cls, answers: SurveyAnswers, **context: Any) -> "EvaluationInput":
        """Inputs from validated survey answers plus context (hours_since_session, step_id, baseline_nprs, ...)."""
        return cls(
            nprs_usual=answers.nprs_usual,
            nprs_worst=answers.nprs_worst,
            soreness=answers.soreness,
            groc15=answers.groc15,
            redflags=answers.ticked_redflags,
            bruise=answers.bruise,
            fainted=answers.fainted,
            free_text=answers.free_text,
            **context,
        )


# ---- Evaluation ------------------------------------------------------------------------------------------


class FiredRule(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    version: int
    tier: Tier  # after any upgrade
    upgraded: bool
    patient_message: str
    practitioner_message: str


class Evaluation(BaseModel):
    """The result to show and to audit: rule-set version, inputs (with derived values) and fired rules."""

    model_config = ConfigDict(frozen=True)
    rules_version: str
    inputs: dict[str, Any]
    fired: list[FiredRule]  # most urgent first, then in file order
    highest_tier: Tier | None

    @property
    def fired_ids(self) -> list[str]:
        return [rule.id for rule in self.fired]

    def tier_of(self, rule_id: str) -> Tier | None:
        return next((rule.tier for rule in self.fired if rule.id == rule_id), None)


def _normalise(text: str) -> str:
    text = text.casefold().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return " ".join(text.split())


@lru_cache(maxsize=256)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    prefix = keyword.endswith("*")
    words = keyword.rstrip("*").split()
    body = r"\s+".join(re.escape(word) for word in words)
    return re.compile(r"(?<![\w'])" + body + (r"" if prefix else r"(?![\w'])"))


def _matches_keywords(text: str, keywords: list[str]) -> bool:
    normal = _normalise(text)
    return any(_keyword_pattern(keyword).search(normal) for keyword in keywords)


def _test(predicate: Predicate, variables: dict[str, Any]) -> bool:
    actual = variables[predicate.var]
    if actual is None:
        return False  # missing answers never fire a rule
    op, value = predicate.op, predicate.value
    if op == "contains_any":
        return bool(set(actual) & set(value))
    if op == "matches_keywords":
        return bool(actual.strip()) and _matches_keywords(actual, value)
    if op == "in":
        return bool(actual in value)
    if op == "==":
        return bool(actual == value)
    if op == ">=":
        return bool(actual >= value)
    if op == ">":
        return bool(actual > value)
    if op == "<=":
        return bool(actual <= value)
    if op == "<":
        return bool(actual < value)
    raise AssertionError(f"operator {op!r} passed validation but has no implementation")


def holds(condition: Predicate | AllOf | AnyOf, variables: dict[str, Any]) -> bool:
    """Whether a condition holds for these variables (see EvaluationInput.variables)."""
    if isinstance(condition, AllOf):
        return all(holds(part, variables) for part in condition.all)
    if isinstance(condition, AnyOf):
        return any(holds(part, variables) for part in condition.any)
    return _test(condition, variables)


def evaluate(rules: RuleSet, inp: EvaluationInput) -> Evaluation:
    """Apply every rule to the inputs. Pure: the same rules and inputs always give the same result."""
    variables = inp.variables()
    base = [rule for rule in rules.rules if holds(rule.when, variables)]
    fired_ids = {rule.id for rule in base}
    fired: list[FiredRule] = []
    for rule in base:
        upgrade = rule.upgrade
        up = upgrade is not None and (
            (upgrade.when is not None and holds(upgrade.when, variables))
            or any(other in fired_ids for other in upgrade.when_rules)
        )
        if upgrade is not None and up:
            fired.append(
                FiredRule(
                    id=rule.id,
                    version=rule.version,
                    tier=upgrade.tier,
                    upgraded=True,
                    patient_message=upgrade.patient_message,
                    practitioner_message=upgrade.practitioner_message,
                )
            )
        else:
            fired.append(
                FiredRule(
                    id=rule.id,
                    version=rule.version,
                    tier=rule.tier,
                    upgraded=False,
                    patient_message=rule.patient_message,
                    practitioner_message=rule.practitioner_message,
                )
            )
    fired.sort(key=lambda f: -_RANK[f.tier])  # stable: file order within a tier
    highest = fired[0].tier if fired else None
    return Evaluation(rules_version=rules.version, inputs=variables, fired=fired, highest_tier=highest)
