"""Evaluating the escalation rules: the inputs a rule may look at (answers, context and history, with the
derived values), and :func:`evaluate`, which is pure (no database, no clock, no I/O) and returns what to show
and to audit: the rule-set version, the inputs and the fired rules, most urgent first."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from models.survey import BASELINE_PAIN_RECALL, PainRecall
from needlecare.followup.questions import NONE_OF_THESE, PAIN_RECALL, Bruise, SurveyAnswers
from needlecare.safety.rules.conditions import holds
from needlecare.safety.rules.ruleset import RuleSet
from needlecare.safety.rules.variables import TIER_RANK, VARIABLES, Tier

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
    baseline_nprs_recall: PainRecall = BASELINE_PAIN_RECALL
    nprs_usual: _Scale | None = None
    nprs_usual_recall: PainRecall = PAIN_RECALL["nprs_usual"]
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
        """nprs_usual − baseline_nprs: positive means worse than at the start of the episode.

        None unless both were asked with the same recall period (domain.md §2): pain "right now" is not
        compared with usual pain over 24 h, so R9, R14's high-risk branch and R17's pain branch never fire on
        such a pair."""
        if self.nprs_usual is None or self.baseline_nprs is None:
            return None
        if self.nprs_usual_recall != self.baseline_nprs_recall:
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
            getting_worse=answers.getting_worse,
            cannot_walk=answers.cannot_walk,
            free_text=answers.free_text,
            **context,
        )


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
    fired.sort(key=lambda f: -TIER_RANK[f.tier])  # stable: file order within a tier
    highest = fired[0].tier if fired else None
    return Evaluation(rules_version=rules.version, inputs=variables, fired=fired, highest_tier=highest)
