"""rollup rows kept before their dayN checkpoints (wholly pending cells), with a horizon
and the day's top source; an index of the bots among users; the people with events since
a time from an index alone

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rate(num: str, den: str) -> str:
    return f"CAST({num} AS DOUBLE PRECISION) / NULLIF({den}, 0)"


COLUMNS = f"""chat_id, day, timezone, joins, leaves, headcount_end, audience,
       response_users, interaction_users,
       {_rate('response_users', 'audience')} AS response_rate,
       {_rate('interaction_users', 'audience')} AS interaction_rate,
       retained_1h, matured_1h, {_rate('retained_1h', 'matured_1h')} AS retention_1h,
       retained_day0, matured_day0, {_rate('retained_day0', 'matured_day0')} AS retention_day0,
       retained_day1, matured_day1, {_rate('retained_day1', 'matured_day1')} AS retention_day1"""


def upgrade() -> None:
    op.execute("DROP VIEW daily_metrics")
    op.execute("DELETE FROM daily_rollups")  # a cache: computed again, with horizons
    with op.batch_alter_table('daily_rollups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('top_source', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('final', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('horizon_ts', sa.BigInteger(), server_default='0', nullable=False))
    # one row per group and finished local day: only rows with no cell pending
    op.execute(f"CREATE VIEW daily_metrics AS SELECT {COLUMNS} FROM daily_rollups WHERE final")
    op.drop_index('ix_membership_events_chat_id_ts', table_name='membership_events')
    op.create_index(
        'ix_membership_events_chat_id_ts_user_id', 'membership_events', ['chat_id', 'ts', 'user_id']
    )
    op.create_index(
        'ix_users_bots', 'users', ['user_id'],
        sqlite_where=sa.text('is_bot = 1'), postgresql_where=sa.text('is_bot'),
    )


def downgrade() -> None:
    op.drop_index('ix_users_bots', table_name='users')
    op.drop_index('ix_membership_events_chat_id_ts_user_id', table_name='membership_events')
    op.create_index('ix_membership_events_chat_id_ts', 'membership_events', ['chat_id', 'ts'])
    op.execute("DROP VIEW daily_metrics")
    op.execute("DELETE FROM daily_rollups")
    with op.batch_alter_table('daily_rollups', schema=None) as batch_op:
        batch_op.drop_column('horizon_ts')
        batch_op.drop_column('final')
        batch_op.drop_column('top_source')
    op.execute(f"CREATE VIEW daily_metrics AS SELECT {COLUMNS} FROM daily_rollups")
