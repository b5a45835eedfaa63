"""Every branch of every escalation rule can fire from answers a patient can give to the questions a
protocol asks, with the context the session contract and the follow-up history can supply.

A branch is one alternative of a rule's ``when`` (each item of a top-level ``any``), or an upgrade: each
alternative of its ``when``, and each rule of its ``when_rules``, together with the rule's own ``when``. For
each protocol step the search builds raw answers from the branch's tests (the encoders below), sends them
through the real validator (``validate_answers``), the real ``EvaluationInput.from_answers`` and the real
``evaluate``, and keeps only witnesses where the rule fires (upgraded, for an upgrade). An encoder that guesses
wrong can only make a branch look unreachable, never make it pass. Context the caller supplies (hours since
the session, regions, baseline, bone-stress risk class, history) is limited to what the contract and the
step's window and place in the schedule allow; one witness per branch is then replayed through a stored
session and ``escalation.inputs_for`` on the database.

A reply by text message is a question the patient is asked too: a step with ``sms_reply_questions`` is also
searched as those questions alone, validated as an SMS answer (``validate_sms_reply``: a warning sign is
``warning_sign_by_text``).
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session

from models import Clinic, SessionCompleted
from needlecare.core.catalogue import get_catalogue
from needlecare.followup.protocol_schema import Protocol, Step
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import InvalidAnswers, SurveyAnswers, validate_answers, validate_sms_reply
from needlecare.safety import escalation
from needlecare.safety.rules.conditions import AllOf, AnyOf, Predicate, holds
from needlecare.safety.rules.evaluation import EvaluationInput, evaluate
from needlecare.safety.rules.ruleset import Rule, get_rules
from needlecare.safety.rules.variables import TIERS
from tests.records import make_contact, make_session

BSI = "bone_stress_injury"
# Branches no shipped protocol can reach, each with why. Empty: every branch must be reachable (the product
# rule); the test fails if this is not exactly the unreachable set, so a new gap has to be written down here
# and fails review.
KNOWN_GAPS: dict[str, str] = {}
# Questions that feed no rule by design: outcome measures for the reports (domain.md §1.4, §2, §5).
OUTCOME_ONLY = frozenset({"psfs", "rom", "ran", "run_pain"})
# Neutral answers that fire nothing, for the questions a branch does not need.
NEUTRAL: dict[str, Any] = {
    "nprs_usual": 3,
    "nprs_worst": 3,
    "soreness": 0,
    "bruise": "none",
    "groc15": 0,
    "redflags": ["none"],
    "fainted": False,
    "ran": False,
    "psfs": [{"activity": "Running", "score": 5}],
}
PAIN = ("baseline_nprs", "nprs_usual", "nprs_usual_change", "nprs_usual_drop", "nprs_usual_drop_pct")
CONTEXT = frozenset(
    {
        "hours_since_session",
        "step_id",
        "injury_slug",
        "regions_needled",
        "bsi_risk_class",
        "previous_groc15",
        "previous_check_tier",
        "missed_after_reminder",
    }
)
# Raw answers standing for one test on an answer variable (checked by the real validator and evaluator).
NERVE_WITH = {"getting_worse": "nerve_getting_worse", "cannot_walk": "nerve_cannot_walk"}

Leaf = Predicate
Conj = list[Predicate]


@dataclass(frozen=True)
class Branch:
    name: str
    rule: Rule
    conj: Conj
    upgraded: bool


@dataclass
class Witness:
    branch: Branch
    protocol: str
    step: Step
    data: dict[str, Any] | None  # None: the check was missed (no answers)
    context: dict[str, Any]
    by_text: bool = False  # answered by text message: the step's sms_reply_questions only


def dnf(condition: Predicate | AllOf | AnyOf) -> list[Conj]:
    """The condition as alternatives of conjunctions of tests."""
    if isinstance(condition, Predicate):
        return [[condition]]
    if isinstance(condition, AnyOf):
        return [conj for part in condition.any for conj in dnf(part)]
    out: list[Conj] = [[]]
    for part in condition.all:
        out = [left + right for left in out for right in dnf(part)]
    return out


def branches() -> list[Branch]:
    rules = get_rules()
    by_id = {rule.id: rule for rule in rules.rules}
    out: list[Branch] = []
    for rule in rules.rules:
        parts = rule.when.any if isinstance(rule.when, AnyOf) else [rule.when]
        for index, part in enumerate(parts):
            name = f"{rule.id} when[{index}]" if len(parts) > 1 else f"{rule.id} when"
            out += [Branch(name, rule, conj, False) for conj in dnf(part)]
        upgrade = rule.upgrade
        if upgrade is None:
            continue
        base = dnf(rule.when)
        if upgrade.when is not None:
            ups = upgrade.when.any if isinstance(upgrade.when, AnyOf) else [upgrade.when]
            for index, part in enumerate(ups):
                name = f"{rule.id} upgrade[{index}]" if len(ups) > 1 else f"{rule.id} upgrade"
                out += [Branch(name, rule, b + u, True) for b in base for u in dnf(part)]
        for other in upgrade.when_rules:
            out += [
                Branch(f"{rule.id} upgrade with {other}", rule, b + o, True)
                for b in base
                for o in dnf(by_id[other].when)
            ]
    return out


def _numbers(leaf: Leaf, low: float, high: float, whole: bool = True) -> list[float]:
    v = float(leaf.value)
    step = 1.0 if whole else 0.5
    candidates = {v, v + step, v - step, low, high}
    return sorted(c for c in candidates if low <= c <= high)


def _answer_fragments(leaf: Leaf) -> list[dict[str, Any]]:
    """Raw answers that may make one test on an answer variable hold."""
    var = leaf.var
    if var in ("soreness", "nprs_worst"):
        return [{var: int(n)} for n in _numbers(leaf, 0, 10)]
    if var == "groc15":
        return [{var: int(n)} for n in _numbers(leaf, -7, 7)]
    if var == "bruise":
        return [{var: leaf.value}]
    if var == "redflags":
        return [{"redflags": [flag]} for flag in leaf.value]
    if var == "fainted":
        return [{"fainted": leaf.value}]
    if var == "free_text":
        return [{"free_text": f"It is {str(word).rstrip('*')} today"} for word in leaf.value[:3]]
    if var in NERVE_WITH:
        return [{"redflags": [nerve, NERVE_WITH[var]]} for nerve in ("new_weakness", "foot_drop")]
    return []


def _merge(fragments: tuple[dict[str, Any], ...]) -> dict[str, Any] | None:
    data: dict[str, Any] = {}
    for fragment in fragments:
        for key, value in fragment.items():
            if key == "redflags":
                data["redflags"] = list(dict.fromkeys([*data.get("redflags", []), *value]))
            elif key in data and data[key] != value:
                return None
            else:
                data[key] = value
    return data


def _hours(step: Step, conj: Conj) -> list[float]:
    """Hours since the session this step can be answered at (session steps: inside the window)."""
    marks = {float(leaf.value) + d for leaf in conj if leaf.var == "hours_since_session" for d in (-1, 0, 1)}
    if step.scope == "session":
        low, high = step.window_start_hours, step.window_end_hours - 0.5
        return sorted({low, step.offset_hours, high} | {m for m in marks if low <= m <= high})
    return sorted({0.0, 24.0, 72.0, 168.0} | {m for m in marks if m >= 0})  # the episode's latest session


def _earlier(protocol: Protocol, step: Step) -> list[Step]:
    return [s for s in protocol.steps if s.offset_hours < step.offset_hours and s.scope == step.scope] + [
        s for s in protocol.steps if s.scope == "session" and step.scope == "episode"
    ]


def _context_options(protocol: Protocol, step: Step, conj: Conj) -> Iterator[dict[str, Any]]:
    """The context values the branch's tests name, as far as the contract and the schedule allow them."""
    catalogue = get_catalogue()
    named = {leaf.var for leaf in conj}
    earlier = _earlier(protocol, step)
    regions = [[r] for leaf in conj if leaf.var == "regions_needled" for r in leaf.value if r in catalogue.regions]
    # The contract decides whether a session can carry the bone-stress risk class (domain.md §1.3).
    risk = ["high", "low"] if protocol.injury == BSI and "bsi_risk_class" in SessionCompleted.model_fields else []
    groc = list(range(-7, 8)) if any("groc15" in s.questions for s in earlier) else []
    tiers = list(TIERS) if any(s.safety for s in earlier) else []
    options: dict[str, list[Any]] = {
        "hours_since_session": _hours(step, conj) if "hours_since_session" in named else [step.offset_hours],
        "regions_needled": regions if "regions_needled" in named else [["calf"]],
        "bsi_risk_class": risk if "bsi_risk_class" in named else [None],
        "previous_groc15": groc if "previous_groc15" in named else [None],
        "previous_check_tier": tiers if "previous_check_tier" in named else [None],
    }
    for values in itertools.product(*options.values()):
        yield dict(zip(options, values, strict=True)) | {"step_id": step.id, "injury_slug": protocol.injury}


def _fires(branch: Branch, inp: EvaluationInput) -> bool:
    """The rule fires (a base branch may fire upgraded too); an upgrade branch fires upgraded."""
    if not all(holds(leaf, inp.variables()) for leaf in branch.conj):
        return False
    fired = evaluate(get_rules(), inp)
    return any(rule.id == branch.rule.id and (rule.upgraded or not branch.upgraded) for rule in fired.fired)


def _pain_pairs(conj: Conj, step: Step) -> list[tuple[int | None, int | None]]:
    if not any(leaf.var in PAIN for leaf in conj):
        return [(None, None)]
    if "nprs_usual" not in step.questions:
        return []
    return [(b, u) for b in range(11) for u in range(11)]


def _validated(data: dict[str, Any], protocol: Protocol, step: Step, by_text: bool = False) -> SurveyAnswers | None:
    asked = step.sms_reply_questions if by_text else step.questions
    full = {q: NEUTRAL[q] for q in asked if q in NEUTRAL} | data
    if "redflags" in data:
        full["redflags"] = data["redflags"]
    try:
        if by_text:
            return validate_sms_reply(full, protocol=protocol, step=step, regions_needled=["calf"])
        return validate_answers(full, protocol=protocol, step=step, regions_needled=["calf"])
    except InvalidAnswers:
        return None


def find_witness(branch: Branch, protocol: Protocol, step: Step, by_text: bool = False) -> Witness | None:
    conj = branch.conj
    vars_ = {leaf.var for leaf in conj}
    if "missed_after_reminder" in vars_:  # an unanswered safety check after its reminder: no answers at all
        if not (step.safety and step.reminder_hours) or vars_ - CONTEXT - {"missed_after_reminder"}:
            return None
        for context in _context_options(protocol, step, conj):
            if _fires(branch, EvaluationInput(missed_after_reminder=True, **context)):
                return Witness(branch, protocol.injury, step, None, context)
        return None
    answer_leaves = [leaf for leaf in conj if leaf.var not in CONTEXT and leaf.var not in PAIN]
    choices = [_answer_fragments(leaf) for leaf in answer_leaves]
    asked = step.sms_reply_questions if by_text else step.questions
    for fragments in itertools.product(*choices):
        data = _merge(fragments)
        if data is None or not set(data) <= set(asked):
            continue
        for baseline, usual in _pain_pairs(conj, step.model_copy(update={"questions": asked})):
            trial = data | ({"nprs_usual": usual} if usual is not None else {})
            answers = _validated(trial, protocol, step, by_text)
            if answers is None:
                continue
            for context in _context_options(protocol, step, conj):
                inp = EvaluationInput.from_answers(answers, **context, baseline_nprs=baseline)
                if _fires(branch, inp):
                    context_used = context | {"baseline_nprs": baseline}
                    return Witness(branch, protocol.injury, step, trial, context_used, by_text)
    return None


def protocols() -> list[Protocol]:
    return [get_protocol(injury) for injury in sorted(get_catalogue().injuries)]


def search() -> dict[str, list[Witness]]:
    """Per branch, one witness per protocol that can reach it (the first step that can)."""
    found: dict[str, list[Witness]] = {}
    for branch in branches():
        found.setdefault(branch.name, [])
        for protocol in protocols():
            asked = [(step, False) for step in protocol.steps]
            asked += [(step, True) for step in protocol.steps if step.sms_reply_questions]  # a reply by text
            for step, by_text in asked:
                witness = find_witness(branch, protocol, step, by_text)
                if witness is not None:
                    found[branch.name].append(witness)
                    break
    return found


@pytest.fixture(scope="module")
def witnesses() -> dict[str, list[Witness]]:
    return search()


def test_every_rule_branch_has_a_survey_path(witnesses: dict[str, list[Witness]]) -> None:
    unreachable = sorted(name for name, found in witnesses.items() if not found)
    assert set(unreachable) == set(KNOWN_GAPS), (
        f"unreachable now: {unreachable}; written down as known gaps: {sorted(KNOWN_GAPS)}"
    )


@pytest.mark.parametrize(
    ("branch", "injury"),
    [
        ("R6 upgrade[0]", "achilles_tendinopathy"),  # getting worse: EMERGENCY
        ("R6 upgrade[1]", "hamstring_strain"),  # cannot walk normally: EMERGENCY
        ("R14 when[1]", BSI),  # high-risk site, usual pain up 1 or more
        ("R4 when[1]", "calf_strain"),  # the faint yes/no answer with palpitations, chest pain or a fall injury
    ],
)
def test_the_branches_the_audit_found_unreachable_now_fire(
    witnesses: dict[str, list[Witness]], branch: str, injury: str
) -> None:
    assert injury in {w.protocol for w in witnesses[branch]}, [w.protocol for w in witnesses[branch]]


@pytest.mark.parametrize(
    ("branch", "step_id"),
    [
        ("R7 when[1]", "check_72h"),  # a bruise still spreading at 48 h or later: bruising asked at 72 h
        ("R10 upgrade with R8", "check_24h"),  # strong soreness with worst pain 8/10 or more: worst pain at 24 h
        ("R11 when[1]", "check_7d"),  # any soreness left at 1 week: soreness asked at 7 days
    ],
)
def test_the_closed_gaps_fire_at_their_check_in_every_protocol(
    witnesses: dict[str, list[Witness]], branch: str, step_id: str
) -> None:
    assert {w.protocol for w in witnesses[branch] if w.step.id == step_id} == {p.injury for p in protocols()}


def test_rules_have_no_branch_that_can_never_fire_when_it_is_evaluated() -> None:
    """R10 (24-hour check only) no longer upgrades with R9 (60 h or more); R5 no longer tests a temperature
    no check asks for."""
    by_id = {rule.id: rule for rule in get_rules().rules}
    upgrade = by_id["R10"].upgrade
    assert upgrade is not None and upgrade.when_rules == ["R8"]
    assert all(leaf.var != "fever_c" for conj in dnf(by_id["R5"].when) for leaf in conj)
    assert (by_id["R5"].version, by_id["R10"].version) == (2, 2)


def test_every_question_asked_feeds_a_rule_or_is_an_outcome_measure(witnesses: dict[str, list[Witness]]) -> None:
    asked = {q for protocol in protocols() for step in protocol.steps for q in step.questions}
    feeding = {q for found in witnesses.values() for w in found for q in (w.data or {})}
    assert asked - feeding - OUTCOME_ONLY == set(), "asked but feeds no rule"
    assert "fainted" in feeding


def test_a_known_gap_is_named_after_a_branch_that_exists() -> None:
    assert set(KNOWN_GAPS) <= {branch.name for branch in branches()}


def _replayable(witness: Witness) -> bool:
    context = witness.context
    return witness.data is not None and context["previous_groc15"] is None and context["previous_check_tier"] is None


def test_witnesses_fire_through_a_stored_session_and_inputs_for(
    db: Session, clinic: Clinic, witnesses: dict[str, list[Witness]]
) -> None:
    """One witness per branch (answers only, no history) through ingest, a contact and inputs_for."""
    replayed: set[str] = set()
    for n, (name, found) in enumerate(sorted(witnesses.items()), start=1):
        witness = next((w for w in found if _replayable(w)), None)
        if witness is None:
            continue
        context, data = witness.context, witness.data or {}
        hours = float(context["hours_since_session"])
        overrides: dict[str, Any] = {
            "injury": witness.protocol,
            "regions_needled": context["regions_needled"],
            "baseline": {"pain_nprs": context["baseline_nprs"]},
        }
        if context["bsi_risk_class"] is not None:
            overrides["bsi_risk_class"] = context["bsi_risk_class"]
        session = make_session(db, n, **overrides)
        contact = make_contact(db, session, witness.step.id)
        protocol = get_protocol(witness.protocol)
        answers = _validated(data, protocol, witness.step, witness.by_text)
        assert answers is not None, name
        at = session.completed_at + timedelta(hours=hours)
        inp = escalation.inputs_for(db, contact, at, answers)
        assert _fires(witness.branch, inp), (name, inp.variables())
        replayed.add(name)
    assert {"R4 when[1]", "R6 upgrade[0]", "R6 upgrade[1]", "R14 when[1]", "L2 when"} <= replayed
    assert len(replayed) >= 20, sorted(replayed)


def test_a_warning_sign_by_text_is_reached_only_by_a_text_reply(witnesses: dict[str, list[Witness]]) -> None:
    """L2 fires from the 24-hour check's reply by text, in every protocol that lets that check be answered so; the
    web checklist does not offer its item."""
    found = witnesses["L2 when"]
    assert found and all(w.by_text and w.step.id == "check_24h" for w in found), found
    texted = {p.injury for p in protocols() if any(s.sms_reply_questions for s in p.steps)}
    assert {w.protocol for w in found} == texted
