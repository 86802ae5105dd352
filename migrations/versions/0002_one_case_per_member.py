"""one case per member: messages joining an open case

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 21:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.db.models


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('more_messages', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('last_message_at', bot.db.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('alert_outdated_at', bot.db.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.drop_column('alert_outdated_at')
        batch_op.drop_column('last_message_at')
        batch_op.drop_column('more_messages')
