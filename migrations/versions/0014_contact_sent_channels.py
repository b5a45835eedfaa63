"""contact sent channels

Four flags on each contact, kept by the database: ``sent_email`` and ``sent_sms`` (a first message or reminder of
that channel has status sent), ``first_by_sms`` (the first message, sequence 0, went by SMS) and
``answered_by_sms`` (its answer came by SMS reply). Triggers on ``notification`` and ``survey_response``
recompute them from the contact's messages and answer whenever a message becomes sent or stops being sent, is
inserted as sent or deleted, or an answer is written, re-labelled or deleted, whoever writes it (the outbox, the
survey paths, a bulk load, a transfer). The response-by-channel statement (``needlecare.outcomes.channels``)
reads them from the report's covering index of contacts instead of probing the messages and the answer of every
contact (four index probes per contact: the largest of the report's statements).

Existing contacts are filled in by the upgrade.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLAGS = ("sent_email", "sent_sms", "first_by_sms", "answered_by_sms")
REPORT_INDEX = "ix_contact_report_episode"
OLD_COLUMNS = ["episode_id", "status", "step_id", "scope", "patient_id", "session_id", "id"]
NEW_COLUMNS = [*OLD_COLUMNS, *FLAGS]

# One message of the contact (``{cid}``) that counts for a flag: a first message or reminder, sent.
_SENT = (
    "SELECT 1 FROM notification n WHERE n.contact_id = {cid} AND n.status = 'sent' AND n.kind IN ('survey', 'reminder')"
)


def _refresh(cid: str) -> str:
    """The UPDATE that recomputes the message flags of contact ``cid`` (a column reference or expression)."""
    sent = _SENT.format(cid=cid)
    return (
        "UPDATE contact SET "
        f"sent_email = EXISTS ({sent} AND n.channel = 'email'), "
        f"sent_sms = EXISTS ({sent} AND n.channel = 'sms'), "
        f"first_by_sms = EXISTS ({sent} AND n.channel = 'sms' AND n.sequence = 0) "
        f"WHERE id = {cid}"
    )


def _refresh_answer(cid: str) -> str:
    """The UPDATE that recomputes ``answered_by_sms`` of contact ``cid``."""
    return (
        "UPDATE contact SET answered_by_sms = EXISTS "
        f"(SELECT 1 FROM survey_response r WHERE r.contact_id = {cid} AND r.channel = 'sms') WHERE id = {cid}"
    )


# A change that can move a flag: the message is (or was) sent. Status changes to and from "sending" do not fire.
_UPDATED = "NEW.status = 'sent' OR OLD.status = 'sent'"

SQLITE_TRIGGERS = {
    "tr_notification_sent_insert": (
        "AFTER INSERT ON notification FOR EACH ROW WHEN NEW.status = 'sent' AND NEW.contact_id IS NOT NULL "
        f"BEGIN {_refresh('NEW.contact_id')}; END"
    ),
    "tr_notification_sent_update": (
        "AFTER UPDATE OF status, channel, kind, sequence, contact_id ON notification FOR EACH ROW "
        f"WHEN {_UPDATED} BEGIN {_refresh('NEW.contact_id')}; {_refresh('OLD.contact_id')}; END"
    ),
    "tr_notification_sent_delete": (
        "AFTER DELETE ON notification FOR EACH ROW WHEN OLD.status = 'sent' AND OLD.contact_id IS NOT NULL "
        f"BEGIN {_refresh('OLD.contact_id')}; END"
    ),
    "tr_survey_response_sms_insert": (
        "AFTER INSERT ON survey_response FOR EACH ROW WHEN NEW.channel = 'sms' "
        f"BEGIN {_refresh_answer('NEW.contact_id')}; END"
    ),
    "tr_survey_response_sms_update": (
        "AFTER UPDATE OF channel, contact_id ON survey_response FOR EACH ROW "
        "WHEN NEW.channel = 'sms' OR OLD.channel = 'sms' "
        f"BEGIN {_refresh_answer('NEW.contact_id')}; {_refresh_answer('OLD.contact_id')}; END"
    ),
    "tr_survey_response_sms_delete": (
        "AFTER DELETE ON survey_response FOR EACH ROW WHEN OLD.channel = 'sms' "
        f"BEGIN {_refresh_answer('OLD.contact_id')}; END"
    ),
}


def _pg_function(name: str, refresh: str) -> str:
    """A trigger function that runs ``refresh`` for the row's contact, before and after (both when it moved)."""
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cid integer;
BEGIN
    FOR cid IN
        SELECT DISTINCT x FROM unnest(ARRAY[
            CASE WHEN TG_OP <> 'DELETE' THEN NEW.contact_id END,
            CASE WHEN TG_OP <> 'INSERT' THEN OLD.contact_id END
        ]) AS x WHERE x IS NOT NULL
    LOOP
        {refresh};
    END LOOP;
    RETURN NULL;
END
$$
"""


PG_FUNCTIONS = {
    "contact_sent_channels": ("notification", _pg_function("contact_sent_channels", _refresh("cid"))),
    "contact_answered_by_sms": ("survey_response", _pg_function("contact_answered_by_sms", _refresh_answer("cid"))),
}

# trigger name: (function, when it fires)
PG_TRIGGERS = {
    "tr_notification_sent_insert": (
        "contact_sent_channels",
        "AFTER INSERT ON notification FOR EACH ROW WHEN (NEW.status = 'sent')",
    ),
    "tr_notification_sent_update": (
        "contact_sent_channels",
        f"AFTER UPDATE OF status, channel, kind, sequence, contact_id ON notification FOR EACH ROW WHEN ({_UPDATED})",
    ),
    "tr_notification_sent_delete": (
        "contact_sent_channels",
        "AFTER DELETE ON notification FOR EACH ROW WHEN (OLD.status = 'sent')",
    ),
    "tr_survey_response_sms_insert": (
        "contact_answered_by_sms",
        "AFTER INSERT ON survey_response FOR EACH ROW WHEN (NEW.channel = 'sms')",
    ),
    "tr_survey_response_sms_update": (
        "contact_answered_by_sms",
        "AFTER UPDATE OF channel, contact_id ON survey_response FOR EACH ROW "
        "WHEN (NEW.channel = 'sms' OR OLD.channel = 'sms')",
    ),
    "tr_survey_response_sms_delete": (
        "contact_answered_by_sms",
        "AFTER DELETE ON survey_response FOR EACH ROW WHEN (OLD.channel = 'sms')",
    ),
}
TABLE_OF = {name: PG_FUNCTIONS[function][0] for name, (function, _) in PG_TRIGGERS.items()}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in FLAGS:  # plain ADD COLUMN (no table copy on SQLite: the contact table is the largest)
        op.add_column("contact", sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(_refresh("contact.id") + f" AND EXISTS ({_SENT.format(cid='contact.id')})")
    op.execute(_refresh_answer("contact.id") + " AND contact.status = 'answered'")
    if dialect == "postgresql":
        for _, function in PG_FUNCTIONS.values():
            op.execute(function)
        for name, (function, spec) in PG_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {spec} EXECUTE FUNCTION {function}()")
    else:
        for name, spec in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {spec}")
    op.drop_index(REPORT_INDEX, table_name="contact")
    op.create_index(REPORT_INDEX, "contact", NEW_COLUMNS, unique=False)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_index(REPORT_INDEX, table_name="contact")
    op.create_index(REPORT_INDEX, "contact", OLD_COLUMNS, unique=False)
    if dialect == "postgresql":
        for name in reversed(PG_TRIGGERS):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {TABLE_OF[name]}")
        for function in reversed(PG_FUNCTIONS):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    else:
        for name in reversed(SQLITE_TRIGGERS):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for name in reversed(FLAGS):  # SQLite >= 3.35 drops a column in place (a table copy would break the foreign keys)
        op.execute(f"ALTER TABLE contact DROP COLUMN {name}")
