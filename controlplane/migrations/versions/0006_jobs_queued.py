"""jobs: whether the playbook queue runs them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 12:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('automation_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queued', sa.Boolean(), server_default=sa.true(), nullable=False))
    # The jobs of migration steps were always run by their step, never by the queue.
    op.execute("UPDATE automation_jobs SET queued = false WHERE requested_by LIKE 'migration:%'")


def downgrade() -> None:
    with op.batch_alter_table('automation_jobs', schema=None) as batch_op:
        batch_op.drop_column('queued')
