"""SAML: a sign-in completes only in the browser that started it

Revision ID: saml01
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = 'saml01'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('saml_outstanding_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('binding_hash', sa.String(length=64), nullable=True))

    op.create_table('saml_pending_sign_ins',
    sa.Column('ticket_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('binding_hash', sa.String(length=64), nullable=True),
    sa.Column('next_path', sa.String(length=2048), nullable=True),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('reference', sa.String(length=16), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_saml_pending_sign_ins_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ticket_hash', name=op.f('pk_saml_pending_sign_ins'))
    )
    with op.batch_alter_table('saml_pending_sign_ins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saml_pending_sign_ins_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('saml_pending_sign_ins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saml_pending_sign_ins_expires_at'))
    op.drop_table('saml_pending_sign_ins')
    with op.batch_alter_table('saml_outstanding_requests', schema=None) as batch_op:
        batch_op.drop_column('binding_hash')
