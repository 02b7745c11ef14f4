"""failed updates (the dead-letter table)

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('failed_updates',
    sa.Column('update_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.String(length=128), nullable=False),
    sa.Column('handler', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('update_id', name=op.f('pk_failed_updates'))
    )


def downgrade() -> None:
    op.drop_table('failed_updates')
