"""claim tokens, ambiguous deliveries, undelivered-message alerts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('notification', 'alert'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('claim_token', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
            batch.add_column(sa.Column('ambiguous_attempts', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('alert') as batch:
        batch.alter_column('case_id', existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column('notification_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_alert_notification_id_notification', 'notification', ['notification_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('alert') as batch:
        batch.drop_constraint('fk_alert_notification_id_notification', type_='foreignkey')
        batch.drop_column('notification_id')
        batch.alter_column('case_id', existing_type=sa.Integer(), nullable=False)
    for table in ('notification', 'alert'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('ambiguous_attempts')
            batch.drop_column('claim_token')
