"""SMS channel: per-channel opt-out, clinic region and SMS route, inbound text messages

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 22:15:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('patient') as batch:
        batch.add_column(sa.Column('sms_opted_out_at', models.base.UTCDateTime(), nullable=True))
    with op.batch_alter_table('clinic') as batch:
        batch.add_column(sa.Column('region', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True))
        batch.add_column(sa.Column('sms_url', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
    op.create_table(
        'sms_inbound',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('provider_message_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('from_phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('to_phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column('body', sqlmodel.sql.sqltypes.AutoString(length=1600), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=True),
        sa.Column('contact_id', sa.Integer(), nullable=True),
        sa.Column('response_id', sa.Integer(), nullable=True),
        sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('reply_text', sqlmodel.sql.sqltypes.AutoString(length=1600), nullable=True),
        sa.Column('received_at', models.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['patient_id'], ['patient.id']),
        sa.ForeignKeyConstraint(['contact_id'], ['contact.id']),
        sa.ForeignKeyConstraint(['response_id'], ['survey_response.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('provider_message_id'),
    )
    op.create_index(op.f('ix_sms_inbound_patient_id'), 'sms_inbound', ['patient_id'], unique=False)
    with op.batch_alter_table('notification') as batch:
        batch.add_column(sa.Column('sms_inbound_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_notification_sms_inbound_id', 'sms_inbound', ['sms_inbound_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('notification') as batch:
        batch.drop_constraint('fk_notification_sms_inbound_id', type_='foreignkey')
        batch.drop_column('sms_inbound_id')
    op.drop_index(op.f('ix_sms_inbound_patient_id'), table_name='sms_inbound')
    op.drop_table('sms_inbound')
    with op.batch_alter_table('clinic') as batch:
        batch.drop_column('sms_url')
        batch.drop_column('region')
    with op.batch_alter_table('patient') as batch:
        batch.drop_column('sms_opted_out_at')
