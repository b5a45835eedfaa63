"""The condition language of the escalation rules: a test on one variable (``{var, op, value}``), ``all`` and
``any`` of conditions, checked against the vocabulary when the file loads, and how a condition holds for a set
of variables. A test on a variable with no value is false; there is no negation."""

import math
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator

from needlecare.safety.rules import keywords
from needlecare.safety.rules.variables import OPERATORS, VARIABLES, allowed, known_values

_VALUE_HELP: dict[str, str] = {
    ">=": "a number",
    ">": "a number",
    "<=": "a number",
    "<": "a number",
    "contains_any": "a non-empty list of strings",
    "matches_keywords": "a non-empty list of non-empty strings",
    "in": "a non-empty list of strings",
}


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
            raise ValueError(f"unknown variable '{var}'; allowed: {allowed(VARIABLES)}")
        return var

    @field_validator("op")
    @classmethod
    def _op(cls, op: str, info: ValidationInfo) -> str:
        var = info.data.get("var")
        if var is None:
            return op  # the variable is already reported
        ops = OPERATORS[VARIABLES[var]]
        if op not in ops:
            kind = VARIABLES[var]
            raise ValueError(f"unknown operator '{op}' for {kind} variable '{var}'; allowed: {allowed(ops)}")
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
        known = known_values().get(var)
        if known is not None:
            unknown = [v for v in values if v not in known]
            if unknown:
                given = allowed(repr(v) for v in unknown)
                raise ValueError(f"unknown value(s) for '{var}': {given}; allowed: {allowed(sorted(known))}")
        if op == "matches_keywords":
            return [keywords.normalise(v) for v in values]
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


CONDITION_TAGS = ("test", "all_of", "any_of")  # the union tags pydantic adds to an error's location
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


# ---- Holding ---------------------------------------------------------------------------------------------


def _test(predicate: Predicate, variables: dict[str, Any]) -> bool:
    actual = variables[predicate.var]
    if actual is None:
        return False  # missing answers never fire a rule
    op, value = predicate.op, predicate.value
    if op == "contains_any":
        return bool(set(actual) & set(value))
    if op == "matches_keywords":
        return bool(actual.strip()) and keywords.matches_any(actual, value)
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
