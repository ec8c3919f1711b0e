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


def test_migrations_on_empty_sqlite(tmp_path):
    _assert_models_match_migrations(create_app(TestConfig(f"sqlite:///{tmp_path / 'fresh.db'}", str(tmp_path))))


def test_migrations_on_empty_postgresql(tmp_path):
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip(PG_SKIP_REASON)
    name = f"lobby_migrate_{uuid.uuid4().hex[:8]}"
    admin_url = TestConfig(url, str(tmp_path)).SQLALCHEMY_DATABASE_URI
    server = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        fresh_url = admin_url.rsplit("/", 1)[0] + "/" + name
        _assert_models_match_migrations(create_app(TestConfig(fresh_url, str(tmp_path))))
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def test_migrations_have_one_head(tmp_path):
    """`flask db upgrade` (as the README says) refuses to run when the history has forked."""
    from alembic.script import ScriptDirectory
    app = create_app(TestConfig(f"sqlite:///{tmp_path / 'heads.db'}", str(tmp_path)))
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
        heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"migrations fork into {heads}: add a merge revision"
