"""migrations: holds outside the queue (waiting, blocked, soak, the cloud) and forced windows; waves: their soak;
rollbacks: the dumps of their databases

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlplane.db

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('migrations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('waiting_for', sa.String(length=300), server_default='', nullable=False))
        batch_op.add_column(sa.Column('soak_until', controlplane.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('window_forced', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('cloud_retry_at', controlplane.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cloud_waits', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('migration_waves', schema=None) as batch_op:
        batch_op.add_column(sa.Column('soak_hours', sa.Float(), nullable=True))
    with op.batch_alter_table('migration_rollbacks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dumps', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('migration_rollbacks', schema=None) as batch_op:
        batch_op.drop_column('dumps')
    with op.batch_alter_table('migration_waves', schema=None) as batch_op:
        batch_op.drop_column('soak_hours')
    with op.batch_alter_table('migrations', schema=None) as batch_op:
        batch_op.drop_column('cloud_waits')
        batch_op.drop_column('cloud_retry_at')
        batch_op.drop_column('window_forced')
        batch_op.drop_column('soak_until')
        batch_op.drop_column('waiting_for')
