"""Render the aftercare email for every injury in the catalogue, with and without trunk needling."""

import html
import re
from typing import Any

import pytest

from needlecare.core.catalogue import get_catalogue
from needlecare.core.rendering import render_email

CATALOGUE = get_catalogue()

FIRST_NAME = "Sam"
LAST_NAME = "Okonkwo-Lindqvist"  # never in the context: must never reach the email
CLINIC_PHONE = "+1 555 010 0100"
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
        "trunk_warning": trunk_warning,
        "session_day": "Sunday 22 November",
        "base_url": "https://needlecare.example",
        "sent_year": 2026,
        "aftercare_points": ["Keep your calf moving gently."],
        "check_dates": ["Monday 23 November, 18:00 (Europe/London) — 1-day check-in"],
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
    assert CLINIC_PHONE in email.text and CLINIC_PHONE in visible_html

    # The injury and regions may appear in the body.
    assert context["injury_name"] in email.text
    assert context["injury_name"] in visible_html
    for region in context["regions"]:
        assert region.lower() in email.text

    # The breathing / chest needling warning appears exactly when a trunk region was needled.
    for body in (email.text, visible_html):
        assert (TRUNK_PHRASE in body) is trunk_warning
        assert (GENERAL_CHEST_PHRASE in body) is not trunk_warning
        assert "local emergency number" in body
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
        assert "tel:" not in part
        assert "None" not in part
        assert f"mailto:{CLINIC_EMAIL}" in part
        assert "emergency" in part


def test_renders_with_no_regions_or_injury_name() -> None:
    email = render_email("aftercare", _context("itbs", trunk_warning=False, regions=[], injury_name=""))
    assert "Where we used needles" not in email.text
    assert "What we are treating" not in email.text
    assert FIRST_NAME in email.html
