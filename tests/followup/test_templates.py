"""Render the aftercare email for every injury in the catalogue, with and without trunk needling, and the check-in
email for every step of every protocol."""

import html
import re
from typing import Any

import pytest

from needlecare.core.catalogue import get_catalogue
from needlecare.core.rendering import render_email
from needlecare.followup.messages import needled_where, question_summary
from needlecare.followup.protocols import get_protocols

CATALOGUE = get_catalogue()

FIRST_NAME = "Sam"
LAST_NAME = "Okonkwo-Lindqvist"  # never in the context: must never reach the email
CLINIC_PHONE = "+1 555 010 0100"  # as a clinic typed it
CLINIC_PHONE_SHOWN = "+1 555-010-0100"
CLINIC_TEL = "tel:+15550100100"
CLINIC_EMAIL = "front-desk@riverside.example"
CLINIC = {"name": "Riverside Running Clinic", "phone": CLINIC_PHONE, "email": CLINIC_EMAIL}

# Shown only when the chest, upper back, shoulder or neck was needled (domain.md §3.3, §6 R1).
TRUNK_PHRASE = "pain when you breathe in"
# The general chest warning shown when only lower-body regions were needled (domain.md §6 R2).
GENERAL_CHEST_PHRASE = "Chest pain or sudden shortness of breath"

# Mechanism claims, medication advice and "studies show" never reach patients (domain.md §3.2, §7).
FORBIDDEN = (
    "toxin",
    "reset",
    "ibuprofen",
    "paracetamol",
    "acetaminophen",
    "nsaid",
    "study",
    "studies",
    "hydrat",
    "flush",
)
# Ice-versus-heat advice is clinic-configurable, so the default template gives none.
FORBIDDEN_WORDS = re.compile(r"\b(ice|icing|heat pack|hot pack)\b", re.IGNORECASE)


def _regions(trunk: bool) -> list[str]:
    return [r.name for r in CATALOGUE.regions.values() if r.trunk == trunk]


def _context(injury_slug: str, trunk_warning: bool, **overrides: Any) -> dict[str, Any]:
    regions = _regions(trunk=False)[:2] + (_regions(trunk=True)[:1] if trunk_warning else [])
    context: dict[str, Any] = {
        "first_name": FIRST_NAME,
        "clinic": dict(CLINIC),
        "injury_name": CATALOGUE.injuries[injury_slug].name,
        "regions": regions,
        "needled_where": needled_where(regions, "left"),
        "emergency_number": "911",
        "trunk_warning": trunk_warning,
        "session_day": "Sunday 22 November",
        "base_url": "https://needlecare.example",
        "sent_year": 2026,
        "aftercare_points": ["Keep your calf moving gently."],
        "check_dates": ["Monday 23 November, 18:00 (London time) — 1-day check-in"],
        "unsubscribe_url": "https://needlecare.test/u/1.abc",
    }
    context.update(overrides)
    return context


def _text_only(markup: str) -> str:
    """The visible words of the HTML part, tags removed and entities decoded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


CASES = [
    pytest.param(slug, trunk, id=f"{slug}-{'trunk' if trunk else 'limb'}")
    for slug in CATALOGUE.injuries
    for trunk in (True, False)
]


def test_catalogue_has_trunk_and_non_trunk_regions() -> None:
    assert _regions(trunk=True) and _regions(trunk=False)


@pytest.mark.parametrize(("slug", "trunk_warning"), CASES)
def test_aftercare_renders_for_every_injury(slug: str, trunk_warning: bool) -> None:
    context = _context(slug, trunk_warning)
    email = render_email("aftercare", context)

    # Subject: one line, and nothing that reveals the diagnosis, the body or the surname.
    subject = email.subject.lower()
    assert subject.strip()
    assert "\n" not in email.subject
    assert context["injury_name"].lower() not in subject
    for region in CATALOGUE.regions.values():
        assert region.name.lower() not in subject, region.name
    assert LAST_NAME.lower() not in subject

    visible_html = _text_only(email.html)
    for part in (email.text, email.html):
        assert FIRST_NAME in part
        assert LAST_NAME not in part
        assert CLINIC_TEL in part
        assert f"mailto:{CLINIC_EMAIL}" in part
    assert CLINIC_PHONE_SHOWN in email.text and CLINIC_PHONE_SHOWN in visible_html
    assert CLINIC_PHONE not in email.text + visible_html

    # The injury and regions may appear in the body.
    assert context["injury_name"] in email.text
    assert context["injury_name"] in visible_html
    for region in context["regions"]:
        assert f"left {region.lower()}" in email.text
        assert f"left {region.lower()}" in visible_html

    # The breathing / chest needling warning appears exactly when a trunk region was needled.
    for body in (email.text, visible_html):
        assert (TRUNK_PHRASE in body) is trunk_warning
        assert (GENERAL_CHEST_PHRASE in body) is not trunk_warning
        assert "Call 911 if you have any of these" in body
        assert "local emergency number" not in body
        assert "10 minutes of firm" in body
        assert "38 °C" in body.replace("\xa0", " ")
        assert "don't reply" in body.lower() or "do not reply" in body.lower()
        assert "real time" in body

    lowered = email.text.lower()
    for word in FORBIDDEN:
        assert word not in lowered, word
        assert word not in visible_html.lower(), word
    assert not FORBIDDEN_WORDS.search(email.text)
    assert not FORBIDDEN_WORDS.search(visible_html)


def test_plain_text_is_really_plain() -> None:
    email = render_email("aftercare", _context("calf_strain", trunk_warning=False))
    assert "<" not in email.text and "&amp;" not in email.text and "&#" not in email.text


def test_html_layout_is_self_contained_and_readable() -> None:
    markup = render_email("aftercare", _context("calf_strain", trunk_warning=True)).html
    assert "max-width:600px" in markup
    assert 'name="viewport"' in markup
    sizes = [int(s) for s in re.findall(r"font-size:\s*(\d+)px", markup)]
    assert sizes and min(sizes) >= 16
    for banned in ("<img", "<link", "<script", "@import", "url("):
        assert banned not in markup, banned
    links = re.findall(r'href="([^"]+)"', markup)
    external = [u for u in links if u.startswith("http")]
    assert external == ["https://needlecare.test/u/1.abc"], "the only web link is the unsubscribe link"


def test_html_escapes_patient_and_clinic_values() -> None:
    email = render_email(
        "aftercare",
        _context(
            "achilles_tendinopathy",
            trunk_warning=False,
            first_name="<b>Sam</b>",
            clinic={**CLINIC, "name": "Smith & Jones"},
        ),
    )
    assert "&lt;b&gt;Sam&lt;/b&gt;" in email.html
    assert "<b>Sam</b>" not in email.html
    assert "Smith &amp; Jones" in email.html
    # The plain-text part is not HTML, so it carries the values as they are.
    assert "<b>Sam</b>" in email.text
    assert "Smith & Jones" in email.subject


def test_renders_without_clinic_phone() -> None:
    context = _context(
        "plantar_fasciitis",
        trunk_warning=False,
        clinic={**CLINIC, "phone": None},
    )
    email = render_email("aftercare", context)
    for part in (email.text, email.html):
        assert "tel:+" not in part and "tel:911" in part, "no clinic number to call, the emergency number still"
        assert "None" not in part
        assert f"mailto:{CLINIC_EMAIL}" in part
        assert "emergency" in part


def test_without_an_emergency_number_it_says_your_local_one() -> None:
    email = render_email("aftercare", _context("mtss", trunk_warning=False, emergency_number=None))
    for body in (" ".join(email.text.split()), _text_only(email.html)):
        assert "Call your local emergency number if you have any of these" in body
        assert "None" not in body
    assert "tel:911" not in email.html + email.text
    with_number = render_email("aftercare", _context("mtss", trunk_warning=False))
    assert with_number.html.count('href="tel:911"') == 5, "every mention of the number can be tapped"
    assert "In an emergency: call 911 (tel:911)" in with_number.text


@pytest.mark.parametrize(
    ("regions", "side", "expected"),
    [
        (["Calf"], "left", "left calf"),
        (["Calf", "Shin"], "right", "right calf and right shin"),
        (["Calf", "Shin", "Knee"], "left", "left calf, left shin and left knee"),
        (["Lower back", "Buttock"], "both", "lower back and buttock, on both sides"),
        (["Neck"], "", "neck"),
        ([], "left", ""),
    ],
)
def test_where_the_needles_went_names_the_side(regions: list[str], side: str, expected: str) -> None:
    assert needled_where(regions, side) == expected


def _survey_context(step_title: str, questions: dict[str, int | bool], **overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "first_name": FIRST_NAME,
        "clinic": {**CLINIC, "phone": "+15550100100"},
        "step_title": step_title,
        "questions": questions,
        "safety": True,
        "is_reminder": False,
        "survey_url": "https://needlecare.example/s/abc.def",
        "closes_label": "Tuesday 24 November, 12:00 (New York time)",
        "unsubscribe_url": "https://needlecare.test/u/1.abc",
        "emergency_number": "911",
    }
    context.update(overrides)
    return context


STEPS = [pytest.param(p, s, id=f"{p.injury}-{s.id}") for p in get_protocols().values() for s in p.steps]


@pytest.mark.parametrize(("protocol", "step"), STEPS)
def test_check_in_email_counts_what_the_step_asks(protocol: Any, step: Any) -> None:
    summary = question_summary(step, protocol.injury)
    email = render_email("survey", _survey_context(step.title, summary, safety=step.safety))
    sentence = re.search(r"It has [^.]*\.", _text_only(email.html))
    assert sentence is not None
    text_sentence = re.search(r"It has [^.]*\.", " ".join(email.text.split()))
    assert text_sentence is not None and text_sentence.group(0) == sentence.group(0)
    worded = sentence.group(0)
    required = [q for q in step.questions if q not in ("redflags", "free_text", "rom", "run_pain")]
    if required:
        assert worded.startswith(f"It has {len(required)} question"), worded
    assert ("warning signs to tick" in worded) is ("redflags" in step.questions)
    assert ("optional self-test" in worded) is ("rom" in step.questions)
    assert ("optional comment box" in worded) is ("free_text" in step.questions)
    assert ("1 more if you ran" in worded) is ("run_pain" in step.questions)
    assert "short questions" not in email.text and "minute" not in email.text


def test_check_in_email_wording_for_the_first_day() -> None:
    protocol = get_protocols()["achilles_tendinopathy"]
    step = protocol.step("check_24h")
    email = render_email("survey", _survey_context(step.title, question_summary(step, protocol.injury)))
    expected = "It has 4 questions, a checklist of 18 warning signs to tick and an optional comment box."
    assert expected in _text_only(email.html)
    assert expected in " ".join(email.text.split())
    for body in (email.text, _text_only(email.html)):
        assert "phone the clinic on +1 555-010-0100" in body and "call 911" in body
        assert "(New York time)" in body
    assert 'href="tel:+15550100100"' in email.html and 'href="tel:911"' in email.html
    assert "tel:+15550100100" in email.text
    bone = get_protocols()["bone_stress_injury"]
    assert question_summary(bone.step("check_24h"), bone.injury)["checklist"] == 22, "the bone-stress items too"


def test_check_in_email_without_numbers() -> None:
    protocol = get_protocols()["achilles_tendinopathy"]
    step = protocol.step("check_24h")
    context = _survey_context(
        step.title,
        question_summary(step, protocol.injury),
        emergency_number=None,
        clinic={**CLINIC, "phone": None},
    )
    email = render_email("survey", context)
    for body in (" ".join(email.text.split()), _text_only(email.html)):
        assert "call your local emergency number now" in body
        assert "call emergency services" in body
        assert "None" not in body
    assert "tel:" not in email.text + email.html


def test_renders_with_no_regions_or_injury_name() -> None:
    email = render_email("aftercare", _context("itbs", trunk_warning=False, regions=[], injury_name=""))
    assert "Where we used needles" not in email.text
    assert "What we are treating" not in email.text
    assert FIRST_NAME in email.html
