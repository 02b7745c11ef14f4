"""dashboard login links and sessions

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'dashboard_tokens',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('chat_id', sa.BigInteger(), nullable=True),
        sa.Column('expires_ts', sa.BigInteger(), nullable=False),
        sa.Column('used', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_dashboard_tokens')),
    )
    with op.batch_alter_table('dashboard_tokens', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_dashboard_tokens_expires_ts'), ['expires_ts'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('dashboard_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dashboard_tokens_expires_ts'))
    op.drop_table('dashboard_tokens')
