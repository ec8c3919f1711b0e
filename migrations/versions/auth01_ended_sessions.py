"""Sessions ended by signing out stay ended (a copied cookie no longer works)

Revision ID: auth01
Revises: keys01
"""
from alembic import op
import sqlalchemy as sa


revision = 'auth01'
down_revision = 'keys01'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ended_sessions',
    sa.Column('sid_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('sid_hash', name=op.f('pk_ended_sessions'))
    )
    with op.batch_alter_table('ended_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ended_sessions_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('ended_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ended_sessions_expires_at'))
    op.drop_table('ended_sessions')
