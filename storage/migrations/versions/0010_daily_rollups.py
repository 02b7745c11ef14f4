"""daily rollups, their dirty mark, and the daily_metrics view for BI tools

Revision ID: 0010
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rate(num: str, den: str) -> str:
    return f"CAST({num} AS DOUBLE PRECISION) / NULLIF({den}, 0)"


# One row per group and finished local day; the numbers of `opsbot report --json`.
DAILY_METRICS = f"""
CREATE VIEW daily_metrics AS
SELECT chat_id, day, timezone, joins, leaves, headcount_end, audience,
       response_users, interaction_users,
       {_rate('response_users', 'audience')} AS response_rate,
       {_rate('interaction_users', 'audience')} AS interaction_rate,
       retained_1h, matured_1h, {_rate('retained_1h', 'matured_1h')} AS retention_1h,
       retained_day0, matured_day0, {_rate('retained_day0', 'matured_day0')} AS retention_day0,
       retained_day1, matured_day1, {_rate('retained_day1', 'matured_day1')} AS retention_day1
FROM daily_rollups
"""


def upgrade() -> None:
    with op.batch_alter_table('chats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rollups_dirty_ts', sa.BigInteger(), nullable=True))
    op.create_table(
        'daily_rollups',
        sa.Column('chat_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('windows', sa.String(length=255), nullable=False),
        sa.Column('hosts', sa.Text(), nullable=False),
        sa.Column('joins', sa.Integer(), nullable=False),
        sa.Column('leaves', sa.Integer(), nullable=False),
        sa.Column('headcount_end', sa.Integer(), nullable=True),
        sa.Column('audience', sa.Integer(), nullable=True),
        sa.Column('response_users', sa.Integer(), nullable=False),
        sa.Column('interaction_users', sa.Integer(), nullable=False),
        sa.Column('retained_1h', sa.Integer(), nullable=False),
        sa.Column('matured_1h', sa.Integer(), nullable=False),
        sa.Column('retained_day0', sa.Integer(), nullable=False),
        sa.Column('matured_day0', sa.Integer(), nullable=False),
        sa.Column('retained_day1', sa.Integer(), nullable=False),
        sa.Column('matured_day1', sa.Integer(), nullable=False),
        sa.Column('cells', sa.Text(), nullable=False),
        sa.Column('computed_ts', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('chat_id', 'day', name=op.f('pk_daily_rollups')),
    )
    op.execute(DAILY_METRICS)


def downgrade() -> None:
    op.execute("DROP VIEW daily_metrics")
    op.drop_table('daily_rollups')
    with op.batch_alter_table('chats', schema=None) as batch_op:
        batch_op.drop_column('rollups_dirty_ts')
