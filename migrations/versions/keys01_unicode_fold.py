"""Case-insensitive keys fold canonically equivalent spellings alike (NFD é = NFC é)

Revision ID: keys01
Revises: saml01

Recomputes users.user_name_key, groups.display_name_key, user_emails.value_key and
users.search_text with the new fold (models.user.fold, copied here so that this migration
keeps meaning what it meant). Where two rows would now share a unique key (two users whose
names differed only in how an accent was encoded), both keep their old keys and a warning
names them: an admin decides which account stays.
"""
import unicodedata

from alembic import op
import sqlalchemy as sa


revision = 'keys01'
down_revision = 'saml01'
branch_labels = None
depends_on = None


def _fold(value):
    if value is None:
        return None
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", value).casefold())


def _casefold(value):  # the fold before this revision
    return value.casefold() if value is not None else None


def _unique_keys(conn, table, key_column, source_column, fold):
    rows = conn.execute(sa.text(f"SELECT id, {source_column}, {key_column} FROM {table}")).all()
    final = {row[0]: row[2] for row in rows}
    wanted = {row[0]: fold(row[1]) for row in rows if fold(row[1]) != row[2]}
    final.update(wanted)
    while True:
        holders = {}
        for row_id, key in final.items():
            holders.setdefault(key, []).append(row_id)
        clashing = {row_id for ids in holders.values() if len(ids) > 1 for row_id in ids if row_id in wanted}
        if not clashing:
            break
        for row_id in clashing:
            print(f"keys01: {table} {row_id} keeps its key {final[row_id]!r} (another row folds alike)")
            final[row_id] = next(row[2] for row in rows if row[0] == row_id)
            del wanted[row_id]
    # Two passes through a temporary value, so that swapping keys never trips the unique index.
    for row_id in wanted:
        conn.execute(sa.text(f"UPDATE {table} SET {key_column} = :tmp WHERE id = :id"),
                     {"tmp": f"keys01:{row_id}", "id": row_id})
    for row_id, key in wanted.items():
        conn.execute(sa.text(f"UPDATE {table} SET {key_column} = :key WHERE id = :id"), {"key": key, "id": row_id})


def _rekey(fold, search_text=True):
    conn = op.get_bind()
    _unique_keys(conn, "users", "user_name_key", "user_name", fold)
    _unique_keys(conn, "groups", "display_name_key", "display_name", fold)
    for row_id, value, key in conn.execute(sa.text("SELECT id, value, value_key FROM user_emails")).all():
        if fold(value) != key:
            conn.execute(sa.text("UPDATE user_emails SET value_key = :key WHERE id = :id"),
                         {"key": fold(value), "id": row_id})
    if not search_text:
        return
    for row_id, text in conn.execute(sa.text("SELECT id, search_text FROM users")).all():
        # Each line of the search text is a folded name or address; folding it again gives the new form.
        folded = "\n".join(fold(line) for line in text.split("\n")) if text else text
        if folded != text:
            conn.execute(sa.text("UPDATE users SET search_text = :text WHERE id = :id"), {"text": folded, "id": row_id})


def upgrade():
    _rekey(_fold)


def downgrade():
    # The search text keeps the composed form: the older fold cannot tell how an accent was first
    # encoded, and the admin search only finds fewer rows spelled the other way until a user changes.
    _rekey(_casefold, search_text=False)
