"""The SCIM request log is written in batches (config SCIM_LOG_FLUSH_SECONDS / SCIM_LOG_BATCH):
rows arrive in order and complete, errors at once, the rate limit counts what is not written yet."""
from __future__ import annotations

import sqlite3
import time

import pytest

from models import ScimRequestLog, ScimToken, db

from .conftest import ScimClient, issue_token


def logged(app) -> list[tuple[str, str, int]]:
    with app.app_context():
        rows = db.session.query(ScimRequestLog.method, ScimRequestLog.path, ScimRequestLog.status) \
            .order_by(ScimRequestLog.id).all()
        db.session.remove()
        return [tuple(row) for row in rows]


@pytest.fixture
def batched(make_app):
    """An app that writes the log every 3 rows, or after a minute."""
    app = make_app(SCIM_LOG_FLUSH_SECONDS=60.0, SCIM_LOG_BATCH=3)
    return app, ScimClient(app.test_client(), issue_token(app))


def test_rows_wait_for_a_full_batch_then_arrive_in_order(batched):
    app, scim = batched
    scim.create_user("ada@example.com")
    assert scim.get('Users?filter=userName eq "ada@example.com"').status_code == 200
    assert logged(app) == []
    assert scim.get("Users?count=1").status_code == 200
    assert logged(app) == [("POST", "/api/scim/v2/Users", 201),
                           ("GET", '/api/scim/v2/Users?filter=userName eq "ada@example.com"', 200),
                           ("GET", "/api/scim/v2/Users?count=1", 200)]


def test_a_failed_request_is_written_at_once_with_what_waited_before_it(batched):
    app, scim = batched
    assert scim.get("Users?count=1").status_code == 200
    assert scim.get("Users/no-such-id").status_code == 404
    assert [(method, status) for method, _path, status in logged(app)] == [("GET", 200), ("GET", 404)]


def test_the_token_last_use_is_noted_when_the_batch_is_written(batched):
    app, scim = batched
    for _ in range(3):
        scim.get("Users?count=1")
    with app.app_context():
        assert ScimToken.query.one().last_used_at is not None


def test_a_background_thread_writes_rows_when_traffic_stops(make_app):
    app = make_app(SCIM_LOG_FLUSH_SECONDS=0.2, SCIM_LOG_BATCH=1000)
    scim = ScimClient(app.test_client(), issue_token(app))
    assert scim.get("Users?count=1").status_code == 200
    deadline = time.monotonic() + 10
    while not logged(app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [status for _m, _p, status in logged(app)] == [200]


def test_the_rate_limit_counts_requests_not_yet_written(make_app):
    app = make_app(SCIM_LOG_FLUSH_SECONDS=60.0, SCIM_LOG_BATCH=1000, SCIM_RATE_LIMIT_PER_MINUTE=3)
    scim = ScimClient(app.test_client(), issue_token(app))
    statuses = [scim.get("Users?count=1").status_code for _ in range(4)]
    if statuses == [200, 200, 429, 429]:  # the minute turned over mid-test: the window restarted
        pytest.skip("a minute boundary fell inside the test")
    assert statuses == [200, 200, 200, 429]
    assert [status for _m, _p, status in logged(app)] == [200, 200, 200, 429]


def test_a_lookup_does_not_wait_for_a_writer_on_sqlite(make_app, backend, tmp_path):
    """A read takes no transaction: on SQLite it is served while another process holds the
    write lock (before, every request took the lock and waited)."""
    if backend != "sqlite":
        pytest.skip("SQLite's write lock; PostgreSQL readers never wait for writers")
    app = make_app(sqlite_busy_timeout=0.5, SCIM_LOG_FLUSH_SECONDS=60.0)
    scim = ScimClient(app.test_client(), issue_token(app))
    scim.create_user("grace@example.com")
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    writer = sqlite3.connect(path, isolation_level=None, timeout=0.5)
    try:
        writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        response = scim.get('Users?filter=userName eq "grace@example.com"')
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["totalResults"] == 1
        assert time.monotonic() - started < 0.5
        # A write still waits for the lock, and says so when it cannot get it.
        assert scim.post("Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                   "userName": "linus@example.com"}).status_code == 503
    finally:
        writer.execute("ROLLBACK")
        writer.close()
