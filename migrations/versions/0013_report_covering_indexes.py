"""report covering indexes

Covering indexes for the outcome statements (needlecare.outcomes.statements, headline, channels): each statement
reads the answers and contacts of the cohort's episodes (or a session's contacts, a contact's answer and sent
messages) from an index that holds every column it needs, so no table row is fetched per answer.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: dict[str, tuple[str, list[str]]] = {
    "ix_episode_report": (
        "episode",
        [
            "clinic_id",
            "injury",
            "started_at",
            "id",
            "patient_id",
            "baseline_pain_nprs",
            "baseline_rom_measure",
            "baseline_rom_value",
        ],
    ),
    "ix_contact_report_episode": (
        "contact",
        [
            "episode_id",
            "status",
            "step_id",
            "scope",
            "patient_id",
            "session_id",
            "id",
        ],
    ),
    "ix_contact_report_session": ("contact", ["session_id", "status", "step_id", "scope", "id"]),
    "ix_survey_response_report_episode": (
        "survey_response",
        [
            "episode_id",
            "step_id",
            "nprs_usual_recall",
            "nprs_usual",
            "rom_measure",
            "rom_value",
            "patient_id",
            "session_id",
            "contact_id",
            "submitted_at",
            "id",
        ],
    ),
    "ix_survey_response_report_contact": (
        "survey_response",
        [
            "contact_id",
            "submitted_at",
            "nprs_usual",
            "nprs_usual_recall",
            "groc15",
            "soreness",
            "bruise",
            "channel",
            "id",
        ],
    ),
    "ix_notification_report_contact": ("notification", ["contact_id", "channel", "status", "kind", "sequence"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    for name, (table, _) in reversed(INDEXES.items()):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
