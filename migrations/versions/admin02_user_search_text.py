"""users.search_text: one folded column the admin search matches against

Revision ID: admin02
Revises: admin01
Create Date: 2026-11-29 09:30:00
"""
import sqlalchemy as sa
from alembic import op


revision = 'admin02'
down_revision = 'admin01'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=False, server_default=''))
    # Fill it for the users already there, as the model's before_flush hook does for new changes.
    conn = op.get_bind()
    emails = {}
    for user_id, value in conn.execute(sa.text(
            'SELECT user_id, value FROM user_emails ORDER BY user_id, position')):
        emails.setdefault(user_id, []).append(value)
    users = conn.execute(sa.text(
        'SELECT id, user_name, display_name, given_name, family_name, department FROM users')).all()
    for user_id, *fields in users:
        parts = [p for p in fields + emails.get(user_id, []) if p]
        conn.execute(sa.text('UPDATE users SET search_text = :text WHERE id = :id'),
                     {"text": "\n".join(p.casefold() for p in parts), "id": user_id})


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('search_text')
