"""join the admin (user search) and SCIM (rate windows) branches into one line

Revision ID: 0002
Revises: admin02, scim01
Create Date: 2026-11-29 10:05:00
"""

revision = '0002'
down_revision = ('admin02', 'scim01')
branch_labels = None
depends_on = None


def upgrade():
    pass  # both branches' tables and indexes are already in place


def downgrade():
    pass
