"""The channel keys of the protocol packs are checked when the packs load; each problem names the file, the
field and what is allowed."""

from pathlib import Path

import pytest

from tests.followup.test_protocols import edit, packs, refused

__all__ = ["packs"]  # the fixture, used by name

FIRST = "\n".join(
    (
        'channels = ["email", "sms"]',
        'reminder_channels = ["sms", "email"]',
        'sms_reply_questions = ["soreness", "redflags"]',
    )
)


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (FIRST.replace('["email", "sms"]', '["email", "fax"]'), "steps[0].channels[1]: 'fax' is not a channel"),
        (FIRST.replace('["email", "sms"]', "[]"), "steps[0].channels: must list at least one channel"),
        (FIRST.replace('["sms", "email"]', '["sms", "sms"]'), "steps[0].reminder_channels[1]: 'sms' is listed twice"),
        (
            FIRST.replace('"soreness", "redflags"', '"soreness", "psfs"'),
            "steps[0].sms_reply_questions[1]: 'psfs' is not one of this step's questions",
        ),
        (
            FIRST.replace('["email", "sms"]', '["email"]').replace('["sms", "email"]', '["email"]'),
            "steps[0].sms_reply_questions: needs 'sms' in channels or reminder_channels",
        ),
    ],
)
def test_a_bad_channel_key_is_refused_naming_the_field(packs: Path, new: str, expected: str) -> None:
    edit(packs / "default.toml", FIRST, new)
    message = refused(packs)
    assert "default.toml" in message and expected in message, message
