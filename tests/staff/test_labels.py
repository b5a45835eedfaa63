"""Plain words for staff pages: every code the pages can show has a name, from the data where it has one."""

import pytest

from needlecare.core.catalogue import get_catalogue
from needlecare.followup.protocols import get_protocols
from needlecare.safety.rules.ruleset import get_rules
from needlecare.safety.rules.variables import TIERS
from needlecare.staff import labels


def test_every_tier_has_a_name() -> None:
    assert [labels.tier_name(t) for t in TIERS] == ["Emergency", "Same day", "Next business day", "For information"]


def test_every_step_of_every_protocol_is_named_by_its_title() -> None:
    steps = {s.id for p in get_protocols().values() for s in p.steps}
    assert labels.step_name("check_24h") == "1-day check-in" and labels.step_name("check_72h") == "3-day check-in"
    for step in steps:
        assert "_" not in labels.step_name(step), step


def test_every_rule_has_a_title_and_a_retired_rule_says_so() -> None:
    titles = {rule.id: labels.rule_title(rule.id) for rule in get_rules().rules}
    assert titles["R10"] == "Strong soreness a day after needling"
    assert all(rule_id not in title for rule_id, title in titles.items()), "a title is words, not the id"
    assert len(set(titles.values())) == len(titles), "titles tell rules apart"
    assert labels.rule_title("R99") == "A rule no longer in the rule set"


def test_measures_read_as_name_and_unit_in_words() -> None:
    assert labels.measure_name("ober_deg") == "Modified Ober test hip adduction, degrees"
    for measure in get_catalogue().measures:
        assert "_" not in labels.measure_name(measure), measure


@pytest.mark.parametrize(
    ("action", "detail", "expected"),
    [
        ("case.opened", {"rules": ["R5"]}, "Case opened from the patient's answers"),
        ("case.opened", {"rules": ["R13"]}, "Case opened: a safety check had no answer after its reminder"),
        ("case.acknowledged", {}, "Acknowledged by Dana Reyes"),
        ("case.resolved", {}, "Resolved by Dana Reyes"),
        ("case.realerted", {}, "Not acknowledged in time: the backup routes were alerted"),
        ("alert.sent", {"audience": "primary"}, "Alert sent"),
        (
            "alert.skipped",
            {"audience": "backup", "reason": "case acknowledged"},
            "Backup alert not sent (case acknowledged)",
        ),
    ],
)
def test_audit_actions_read_as_sentences(action: str, detail: dict[str, object], expected: str) -> None:
    assert labels.audit_sentence(action, "Dana Reyes", detail) == expected


def test_phone_numbers_are_grouped_and_dialable() -> None:
    assert labels.phone_display("+15551234567") == "+1 555-123-4567"
    assert labels.phone_href("+1 (555) 123-4567") == "tel:+15551234567"
    assert labels.phone_display("+44 20 7946 0958") == "+44 20 7946 0958"
    assert labels.phone_href("020 7946 0958") == "tel:02079460958"


def test_undelivered_message_descriptions_name_the_step_and_the_alert() -> None:
    assert labels.message_description("reminder 1 of check-in check_24h") == "reminder 1 of the 1-day check-in"
    assert labels.message_description("check-in outcome_6wk") == "the 6-week progress survey"
    assert labels.message_description("primary alert for case #3") == "on-call alert for case #3"
    assert labels.message_description("the aftercare notice") == "the aftercare notice"


def test_time_zones_read_as_places() -> None:
    assert labels.zone_name("America/New_York") == "New York time"
    assert labels.zone_name("America/Argentina/Buenos_Aires") == "Buenos Aires time"
    assert labels.zone_name("UTC") == "UTC"
