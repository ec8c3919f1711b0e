"""The migrations build the schema the models describe, on an empty SQLite and PostgreSQL database."""
import os
import uuid

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from app import create_app
from config import TestConfig
from models import db

from .conftest import PG_SKIP_REASON


def _assert_models_match_migrations(app):
    with app.app_context():
        flask_migrate.upgrade(revision="heads")
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, db.metadata)
            tables = set(inspect(conn).get_table_names())
        db.engine.dispose()
    assert differences == []
    assert {"users", "groups", "memberships", "identities", "settings", "scim_tokens", "audit_events",
            "saml_outstanding_requests", "saml_seen_assertions"} <= tables


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    """The URL of an empty database of each kind (PostgreSQL when TEST_DATABASE_URL names one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip(PG_SKIP_REASON)
    # An empty schema, alone on the search path, stands for an empty database: dropping a
    # database makes PostgreSQL write a checkpoint and wait for it (12 s on a slow disk while
    # the other test workers write), dropping a schema does not.
    name = f"lobby_migrate_{uuid.uuid4().hex[:8]}"
    admin_url = TestConfig(url, str(tmp_path)).SQLALCHEMY_DATABASE_URI
    server = create_engine(admin_url)
    with server.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield f"{admin_url}?options=-csearch_path%3D{name}"
        with server.connect() as conn:  # the test's tables went into that schema, not elsewhere
            assert conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s "
                                     "AND table_name = 'alembic_version'"), {"s": name}).scalar() == 1
    finally:
        with server.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        server.dispose()


def test_migrations_on_an_empty_database(empty_database, tmp_path):
    _assert_models_match_migrations(create_app(TestConfig(empty_database, str(tmp_path))))


def test_migrations_have_one_head(tmp_path):
    """`flask db upgrade` (as the README says) refuses to run when the history has forked."""
    from alembic.script import ScriptDirectory
    app = create_app(TestConfig(f"sqlite:///{tmp_path / 'heads.db'}", str(tmp_path)))
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
        heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"migrations fork into {heads}: add a merge revision"


def test_keys01_folds_stored_keys_canonically_and_back(empty_database, tmp_path):
    """Keys written by the old fold (plain casefold) are brought to the canonical caseless form;
    two users whose names differ only in how an accent is encoded both keep their keys."""
    import unicodedata

    from models.user import fold

    nfd = unicodedata.normalize("NFD", "José@Example.com")
    nfc = unicodedata.normalize("NFC", "Zoë@Example.com")
    twin_nfd, twin_nfc = unicodedata.normalize("NFD", "Renée@x.com"), unicodedata.normalize("NFC", "Renée@x.com")
    app = create_app(TestConfig(empty_database, str(tmp_path)))
    users = [("u1", nfd), ("u2", nfc), ("u3", twin_nfd), ("u4", twin_nfc)]
    with app.app_context():
        flask_migrate.upgrade(revision="saml01")
        with db.engine.begin() as conn:
            for user_id, name in users:
                conn.execute(text("INSERT INTO users (id, user_name, user_name_key, extra, active, is_admin, source, "
                                  "created_at, updated_at, version, session_epoch, search_text) VALUES (:id, :name, "
                                  ":key, '{}', true, false, 'scim', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1, 0, :search)"),
                             {"id": user_id, "name": name, "key": name.casefold(), "search": name.casefold()})
            conn.execute(text('INSERT INTO user_emails (user_id, value, value_key, type, "primary", position) '
                              "VALUES ('u1', :v, :k, 'work', true, 0)"), {"v": nfd, "k": nfd.casefold()})
            conn.execute(text("INSERT INTO groups (id, display_name, display_name_key, source, adopted_by_idp, "
                              "created_at, updated_at, version) VALUES ('g1', :n, :k, 'scim', false, "
                              "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"), {"n": "Équipe", "k": "équipe"})
            conn.execute(text("UPDATE groups SET display_name = :n, display_name_key = :k"),
                         {"n": unicodedata.normalize("NFD", "Équipe"), "k": unicodedata.normalize("NFD", "équipe")})

        def stored():
            with db.engine.connect() as conn:
                keys = dict(conn.execute(text("SELECT id, user_name_key FROM users")).all())
                search = dict(conn.execute(text("SELECT id, search_text FROM users")).all())
                email = conn.execute(text("SELECT value_key FROM user_emails")).scalar()
                group = conn.execute(text("SELECT display_name_key FROM groups")).scalar()
            return keys, search, email, group

        flask_migrate.upgrade(revision="keys01")
        keys, search, email, group = stored()
        assert keys["u1"] == fold(nfd) == fold(unicodedata.normalize("NFC", nfd)) != nfd.casefold()
        assert keys["u2"] == nfc.casefold()  # already canonical: unchanged
        assert (keys["u3"], keys["u4"]) == (twin_nfd.casefold(), twin_nfc.casefold())  # would clash: kept
        assert search["u1"] == fold(nfd) and email == fold(nfd) and group == fold("Équipe")
        flask_migrate.downgrade(revision="saml01")
        keys, search, email, group = stored()
        assert keys["u1"] == nfd.casefold() and email == nfd.casefold()
        assert group == unicodedata.normalize("NFD", "Équipe").casefold()
        db.engine.dispose()
