"""R16 over the patient's own words: phrases that must escalate (misspellings, synonyms, accents, case,
punctuation) and ordinary running talk that must not."""

import pytest

from needlecare.safety.rules.evaluation import EvaluationInput, evaluate
from needlecare.safety.rules.keywords import edit_distance, normalise
from needlecare.safety.rules.ruleset import get_rules

MUST_TRIGGER = [
    "I passed out after the session",
    "nearly PASSED OUT in the shower",
    "blacked out for a second",
    "I fainted",
    "felt fiant at work",  # swapped letters
    "fainting spell this morning",
    "I collapsed on the stairs",
    "short of breath since yesterday",
    "hard to breathe",
    "cant breath properly",
    "can\u2019t breathe",
    "I was breathless walking upstairs",
    "shortness of breth",  # misspelt
    "brething hurts",  # misspelt
    "breatheing is painful",
    "wheezing at night",
    "tight chest",
    "Chest pain!!",
    "pain in my chset",  # swapped letters
    "my heart is racing",
    "I have a fever",
    "feverish and achy",
    "high temp last night",
    "running a temperature",
    "shivering and chills",
    "there is pus at the spot",
    "some discharge from the needle site",
    "the spot is oozing",
    "I think it is infected",
    "looks infcted",  # misspelt
    "my foot is numb",
    "numbness in my toes",
    "Numbnes in the calf",  # misspelt
    "tingling down the leg",
    "pins and needles in my foot",
    "lost feeling in two toes",
    "can't feel my heel",
    "my leg feels weak",
    "weakness in the ankle",
    "foot drop when I walk",
    "my knee keeps giving way",
    "it is still bleeding",
    "bleding a lot",  # misspelt
    "blood on the plaster",
    "it bled overnight",
    "I can't walk",
    "I CANNOT walk",
    "cant walk on it",
    "can not walk today",
    "unable to walk",
    "couldn't walk this morning",
    "I can\u2019t bear weight on it",
    "I can't put weight on the foot",
    "Fi\u00e8vre depuis hier, fever",  # accents around a keyword
    "breath-taking pain... I mean short of breath",
]

MUST_NOT_TRIGGER = [
    "Feeling great, ran 5k without pain",
    "a bit sore but fine",
    "Pushed hard on my long run",
    "took the bus to work",
    "plus a little bruise",
    "never felt better",
    "the weekend was good",
    "I walked the dog",
    "walking is easier now",
    "I can walk normally",
    "bruise is fading",
    "stretching every day as advised",
    "thanks for the advice",
    "my calf feels looser",
    "cheerful and rested",
    "I ran a tempo session",
    "heel is much better",
    "",
    "   ",
]


def r16_fires(text: str) -> bool:
    inputs = EvaluationInput(free_text=text, hours_since_session=24, regions_needled=["calf"])
    return "R16" in {rule.id for rule in evaluate(get_rules(), inputs).fired}


@pytest.mark.parametrize("text", MUST_TRIGGER)
def test_warning_words_escalate(text: str) -> None:
    assert r16_fires(text), text


@pytest.mark.parametrize("text", MUST_NOT_TRIGGER)
def test_ordinary_words_do_not(text: str) -> None:
    assert not r16_fires(text), text


def test_the_table_is_large_enough() -> None:
    assert len(MUST_TRIGGER) + len(MUST_NOT_TRIGGER) >= 60


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Can\u2019t WALK!", "cant walk"),
        ("Fi\u00e8vre", "fievre"),
        ("short-of-breath", "short of breath"),
        ("pins&needles", "pins and needles"),
    ],
)
def test_normalise(raw: str, normal: str) -> None:
    assert normalise(raw) == normal


@pytest.mark.parametrize(
    ("a", "b", "distance"), [("fever", "fever", 0), ("fevr", "fever", 1), ("chset", "chest", 1), ("never", "fever", 1)]
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b, 2) == distance
