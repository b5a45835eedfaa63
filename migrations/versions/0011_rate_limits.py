"""rate-limit buckets shared by web workers; staff TOTP secrets

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base  # noqa: F401

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'rate_bucket',
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('tokens', sa.Float(), nullable=False),
        sa.Column('stamp', sa.Float(), nullable=False),
        sa.Column('allowed', sa.Boolean(), nullable=False),
        sa.Column('strikes', sa.Integer(), nullable=False),
        sa.Column('until', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index(op.f('ix_rate_bucket_stamp'), 'rate_bucket', ['stamp'], unique=False)
    with op.batch_alter_table('staff_user') as batch:
        batch.add_column(sa.Column('totp_secret', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('staff_user') as batch:
        batch.drop_column('totp_last_step')
        batch.drop_column('totp_secret')
    op.drop_index(op.f('ix_rate_bucket_stamp'), table_name='rate_bucket')
    op.drop_table('rate_bucket')
