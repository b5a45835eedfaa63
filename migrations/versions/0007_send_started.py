"""send_started_at: a send began under the current claim and its outcome is not recorded yet

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 16:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('notification', 'alert'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('send_started_at', models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in ('notification', 'alert'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('send_started_at')
