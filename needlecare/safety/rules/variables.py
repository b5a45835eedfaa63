"""The vocabulary of the escalation rules: tiers (most urgent first), the variables a condition may name with
their kind, the operators each kind takes, and the values a text or list variable may hold."""

from collections.abc import Iterable
from typing import Literal

from models.survey import PainRecall
from needlecare.core.catalogue import get_catalogue
from needlecare.followup.questions import BRUISE_OPTIONS, BY_TEXT, REDFLAGS

Tier = Literal["EMERGENCY", "SAME_DAY", "NEXT_BD", "INFO"]
TIERS: tuple[Tier, ...] = ("EMERGENCY", "SAME_DAY", "NEXT_BD", "INFO")  # most urgent first
TIER_RANK: dict[str, int] = {tier: len(TIERS) - i for i, tier in enumerate(TIERS)}  # higher = more urgent

Kind = Literal["number", "text", "bool", "list", "free_text"]
# Every variable a condition may name, with its kind. Derived values are computed in EvaluationInput.variables.
VARIABLES: dict[str, Kind] = {
    "baseline_nprs": "number",
    "baseline_nprs_recall": "text",  # recall periods (domain.md §2): change is derived only when they agree
    "nprs_usual": "number",
    "nprs_usual_recall": "text",
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


def known_values() -> dict[str, frozenset[str]]:
    """Values a text or list variable can take, where they are fixed (checked when the file loads)."""
    catalogue = get_catalogue()
    return {
        "redflags": frozenset(REDFLAGS) | {BY_TEXT},  # BY_TEXT: a warning sign replied by text, not said which
        "regions_needled": frozenset(catalogue.regions),
        "injury_slug": frozenset(catalogue.injuries),
        "bruise": frozenset(BRUISE_OPTIONS),
        "previous_check_tier": frozenset(TIERS),
        "bsi_risk_class": frozenset({"high", "low"}),
        "baseline_nprs_recall": frozenset(r.value for r in PainRecall),
        "nprs_usual_recall": frozenset(r.value for r in PainRecall),
    }


def allowed(values: Iterable[str]) -> str:
    """The allowed values, as listed in a problem message."""
    return ", ".join(values)
