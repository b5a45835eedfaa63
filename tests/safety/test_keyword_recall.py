"""R16 recall table: the patient's words that must escalate (lay synonyms, misspellings, case, accents,
punctuation) and everyday running talk that must not, evaluated through the shipped rule file and synonyms
file; and the synonyms file's own checks."""

from pathlib import Path

import pytest

from needlecare.safety.rules.evaluation import EvaluationInput, evaluate
from needlecare.safety.rules.keywords import (
    SYNONYMS_PATH,
    SynonymsError,
    get_synonyms,
    load_synonyms,
    matching_phrase,
    ordinary_words_caught,
)
from needlecare.safety.rules.ruleset import get_rules

MUST_TRIGGER = [
    # fainting and near-fainting (domain.md §3.3)
    "I past out after tea",
    "PASSED OUT in the shower",
    "pased out briefly",
    "I keeled over at work",
    "lost consciousness for a moment",
    "felt dizzy and had to sit",
    "Dizziness all evening",
    "very light-headed this morning",
    "lightheaded after standing up",
    "a bit woozy",
    "fiant feeling",
    # breathing and chest
    "brething is hard",
    "breathng hurts",
    "struggling to breath",
    "cant get my breath",
    "wheezy since the session",
    "gasping on the stairs",
    "sharp pain in my lungs",
    "pain in my ribs when I inhale",
    "palpitations last night",
    "heart pounding",
    "chset feels tight",
    # infection
    "puss coming out of the spot",
    "its weeping a bit",
    "red hot and swollen",
    "hot to the touch",
    "redness spreading up the leg",
    "red streaks from the spot",
    "might be an abcess",
    "temprature of 38.5",
    "high temperture",
    "hot and cold all night",
    "flu-like today",
    "got the chills",
    # numbness and weakness
    "numness in my toes",
    "my toes are num",
    "pins & needles",
    "pins n needles in the foot",
    "cannot feel my toes",
    "couldn't feel my heel",
    "electric shocks down my leg",
    "weekness in the ankle",
    "leg gave out on the stairs",
    "knee keeps buckling",
    "foot slapping when I walk",
    "I can't lift my foot",
    "can't go up on tiptoe",
    # bleeding and walking
    "bleading again",
    "Bloood on the sheet",
    "CNAT walk",
    "unable to weight bear",
    "non-weight bearing since Sunday",
    "back on crutches",
    "can't put my foot down",
    # case, accents, punctuation
    "FÉVER since yesterday",
    "Swöllen calf",
    "calf is swolen",
    "Numb!!!",
]

MUST_NOT_TRIGGER = [
    "I heard it helps to stretch",
    "fewer aches than last week",
    "number of runs this week: 4",
    "had a cheat day",
    "reached the crest of the hill",
    "ran in the heat",
    "heat pack helped",
    "hearty breakfast after",
    "chilly morning run",
    "chilli con carne for dinner",
    "rigorous stretching routine",
    "wheeled the bike home",
    "blooming lovely run",
    "a good breed of dog",
    "lunges and squats went fine",
    "had a cortisone injection last year",
    "no access to a gym",
    "health is good",
    "Chester marathon next month",
    "keep the faith",
    "breathtaking views on the trail",
    "my run streak is 40 days",
    "tempo run went well",
    "weekend long run",
    "feeling much better",
    "the session was great",
    "a bit stiff but fine",
    "sore but ok",
    "massage helped",
    "did my strides",
    "blend of easy and hard days",
    "stolen bike, so I walked",
    "I walked the dog",
    "thanks!",
]


def r16_fires(text: str) -> bool:
    inputs = EvaluationInput(free_text=text, hours_since_session=24, regions_needled=["calf"])
    return "R16" in {rule.id for rule in evaluate(get_rules(), inputs).fired}


def r16_keywords() -> list[str]:
    rule = next(r for r in get_rules().rules if r.id == "R16")
    value = getattr(rule.when, "value", None)
    assert isinstance(value, list)
    return [str(v) for v in value]


@pytest.mark.parametrize("text", MUST_TRIGGER)
def test_warning_words_escalate(text: str) -> None:
    assert r16_fires(text), text


@pytest.mark.parametrize("text", MUST_NOT_TRIGGER)
def test_everyday_words_do_not(text: str) -> None:
    assert not r16_fires(text), (text, matching_phrase(text, r16_keywords()))


def test_the_table_is_large_enough() -> None:
    assert len(MUST_TRIGGER) >= 40 and len(MUST_NOT_TRIGGER) >= 30
    assert len(set(MUST_TRIGGER) | set(MUST_NOT_TRIGGER)) == len(MUST_TRIGGER) + len(MUST_NOT_TRIGGER)


def test_the_phrase_found_is_reported() -> None:
    assert matching_phrase("I past out", r16_keywords()) == "past out"
    assert matching_phrase("feeling fine", r16_keywords()) is None


def test_r16_names_the_synonyms_version() -> None:
    """A change to the synonyms file changes R16, so R16's source must name the version it was signed with."""
    rule = next(r for r in get_rules().rules if r.id == "R16")
    assert f"keyword_synonyms.toml version {get_synonyms().version}" in rule.source


def test_every_synonym_group_belongs_to_a_keyword_of_r16() -> None:
    keywords = set(r16_keywords())
    assert set(get_synonyms().by_keyword) <= keywords


def test_every_ordinary_word_is_needed() -> None:
    """Each ordinary word would be caught by a keyword or synonym without the list (else it is dead weight)."""
    synonyms = get_synonyms()
    listed = synonyms.ordinary_exact | set(synonyms.ordinary_prefixes)
    assert set(ordinary_words_caught(r16_keywords(), synonyms)) == listed


def test_forms_expand() -> None:
    assert {"cant walk", "cannot walk", "unable to walk", "couldnt walk"} <= set(get_synonyms().by_keyword["cant walk"])


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "synonyms.toml"
    path.write_text('version = "t"\n' + body, encoding="utf-8")
    return path


GROUP = '[[synonyms]]\nkeyword = "faint*"\nwords = [{words}]\nreason = "a reason long enough"\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (GROUP.format(words='"{nope} walk"'), "synonyms[0].words[0]: unknown form {nope}"),
        (GROUP.format(words='"passed out", "Passed-Out"'), "'Passed-Out' is listed twice"),
        (GROUP.format(words='"!!"'), "synonyms[0].words[0]: '!!': words, with * only at the end"),
        (GROUP.format(words='"pa*ssed"'), "with * only at the end"),
        (GROUP.format(words=""), "synonyms.0.words"),
        ('[[synonyms]]\nkeyword = "faint*"\nwords = ["x"]\nreason = ""\n', "synonyms.0.reason"),
        (
            GROUP.format(words='"passed out"') + '[[ordinary]]\nwords = ["two words"]\nreason = "a reason here"\n',
            "an ordinary word is one word",
        ),
        (
            GROUP.format(words='"woozy"') + '[[ordinary]]\nwords = ["woozy"]\nreason = "a reason here"\n',
            "ordinary[0].words[0]: 'woozy' is also a keyword or synonym",
        ),
        (GROUP.format(words='"x"') + "colour = 1\n", "colour"),
    ],
)
def test_bad_synonym_files_are_refused(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(SynonymsError) as caught:
        load_synonyms(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SynonymsError, match="file not found"):
        load_synonyms(tmp_path / "none.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("version = ", encoding="utf-8")
    with pytest.raises(SynonymsError, match="not valid TOML"):
        load_synonyms(broken)


def test_the_shipped_file_loads() -> None:
    assert load_synonyms(SYNONYMS_PATH).version == get_synonyms().version
