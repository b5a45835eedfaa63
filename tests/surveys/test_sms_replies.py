"""Reading a patient's text: keywords, the two-number answer in its accepted forms, and everything else refused."""

import pytest

from needlecare.surveys.sms_replies import Keyword, NotUnderstood, ReplyAnswer, parse_reply


@pytest.mark.parametrize(
    ("text", "soreness", "warning"),
    [
        ("7 0", 7, False),
        ("7,0", 7, False),
        ("7, 0", 7, False),
        ("  7   1 ", 7, True),
        ("7; no", 7, False),
        ("7 no", 7, False),
        ("7 yes", 7, True),
        ("7 Y", 7, True),
        ("0 0", 0, False),
        ("10 1", 10, True),
        ("07 0", 7, False),
        ("7 0.", 7, False),
        ("soreness 7 flag 0", 7, False),
        ("Soreness 3 flags yes", 3, True),
        ("flag 1 soreness 6", 6, True),
        ("sore 2 warning 0", 2, False),
        ("７ ０", 7, False),  # full-width digits, as some phone keyboards send them
    ],
)
def test_answers(text: str, soreness: int, warning: bool) -> None:
    assert parse_reply(text) == ReplyAnswer(soreness, warning)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("STOP", "stop"),
        ("stop", "stop"),
        ("Stop.", "stop"),
        ("stop all", "stop"),
        ("STOPALL", "stop"),
        ("UNSUBSCRIBE", "stop"),
        ("cancel", "stop"),
        ("END", "stop"),
        ("quit!", "stop"),
        ("START", "start"),
        ("unstop", "start"),
        ("HELP", "help"),
        ("help?", "help"),
        ("INFO", "help"),
    ],
)
def test_keywords(text: str, kind: str) -> None:
    assert parse_reply(text) == Keyword(kind)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "7",  # the warning-sign answer is missing: never assumed to be "no"
        "1",
        "yes",  # never START: it could be the warning-sign answer alone
        "no",
        "11 0",
        "-1 0",
        "7 2",
        "7.5 0",
        "7 0 thanks",
        "7 0 chest hurts",
        "seven 0",
        "0 7 1",
        "please stop texting me",
        "stop 7",
        "soreness 7",
        "soreness 7 soreness 0",
        "soreness 7 sore 0",
        "flag 1 flag 0",
        "7/10 0",
        "7 - 0",
        "x" * 500,
    ],
)
def test_everything_else_is_not_understood(text: str) -> None:
    assert isinstance(parse_reply(text), NotUnderstood)
