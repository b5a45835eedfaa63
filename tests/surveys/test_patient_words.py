"""What patients read beside the questions: phone numbers, place names, the emergency number of a clinic, and the
survey page's error messages in the words of the page."""

from pathlib import Path
from typing import Any

import pytest

from models import Clinic
from needlecare.core.rendering import (
    EmergencyNumbersError,
    country_emergency_number,
    emergency_number,
    format_phone,
    get_emergency_numbers,
    load_emergency_numbers,
    place_time,
    tel_uri,
    zone_countries,
)
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import BRUISE_OPTIONS, MESSAGES
from needlecare.safety.clinic_config import ClinicConfigError, parse_config, to_stored
from needlecare.surveys.wording import OTHER, form_errors


@pytest.mark.parametrize(
    ("stored", "shown", "tel"),
    [
        ("+15550100200", "+1 555-010-0200", "tel:+15550100200"),
        ("+1 (555) 010-0200", "+1 555-010-0200", "tel:+15550100200"),
        ("+442079460958", "+44 20 7946 0958", "tel:+442079460958"),  # London
        ("+44 (0)20 7946 0958", "+44 20 7946 0958", "tel:+442079460958"),  # the trunk 0 as some write it
        ("+447700900123", "+44 7700 900123", "tel:+447700900123"),  # mobile
        ("+441614960000", "+44 161 496 0000", "tel:+441614960000"),  # Manchester, 1x1
        ("+441134960000", "+44 113 496 0000", "tel:+441134960000"),  # Leeds, 11x
        ("+441632960123", "+44 1632 960123", "tel:+441632960123"),  # four-digit area code
        ("+448001234567", "+44 800 123 4567", "tel:+448001234567"),  # freephone
        ("+4930123456", "+49 30123456", "tel:+4930123456"),  # a known country code: set apart
        ("+81312345678", "+81312345678", "tel:+81312345678"),  # unknown here: left as E.164
        ("555 0100", "555 0100", "tel:5550100"),  # not E.164: as typed
        (None, "", ""),
    ],
)
def test_phone_numbers_as_people_write_them(stored: str | None, shown: str, tel: str) -> None:
    assert format_phone(stored) == shown
    assert tel_uri(stored) == tel


@pytest.mark.parametrize(
    ("zone", "place"),
    [
        ("America/New_York", "New York time"),
        ("Europe/London", "London time"),
        ("America/Argentina/Buenos_Aires", "Buenos Aires time"),
        ("Australia/Sydney", "Sydney time"),
        ("UTC", "UTC"),
        ("Etc/GMT+5", "UTC-5"),  # POSIX sign: five hours behind
        ("Etc/GMT-10", "UTC+10"),
    ],
)
def test_time_zones_as_places(zone: str, place: str) -> None:
    assert place_time(zone) == place


def test_zone_countries_come_from_the_tz_database() -> None:
    countries = zone_countries()
    assert countries["America/New_York"] == "US" and countries["America/Toronto"] == "CA"
    assert countries["Europe/London"] == "GB" and countries["Australia/Sydney"] == "AU"


@pytest.mark.parametrize(
    ("phone", "zone", "number"),
    [
        ("+15550100200", "America/New_York", "911"),
        ("+16135550100", "America/Toronto", "911"),
        ("+15550100200", "UTC", "911"),  # +1: the United States and Canada agree
        ("+442079460958", "UTC", "999"),
        ("+442079460958", "America/New_York", "999"),  # the clinic's own phone beats a mistyped zone
        (None, "Europe/Berlin", "112"),
        (None, "Europe/Dublin", "112"),
        (None, "Australia/Sydney", "000"),
        ("+6495550100", "Pacific/Auckland", "111"),
        (None, "UTC", None),  # no country: pages say "your local emergency number"
        ("+81312345678", "Asia/Tokyo", None),  # a country without a sourced number here
    ],
)
def test_the_default_emergency_number_comes_from_the_clinics_country(
    phone: str | None, zone: str, number: str | None
) -> None:
    assert country_emergency_number(phone, zone) == number


def test_every_country_in_the_table_names_its_source() -> None:
    table = get_emergency_numbers()
    assert table.countries["GB"].number == "999" and table.countries["US"].number == "911"
    assert len([c for c in table.countries.values() if c.number == "112"]) == 27, "EU member states and Ireland"
    for country in table.countries.values():
        assert all(table.sources[key] for key in country.sources)


GOOD_COUNTRY = {"name": '"United States"', "calling_code": '"1"', "number": '"911"', "sources": '["US"]'}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("sources", '["NOPE"]', r"countries.US.sources: NOPE not under \[sources\]"),
        ("number", '"9-1-1"', "countries.US.number"),
        ("calling_code", '"+1"', "countries.US.calling_code"),
    ],
)
def test_a_bad_emergency_number_file_is_refused_naming_the_field(
    tmp_path: Path, field: str, value: str, problem: str
) -> None:
    country = {**GOOD_COUNTRY, field: value}
    path = tmp_path / "numbers.toml"
    path.write_text(
        'version = "test"\nsources = { US = "FCC" }\n[countries.US]\n'
        + "".join(f"{key} = {text}\n" for key, text in country.items())
    )
    with pytest.raises(EmergencyNumbersError, match=problem):
        load_emergency_numbers(path)
    path.write_text(path.read_text().replace(f"{field} = {value}", f"{field} = {GOOD_COUNTRY[field]}"))
    assert load_emergency_numbers(path).countries["US"].number == "911", "the same file, corrected, loads"


def test_a_country_code_that_is_not_iso_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "numbers.toml"
    path.write_text(
        'version = "t"\nsources = { X = "x" }\n[countries.USA]\nname = "x"\ncalling_code = "1"\nnumber = "911"\n'
        'sources = ["X"]\n'
    )
    with pytest.raises(EmergencyNumbersError, match="two-letter"):
        load_emergency_numbers(path)
    with pytest.raises(EmergencyNumbersError, match="file not found"):
        load_emergency_numbers(tmp_path / "missing.toml")


def test_a_clinic_may_set_its_emergency_number() -> None:
    clinic = Clinic(
        id="c", name="C", email="c@c.example", phone="+15550100200", timezone="America/New_York", webhook_secret="s"
    )
    assert emergency_number(clinic) == "911"
    clinic.config = to_stored(parse_config({"emergency_number": "112"}))
    assert emergency_number(clinic) == "112"
    clinic.config = to_stored(parse_config({}))
    assert clinic.config["emergency_number"] is None and emergency_number(clinic) == "911"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("9 1 1", "2 to 6 digits"),
        ("call 911", "2 to 6 digits"),
        ("1", "2 to 6 digits"),
        (911, "write it in quotes"),
    ],
)
def test_a_bad_emergency_number_setting_is_refused(value: Any, problem: str) -> None:
    with pytest.raises(ClinicConfigError, match=problem) as refused:
        parse_config({"emergency_number": value})
    assert "emergency_number" in str(refused.value)


# ---- the form's messages ------------------------------------------------------------------------------

PROTOCOL = get_protocol("achilles_tendinopathy")


def _worded(
    step_id: str, errors: dict[str, str], data: dict[str, Any], previous: list[str] | None = None
) -> dict[str, str]:
    return form_errors(errors, data, protocol=PROTOCOL, step=PROTOCOL.step(step_id), previous_activities=previous or [])


def test_messages_name_what_the_page_shows_not_stored_values() -> None:
    worded = _worded("check_24h", {"bruise": MESSAGES["bruise"], "redflags": MESSAGES["redflags"]}, {"bruise": "huge"})
    assert list(worded) == ["bruise", "redflags"]
    for message in worded.values():
        for stored in BRUISE_OPTIONS:
            assert f" {stored}," not in message and f"'{stored}'" not in message
    assert worded["redflags"] == "Tick each warning sign you have had, or tick “None of these”"


def test_messages_follow_the_order_of_the_page() -> None:
    errors = {"fainted": "x", "soreness": "x", "free_text": "x"}
    assert list(_worded("check_24h", errors, {"free_text": "y" * 2001})) == ["soreness", "fainted", "free_text"]
    assert _worded("check_24h", {"free_text": "x"}, {"free_text": "y" * 2001})["free_text"] == (
        "Your message must be 2000 characters or fewer (it has 2001)"
    )


@pytest.mark.parametrize(
    ("data", "previous", "expected"),
    [
        ({"psfs": []}, None, "Name at least one activity that is hard because of your injury"),
        ({"psfs": [{"activity": "", "score": "4"}]}, None, "Write the name of each activity you give a score to"),
        ({"psfs": [{"activity": "Stairs", "score": ""}]}, None, "Give “Stairs” a score from 0 to 10"),
        ({"psfs": [{"activity": "x" * 81, "score": "1"}]}, None, "Activity names must be 80 characters or fewer"),
        ({"psfs": [{"activity": "Run", "score": "1"}, {"activity": "run", "score": "2"}]}, None, "Name each activity"),
        ({"psfs": [{"activity": "Hop", "score": "1"}]}, ["Run"], "Rate the same activities as last time: Run"),
        ({"psfs": [{"activity": "Run", "score": ""}]}, ["Run"], "Give “Run” a score from 0 to 10"),
    ],
)
def test_psfs_messages(data: dict[str, Any], previous: list[str] | None, expected: str) -> None:
    assert _worded("outcome_6wk", {"psfs": "refused"}, data, previous)["psfs"].startswith(expected)


def test_run_pain_and_other_messages() -> None:
    ran = _worded("check_72h", {"run_pain": "x"}, {"ran": "yes"})
    assert ran["run_pain"].startswith("You said you ran")
    not_ran = _worded("check_72h", {"ran": "x", "run_pain": "x"}, {"run_pain": "3"})
    assert not_ran["run_pain"].startswith("Only answer this if you ran")
    assert _worded("check_72h", {"groc15": "x"}, {})["groc15"] == (
        "Choose how your injury is now compared with before your last session"
    )
    assert _worded("outcome_6wk", {"rom": "x"}, {})["rom"] == (
        "Enter your result in cm, from 0 to 25, or leave the box empty"
    )
    assert _worded("check_24h", {"groc15": "not asked", "mood": "unknown"}, {}) == {
        OTHER: "Some answers did not match the questions on this page: please check your answers and send them again"
    }
