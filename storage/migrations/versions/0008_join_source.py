"""join source and inviter of each join (growth insights)

Revision ID: 0008
Revises: 0006 (0007 once forum topics land: the lead re-chains)

Back-fill: a join stored with an invite link came through it. The link column already
holds the link's name, else its URL, so `link:` + that value is the source key. Joins
stored without a link cannot tell an add from a direct join: they are left NULL, which
the readers take as `direct` (nothing recorded says otherwise). No row knows its inviter.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('membership_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('join_source', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('inviter_id', sa.BigInteger(), nullable=True))
    events = sa.table(
        'membership_events',
        sa.column('kind', sa.String),
        sa.column('invite_link', sa.String),
        sa.column('via_join_request', sa.Boolean),
        sa.column('join_source', sa.String),
    )
    op.execute(
        events.update()
        .where(events.c.kind == 'join', events.c.invite_link.is_not(None))
        .values(join_source=sa.literal('link:') + events.c.invite_link)
    )
    op.execute(
        events.update()
        .where(
            events.c.kind == 'join',
            events.c.invite_link.is_(None),
            events.c.via_join_request.is_(True),
        )
        .values(join_source='request')
    )


def downgrade() -> None:
    with op.batch_alter_table('membership_events', schema=None) as batch_op:
        batch_op.drop_column('inviter_id')
        batch_op.drop_column('join_source')
