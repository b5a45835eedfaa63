"""optional bone-stress risk fields on the session (domain.md 1.3)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 19:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base  # noqa: F401

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_COLUMNS = ('bsi_site', 'bsi_site_code', 'bsi_risk_class', 'mri_grade', 'cleared_to_hop')


def upgrade() -> None:
    with op.batch_alter_table('treatment_session') as batch:
        batch.add_column(sa.Column('bsi_site', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch.add_column(sa.Column('bsi_site_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('bsi_risk_class', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True))
        batch.add_column(sa.Column('mri_grade', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('cleared_to_hop', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('treatment_session') as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column)
