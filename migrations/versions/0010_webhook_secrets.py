"""a second active webhook secret per clinic, for rotation

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:00:00

Clinics registered before this revision keep accepting the deprecated untimed `sha256=` signature
(webhook_legacy_signatures true); clinics added later accept only `t=<unix time>,v1=<hex>`.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('clinic') as batch:
        batch.add_column(sa.Column('webhook_secret_previous', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch.add_column(sa.Column('webhook_secret_previous_until', models.base.UTCDateTime(timezone=True), nullable=True))
        # existing rows: true (their integrations send sha256= today); the default is dropped again below
        batch.add_column(sa.Column('webhook_legacy_signatures', sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table('clinic') as batch:
        batch.alter_column('webhook_legacy_signatures', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('clinic') as batch:
        batch.drop_column('webhook_legacy_signatures')
        batch.drop_column('webhook_secret_previous_until')
        batch.drop_column('webhook_secret_previous')
