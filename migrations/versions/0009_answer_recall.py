"""the recall period each stored pain score was asked with

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 19:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Each 0-10 score and the recall period the survey asked it with before this revision. Until then the form
# asked nprs_usual as "How much does your injury hurt right now?", so those answers are marked 'now' and are
# never paired with the baseline (usual pain over the last 24 h); newer answers are stored by the app with
# 'average_24h'. The other scores were asked as they still are.
ASKED_BEFORE: dict[str, tuple[str, str]] = {
    'nprs_usual': ('nprs_usual_recall', 'now'),
    'nprs_worst': ('nprs_worst_recall', 'worst_24h'),
    'soreness': ('soreness_recall', 'now'),
    'run_pain': ('run_pain_recall', 'during_run'),
}


def upgrade() -> None:
    for column, _recall in ASKED_BEFORE.values():
        op.add_column('survey_response', sa.Column(column, sa.String(length=16), nullable=True))
    response = sa.table(
        'survey_response',
        *(sa.column(score) for score in ASKED_BEFORE),
        *(sa.column(column, sa.String(length=16)) for column, _recall in ASKED_BEFORE.values()),
    )
    for score, (column, recall) in ASKED_BEFORE.items():
        op.execute(
            response.update().where(response.c[score].is_not(None)).values({column: recall})
        )


def downgrade() -> None:
    with op.batch_alter_table('survey_response') as batch:
        for column, _recall in ASKED_BEFORE.values():
            batch.drop_column(column)
