"""Several Lobby processes on one database behave as one; a missing database is a 503, not a traceback."""
import re
import sqlite3

import pytest
import requests

from models import User, db

from .live import LiveServer


def _login(session: requests.Session, base: str, user) -> requests.Response:
    page = session.get(base + "/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return session.post(base + "/login", data={"login": user.user_name, "password": user.password,
                                               "csrf_token": token}, allow_redirects=False)


def test_a_session_made_by_one_process_works_on_another_and_ends_everywhere(
        app, database_url, live_server, tmp_path, employee):
    with LiveServer(database_url, tmp_path / "second") as second:
        browser = requests.Session()
        assert _login(browser, live_server.url, employee).status_code == 302
        assert browser.get(second.url + "/", allow_redirects=False).status_code == 200
        with app.app_context():
            db.session.get(User, employee.id).end_sessions()
            db.session.commit()
        for server in (live_server, second):
            response = browser.get(server.url + "/", allow_redirects=False)
            assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_first_run_code_is_printed_by_the_server(live_server):
    response = requests.get(live_server.url + "/", allow_redirects=True)
    assert response.url.endswith("/setup")
    assert re.search(r"set-up code: [A-Z2-7]{5}-[A-Z2-7]{5}", live_server.output())


def test_locked_sqlite_gives_a_503_and_no_half_written_change(make_app, backend, admin, employee, tmp_path):
    if backend != "sqlite":
        pytest.skip("SQLite locking; the unreachable-database case below covers PostgreSQL")
    app = make_app(sqlite_busy_timeout=0.2)
    client = app.test_client()
    from .conftest import AuthActions
    token_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', token_page).group(1)
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post("/login", data={"login": employee.user_name, "password": employee.password,
                                               "csrf_token": token}, headers={"Accept": "text/html"})
        assert response.status_code == 503
        body = response.get_data(as_text=True)
        assert "cannot reach its database" in body and "Traceback" not in body
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with app.app_context():
        assert db.session.get(User, employee.id).last_login_at is None
    assert AuthActions(client).login(employee.user_name, employee.password).status_code == 302


def test_unreachable_database_gives_a_503(tmp_path):
    from app import create_app
    from config import TestConfig

    from .live import free_port
    app = create_app(TestConfig(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", str(tmp_path)))
    for accept, kind in (("text/html", "text/html"), ("application/json", "application/json")):
        response = app.test_client().get("/login", headers={"Accept": accept})
        assert response.status_code == 503 and response.mimetype == kind
        assert "Traceback" not in response.get_data(as_text=True)


def test_a_connection_that_died_while_idle_is_replaced_before_a_request_uses_it(make_app, backend, monkeypatch):
    """A pooled connection idle for a while is pinged on checkout (models.install_idle_ping):
    one its server dropped (a restart, a timeout) is replaced, not handed to a request."""
    if backend != "postgresql":
        pytest.skip("a server-side disconnect is PostgreSQL's; SQLite has no server")
    import models
    from sqlalchemy import create_engine, text
    app = make_app(fresh=True)
    with app.app_context():
        killed = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        db.session.remove()  # back into the pool, idle
        killer = create_engine(db.engine.url, isolation_level="AUTOCOMMIT")
        with killer.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed}).scalar()
        killer.dispose()
        monkeypatch.setattr(models, "IDLE_PING_SECONDS", 0.0)  # "idle for a while" is now
        served = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        db.session.remove()
    assert served != killed
