"""Faults and concurrency over real HTTP against gunicorn, on SQLite and PostgreSQL.

* 50 user creations at once over 10 userNames (case variants): one wins per name, the rest 409.
* Two gunicorn servers on one database act as one deployment: a SAML login started on one
  completes on the other, a replay sent to the other is refused, and a SCIM deactivation
  through one ends the session the other serves.
* PostgreSQL killing the app's connection in the middle of a request: a 503 that says so,
  no traceback, nothing half-written, and the next request is served.

The servers run gthread workers (GUNICORN_CMD_ARGS) so that requests overlap inside each
process as well as across the two worker processes.
"""
from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, text

from models import AuditEvent, Identity, User, db

from ..live import LiveServer, free_port
from ..saml_idp import LOGIN_PATH, ACS_PATH, FINISH_PATH, TestIdP, configure_saml, encode, read_authn_request
from ..scim.conftest import PATCH_SCHEMA, USER_SCHEMA, issue_token

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
THREADED = {"GUNICORN_CMD_ARGS": "--worker-class gthread --threads 8", "SCIM_RATE_LIMIT_PER_MINUTE": "100000"}


def scim_headers(token: str) -> dict:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json",
            "Accept": "application/scim+json"}


def password_login(session: requests.Session, base: str, user) -> requests.Response:
    page = session.get(base + "/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return session.post(base + "/login", data={"login": user.user_name, "password": user.password,
                                               "csrf_token": token}, allow_redirects=False)


def assert_scim_error(response: requests.Response, status: int, scim_type: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == str(status), body
    if scim_type:
        assert body["scimType"] == scim_type, body
    assert "Traceback" not in response.text
    return body


# --- 50 creations, 10 names -------------------------------------------------------------------

NAMES = 10
VARIANTS = 5  # 10 names × 5 spellings = 50 requests


def spellings(index: int) -> list[str]:
    """Five spellings of one userName that Lobby must treat as the same name (case-insensitive)."""
    base = f"clash{index:02d}.person@example.com"
    return [base, base.upper(), base.title(), base.capitalize(), base.swapcase().replace("@EXAMPLE", "@example")]


def test_fifty_creations_over_ten_names_one_winner_each(app, database_url, make_app, tmp_path):
    token = issue_token(app, "race")
    make_app()  # the wipe afterwards
    requests_to_send = [(i, name) for variant in range(VARIANTS) for i in range(NAMES)
                        for name in [spellings(i)[variant]]]
    assert len(requests_to_send) == 50 and len({n.casefold() for _i, n in requests_to_send}) == NAMES
    with LiveServer(database_url, tmp_path / "race", env=THREADED) as server:
        start = threading.Barrier(len(requests_to_send))

        def create(item):
            index, name = item
            body = {"schemas": [USER_SCHEMA], "userName": name, "active": True,
                    "emails": [{"value": name.lower(), "primary": True, "type": "work"}]}
            with requests.Session() as session:
                session.get(server.url + "/login", timeout=30)  # the connection is open before the race
                start.wait(timeout=30)
                response = session.post(server.url + "/api/scim/v2/Users", data=json.dumps(body),
                                        headers=scim_headers(token), timeout=120)
            return index, name, response

        with ThreadPoolExecutor(max_workers=len(requests_to_send)) as pool:
            results = list(pool.map(create, requests_to_send))

    assert not [r for _i, _n, r in results if r.status_code >= 500], server.output()[-3000:]
    winners: dict[int, list[str]] = {i: [] for i in range(NAMES)}
    for index, name, response in results:
        if response.status_code == 201:
            winners[index].append(response.json()["id"])
            assert response.json()["userName"] == name
        else:
            assert_scim_error(response, 409, "uniqueness")
    assert all(len(ids) == 1 for ids in winners.values()), winners
    with app.app_context():
        stored = {u.user_name_key: u.id for u in User.query.filter(User.user_name_key.like("clash%"))}
        db.session.remove()
    # One row per name, and it is the row the winner was told about.
    assert len(stored) == NAMES
    assert sorted(stored.values()) == sorted(ids[0] for ids in winners.values())


# --- two processes, one deployment ----------------------------------------------------------

def test_login_replay_and_deactivation_across_two_gunicorn_servers(app, database_url, make_app, admin, tmp_path):
    """Server A starts a login, server B completes it; A refuses the replay; a SCIM deactivation
    sent to A ends the session B serves. Both are configured with A's BASE_URL, as two processes
    behind one load balancer would be."""
    idp = TestIdP()
    configure_saml(app, idp)
    token = issue_token(app, "okta")
    make_app()
    port_a = free_port()
    base = f"http://127.0.0.1:{port_a}"
    with LiveServer(database_url, tmp_path / "a", port=port_a, env=THREADED) as a, \
            LiveServer(database_url, tmp_path / "b", base_url=base, env=THREADED) as b:
        # The IdP already provisioned Erin through A.
        created = requests.post(a.url + "/api/scim/v2/Users", headers=scim_headers(token), timeout=30, data=json.dumps(
            {"schemas": [USER_SCHEMA], "userName": "erin@example.com", "active": True,
             "name": {"givenName": "Erin", "familyName": "Employee"},
             "emails": [{"value": "erin@example.com", "primary": True, "type": "work"}]}))
        assert created.status_code == 201, created.text
        erin_id = created.json()["id"]

        browser = requests.Session()
        started = browser.get(a.url + LOGIN_PATH, allow_redirects=False, timeout=30)
        assert started.status_code == 302 and started.headers["Location"].startswith(idp.sso_url)
        authn = read_authn_request(started.headers["Location"])
        xml = idp.response(authn.id, audience=base + "/auth/saml2", destination=base + ACS_PATH,
                           recipient=base + ACS_PATH)
        form = {"SAMLResponse": encode(xml), "RelayState": authn.relay_state}
        landed = browser.post(b.url + ACS_PATH, data=form, allow_redirects=False, timeout=30)
        assert landed.status_code == 303 and FINISH_PATH in landed.headers["Location"], landed.text[:500]
        finished = browser.get(b.url + landed.headers["Location"], allow_redirects=False, timeout=30)
        assert finished.status_code == 303 and finished.headers["Location"] == "/", finished.text[:500]
        for server in (b, a):  # the session works on both
            home = browser.get(server.url + "/", allow_redirects=False, timeout=30)
            assert home.status_code == 200 and "Erin" in home.text
        with app.app_context():
            # Signed in as the SCIM-provisioned user, not a second Erin made on the fly.
            assert Identity.query.filter_by(identifier="00u1erinlobbytest").one().user_id == erin_id
            db.session.remove()

        # The captured POST replayed to the other server by someone else.
        attacker = requests.Session()
        replay = attacker.post(a.url + ACS_PATH, data=form, allow_redirects=False, timeout=30)
        assert replay.status_code == 303
        reference = re.search(r"ref=([A-Z0-9]{8})", replay.headers["Location"]).group(1)
        with app.app_context():
            assert AuditEvent.query.filter_by(reference=reference).one().reason.startswith("Replay")
            db.session.remove()
        assert attacker.get(a.url + "/", allow_redirects=False, timeout=30).status_code == 302
        assert attacker.get(b.url + "/", allow_redirects=False, timeout=30).status_code == 302

        # Okta deactivates Erin through A; B stops serving her session at once.
        patch = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]}
        deactivated = requests.patch(a.url + f"/api/scim/v2/Users/{erin_id}", data=json.dumps(patch),
                                     headers=scim_headers(token), timeout=30)
        assert deactivated.status_code == 200 and deactivated.json()["active"] is False
        for server in (b, a):
            after = browser.get(server.url + "/", allow_redirects=False, timeout=30)
            assert after.status_code == 302 and "/login" in after.headers["Location"]


# --- the database going away ----------------------------------------------------------------

def _kill_when_blocked(database_url: str, stop: threading.Event, killed: list) -> None:
    """Wait for an app backend stuck on our row lock, then terminate it (as a failover or an
    administrator would), mid-request."""
    from config import TestConfig
    engine = create_engine(TestConfig(database_url, "/tmp").SQLALCHEMY_DATABASE_URI, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            while not stop.is_set():
                pids = conn.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'")).scalars().all()
                for pid in pids:
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    killed.append(pid)
                if pids:
                    return
                time.sleep(0.05)
    finally:
        engine.dispose()


def _with_row_locked(app, user_id: str, database_url: str, send):
    """Run ``send()`` while this test holds the user's row locked and a helper kills whichever
    app connection waits for it; returns send()'s response and the killed backends."""
    from config import TestConfig
    engine = create_engine(TestConfig(database_url, "/tmp").SQLALCHEMY_DATABASE_URI)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_when_blocked, args=(database_url, stop, killed))
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(text("SELECT id FROM users WHERE id = :id FOR UPDATE"), {"id": user_id})
            killer.start()
            response = send()
            transaction.rollback()
    finally:
        stop.set()
        killer.join(timeout=10)
        engine.dispose()
    return response, killed


def test_connection_killed_mid_request_is_a_503_and_nothing_half_written(
        app, backend, database_url, make_app, admin, employee, tmp_path):
    if backend != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's; a locked SQLite is tests/test_processes.py's case")
    token = issue_token(app, "okta")
    make_app()
    with LiveServer(database_url, tmp_path / "gone", env=THREADED) as server:
        # SCIM: a deactivation whose connection dies while it waits for the row.
        patch = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]}
        url = server.url + f"/api/scim/v2/Users/{employee.id}"
        response, killed = _with_row_locked(app, employee.id, database_url, lambda: requests.patch(
            url, data=json.dumps(patch), headers=scim_headers(token), timeout=60))
        assert killed, "no app connection ever waited on the lock: the fault was not injected"
        body = assert_scim_error(response, 503)
        assert "cannot reach its database" in body["detail"]
        with app.app_context():
            assert db.session.get(User, employee.id).active is True  # nothing half-written
            db.session.remove()
        # Back: the same request is served (the pool dropped the dead connection).
        again = requests.patch(url, data=json.dumps(patch), headers=scim_headers(token), timeout=60)
        assert again.status_code == 200 and again.json()["active"] is False

        # A browser sign-in (HTML) whose connection dies while it records the sign-in.
        browser = requests.Session()
        response, killed = _with_row_locked(app, admin.id, database_url,
                                            lambda: password_login(browser, server.url, admin))
        assert killed
        assert response.status_code == 503, (response.status_code, response.text[:300])
        assert "cannot reach its database" in response.text and "Traceback" not in response.text
        assert response.headers["Content-Type"].startswith("text/html")
        with app.app_context():
            assert db.session.get(User, admin.id).last_login_at is None
            assert AuditEvent.query.filter_by(action="auth.login", outcome="success").count() == 0
            db.session.remove()
        assert browser.get(server.url + "/admin/users", allow_redirects=False).status_code == 302  # not signed in
        assert password_login(browser, server.url, admin).status_code == 302
        assert browser.get(server.url + "/admin/users", allow_redirects=False).status_code == 200
    assert "Traceback" not in server.output()


def test_sign_in_that_cannot_commit_leaves_the_browser_signed_out(make_app, backend, admin, employee):
    """The SQLite side of the case above (a writer holds the database): the 503 sign-in must not
    hand out a signed-in cookie for a sign-in that was never recorded."""
    if backend != "sqlite":
        pytest.skip("SQLite locking; PostgreSQL is covered by the killed-connection test above")
    import sqlite3

    from ..conftest import AuthActions, csrf_token
    app = make_app(sqlite_busy_timeout=0.2)
    client = app.test_client()
    token = csrf_token(client, "/login")
    blocker = sqlite3.connect(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post("/login", data={"login": employee.user_name, "password": employee.password,
                                               "csrf_token": token}, headers={"Accept": "text/html"})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 302  # still signed out
    with app.app_context():
        assert db.session.get(User, employee.id).last_login_at is None
    assert AuthActions(client).login(employee.user_name, employee.password).status_code == 302
    assert client.get("/").status_code == 200
