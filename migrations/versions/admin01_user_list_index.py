"""index for the admin user list, sorted by creation time

Revision ID: admin01
Revises: 0001
Create Date: 2026-11-29 08:30:00
"""
from alembic import op


revision = 'admin01'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    # Keyset pagination over (created_at, id) reads the next page straight off this index.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index('ix_users_created_at_id', ['created_at', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ix_users_created_at_id')
