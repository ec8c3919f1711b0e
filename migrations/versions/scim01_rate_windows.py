"""SCIM: per-token request counts for the rate limit

Revision ID: scim01
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = 'scim01'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('scim_rate_windows',
    sa.Column('token_id', sa.Integer(), nullable=False),
    sa.Column('minute', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['token_id'], ['scim_tokens.id'], name=op.f('fk_scim_rate_windows_token_id_scim_tokens'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_id', name=op.f('pk_scim_rate_windows'))
    )


def downgrade():
    op.drop_table('scim_rate_windows')
