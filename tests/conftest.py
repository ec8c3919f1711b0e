"""Fixtures for the whole suite.

Every test that takes ``app`` (or anything built on it) runs once per
database: SQLite always, PostgreSQL when ``TEST_DATABASE_URL`` names one.
Each database is migrated once per session with the real Alembic migrations;
rows are wiped between tests.
"""
from __future__ import annotations

import os
import re
import types

import flask_migrate
import pytest
from sqlalchemy import create_engine, text

from app import create_app
from config import TestConfig
from models import db

PG_SKIP_REASON = ("PostgreSQL tests skipped: set TEST_DATABASE_URL to a PostgreSQL database "
                  "(.ci/run does; e.g. postgresql://postgres@127.0.0.1:5432/lobby_test)")


def reset_postgres(url: str) -> None:
    """Empty the PostgreSQL test database so migrations start from nothing."""
    engine = create_engine(TestConfig(url, "/tmp").SQLALCHEMY_DATABASE_URI)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def _worker_database(url: str) -> str:
    """Under pytest-xdist each worker gets its own PostgreSQL database next to the given one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base, _, name = url.rpartition("/")
    worker_url = f"{base}/{name}_{worker}"
    engine = create_engine(TestConfig(url, "/tmp").SQLALCHEMY_DATABASE_URI, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": f"{name}_{worker}"}).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}_{worker}"'))
    finally:
        engine.dispose()
    return worker_url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    if request.param == "postgresql":
        url = os.environ.get("TEST_DATABASE_URL", "")
        if not url.startswith(("postgres://", "postgresql")):
            pytest.skip(PG_SKIP_REASON)
        url = _worker_database(url)
        try:
            reset_postgres(url)
        except Exception as error:  # a configured database that does not answer is an error
            pytest.fail(f"TEST_DATABASE_URL is set but PostgreSQL did not answer: {error}")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'lobby-test.db'}"
    app = create_app(TestConfig(url, str(tmp_path_factory.mktemp("instance"))))
    with app.app_context():
        flask_migrate.upgrade(revision="heads")
        db.engine.dispose()
    return url


def wipe(app) -> None:
    with app.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    conn.execute(text(f'DELETE FROM "{table}"'))
        db.engine.dispose()


_APPS: dict = {}


@pytest.fixture
def make_app(database_url, tmp_path_factory):
    """An app on the test database; another call with other settings is another process, as far as state goes.

    Building an app costs more than most tests, so apps are reused across tests
    (per database and settings) with their per-process cache emptied;
    ``fresh=True`` builds a new one (for a test that changes the app itself).
    """
    used = []
    fresh_apps = []

    def _make(fresh: bool = False, **overrides):
        key = (database_url, tuple(sorted(overrides.items())))
        pool = _APPS.setdefault(key, [])
        # Within one test every call is a distinct app, so "two processes" stay two.
        taken = sum(1 for app in used if app in pool)
        if fresh or taken >= len(pool):
            app = create_app(TestConfig(database_url, str(tmp_path_factory.mktemp("instance")), **overrides))
            if fresh:
                fresh_apps.append(app)
            else:
                pool.append(app)
        else:
            app = pool[taken]
        app.extensions.get("lobby.process_cache", {}).clear()
        used.append(app)
        return app

    yield _make
    for app in used:
        _drop_unwritten_scim_log(app)
    if used:
        wipe(used[0])
    # A fresh app is dropped after its test: close its pooled connections now, or
    # the garbage collector closes them later, in whichever test is running then.
    for app in fresh_apps:
        _dispose(app)


def _drop_unwritten_scim_log(app) -> None:
    """SCIM log rows a test left queued (batched logging) must not land in the next test's tables."""
    queue = app.extensions.pop("lobby.scim_log", None)
    if queue is not None:
        with queue.lock:
            queue.rows.clear()


def _dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def _close_cached_apps():
    yield
    for pool in _APPS.values():
        for app in pool:
            _dispose(app)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def backend(app):
    with app.app_context():
        return db.engine.dialect.name


CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token(client, url: str) -> str:
    """The CSRF token from the form on ``url`` (as a browser would have it)."""
    html = client.get(url).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {url}"
    return match.group(1) or match.group(2)


@pytest.fixture
def make_user(app):
    """Create a user; returns a plain record (id, user_name, email, password)."""
    from models import Group, Membership, User

    def _make(user_name="employee@example.com", *, password="correct horse battery", email=None,
              admin=False, active=True, source="local", groups=(), **fields):
        with app.app_context():
            user = User(user_name=user_name, is_admin=admin, active=active, source=source, **fields)
            user.set_primary_email(email or (user_name if "@" in user_name else None))
            user.set_password(password)
            db.session.add(user)
            for name in groups:
                group = Group.query.filter_by(display_name_key=name.casefold()).one_or_none()
                if group is None:
                    group = Group(display_name=name, source="local")
                    db.session.add(group)
                db.session.add(Membership(group=group, user=user, source="local"))
            db.session.commit()
            return types.SimpleNamespace(id=user.id, user_name=user.user_name, email=user.email,
                                         password=password)

    return _make


@pytest.fixture
def admin(make_user):
    return make_user("admin@example.com", admin=True, given_name="Ada", family_name="Admin")


@pytest.fixture
def employee(make_user, admin):
    return make_user("employee@example.com", given_name="Erin", family_name="Employee",
                     department="Sales", title="Account manager")


class AuthActions:
    def __init__(self, client):
        self.client = client

    def login(self, login, password, next_path=None, follow=False):
        token = csrf_token(self.client, "/login")
        data = {"login": login, "password": password, "csrf_token": token}
        if next_path is not None:
            data["next"] = next_path
        return self.client.post("/login", data=data, follow_redirects=follow)

    def login_as(self, user):
        response = self.login(user.user_name, user.password)
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    def logout(self):
        token = csrf_token(self.client, "/")
        return self.client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def live_server(database_url, tmp_path, make_app):
    """Lobby under gunicorn (two workers) on the test database; rows are wiped afterwards."""
    from .live import LiveServer

    make_app()  # registers the wipe of this database at teardown
    with LiveServer(database_url, tmp_path / "live") as server:
        yield server
