"""The SCIM request log is written in batches (config SCIM_LOG_FLUSH_SECONDS / SCIM_LOG_BATCH):
rows arrive in order and complete, errors at once, the rate limit counts what is not written yet."""
from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, text

from blueprints.scim import recorder
from models import ScimRequestLog, ScimToken, db, settings

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


# --- how a batch is written ---------------------------------------------------------------------

def _row(when, index: int, **changes) -> dict:
    row = dict(created_at=when, token_id=None, token_name=None, method="GET", path=f"/api/scim/v2/Users/{index}",
               status=200, duration_ms=None, error=None, request_body=None, response_body=None,
               minute=recorder.current_minute())
    row.update(changes)
    return row


def _write(app, rows: list[dict]) -> None:
    with app.app_context():
        queue = recorder.pending()
        for row in rows:
            queue.add(row, urgent=False)
        recorder.write_pending(queue)
        db.session.remove()


def test_a_batch_is_stored_exactly_in_order(make_app):
    """Every column of every row comes back as it was queued: text with quotes, backslashes and
    characters outside ASCII, NULLs, fractions of a millisecond, microseconds of the timestamp."""
    app = make_app(SCIM_LOG_FLUSH_SECONDS=60.0, SCIM_LOG_BATCH=1000)
    issue_token(app, "Okta")
    with app.app_context():
        token_id = ScimToken.query.one().id
    base = datetime(2026, 12, 7, 13, 5, 9, 123456)
    rows = [
        _row(base, 0, token_id=token_id, token_name='Okta "prod" \\ Zoë', method="POST", status=201, duration_ms=0.125,
             request_body='{"userName":"zoë@example.com","note":"tab\\there 🙂"}', response_body="x" * 4000),
        _row(base.replace(microsecond=0), 1, status=404, error="No user with id 1 — gone."),
        _row(base + timedelta(microseconds=1), 2, path="/api/scim/v2/Users?filter=userName%20eq%20%22a%22"),
    ]
    _write(app, rows)
    with app.app_context():
        stored = ScimRequestLog.query.order_by(ScimRequestLog.id).all()
        got = [{name: getattr(row, name) for name in recorder._LOG_COLUMNS} for row in stored]
    assert got == [{name: row[name] for name in recorder._LOG_COLUMNS} for row in rows]


def test_trimming_keeps_the_newest_rows_and_deletes_only_above_its_last_cut(make_app):
    app = make_app(SCIM_LOG_FLUSH_SECONDS=60.0, SCIM_LOG_BATCH=1000)
    with app.app_context():
        settings.set("scim", "flight_recorder_size", 5)
        db.session.commit()
        deletes = []

        def seen(_conn, _cursor, statement, parameters, _context, _many):
            if statement.startswith("DELETE FROM scim_request_log"):
                deletes.append(parameters)

        event.listen(db.engine, "before_cursor_execute", seen)
    try:
        now = datetime(2026, 12, 7, 13, 0, 0)
        for batch in range(3):
            _write(app, [_row(now, batch * 20 + i) for i in range(20)])
        with app.app_context():
            paths = [row.path for row in ScimRequestLog.query.order_by(ScimRequestLog.id)]
            cut = recorder.pending().trimmed_to
        assert paths == [f"/api/scim/v2/Users/{i}" for i in range(55, 60)]
        assert len(deletes) == 3
        # The first trim starts from the lowest id; each later one where the one before stopped.
        lower = [tuple(p.values())[0] if isinstance(p, dict) else p[0] for p in deletes]
        upper = [tuple(p.values())[1] if isinstance(p, dict) else p[1] for p in deletes]
        assert lower[0] == 0 and lower[1:] == upper[:-1] and cut == upper[-1]

        # The table emptied and its ids started again: the old cut must not stop trimming.
        wipe_log(app)
        _write(app, [_row(now, 100 + i) for i in range(12)])
        with app.app_context():
            paths = [row.path for row in ScimRequestLog.query.order_by(ScimRequestLog.id)]
        assert paths == [f"/api/scim/v2/Users/{i}" for i in range(107, 112)]
    finally:
        with app.app_context():
            event.remove(db.engine, "before_cursor_execute", seen)


def wipe_log(app) -> None:
    with app.app_context():
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("TRUNCATE scim_request_log RESTART IDENTITY"))
            else:
                conn.execute(text("DELETE FROM scim_request_log"))


# --- bodies in the log ----------------------------------------------------------------------------

def test_a_body_with_nothing_to_redact_is_logged_as_sent():
    sent = b'{"userName": "zo\xc3\xab@example.com",\n  "active": true}'
    assert recorder.body_for_log(sent) == sent.decode()
    assert recorder.body_for_log(b"x" * 5000) == "x" * 4000 + " [truncated]"


@pytest.mark.parametrize("raw", [
    b'{"password": "hunter2"}',
    b'{"name": {"Credential": "hunter2"}}',
    b'{"pa\\u0073sword": "hunter2"}',  # the key spelled with an escape: found once parsed
    b'{"Operations": [{"op": "replace", "value": {"pass\\u0077ord": "hunter2"}}]}',
    '{"paſſword": "hunter2"}'.encode(),  # U+017F long s: the same letter to a case-blind match
    '{"AUTHORİZATION": "hunter2"}'.encode(),  # U+0130 capital I with a dot
    '{"To\u212aen": "hunter2"}'.encode(),  # U+212A Kelvin sign, a capital K
])
def test_a_secret_is_redacted_however_its_key_is_written(raw):
    shown = recorder.body_for_log(raw)
    assert "hunter2" not in shown and "[redacted]" in shown


def test_bodies_no_column_can_store_are_logged_in_a_storable_form():
    assert "\x00" not in recorder.body_for_log(b'{"a": "\x00"}')
    assert recorder.body_for_log(b"\xff\xfe not utf-8") == "[not JSON]"
    assert recorder.body_for_log(b'{"a": "\\ud800"}') == '{"a": "\\ud800"}'  # a lone surrogate stays escaped


@pytest.mark.parametrize("text", ["plain text", "PASSWORD", "my_Token_here", "Zoë", "paſs", "tOKEN", "x" * 50,
                                  "credentıal", "Authorization: Bearer x", "sécret", "SECRET"])
def test_the_quick_word_check_agrees_with_the_key_pattern(text):
    assert recorder._may_name_a_secret(text) == (recorder.SECRET_KEYS.search(text) is not None)


# --- a row the database refuses -----------------------------------------------------------------

def test_any_http_method_is_logged_within_its_column(batched):
    """HTTP lets a client send any token as its method; PostgreSQL's varchar(8) refused a longer one."""
    app, scim = batched
    assert scim.request("LONGMETHODNAME", "Users").status_code == 405
    assert scim.request("PROPFIND", "Users").status_code == 405
    assert scim.get("Users/no-such-id").status_code == 404
    assert [(method, status) for method, _path, status in logged(app)] == [
        ("LONGMETH", 405), ("PROPFIND", 405), ("GET", 404)]


def test_a_row_the_database_refuses_is_dropped_and_the_rest_written(make_app, caplog):
    """Before, a refused batch went back to the queue and was refused again at every flush: the
    log (and the rate-limit counts written with it) stopped for good."""
    app = make_app(SCIM_LOG_FLUSH_SECONDS=60.0, SCIM_LOG_BATCH=1000)
    when = datetime(2026, 12, 7, 15, 0, 0)
    _write(app, [_row(when, 0), _row(when, 1, status=None), _row(when, 2)])  # status is NOT NULL
    assert [path for _method, path, _status in logged(app)] == ["/api/scim/v2/Users/0", "/api/scim/v2/Users/2"]
    assert "the database refused the row of GET /api/scim/v2/Users/1" in caplog.text
    with app.app_context():
        assert recorder.pending().rows == []  # nothing left to fail again
    _write(app, [_row(when, 3)])
    assert logged(app)[-1][1] == "/api/scim/v2/Users/3"


def test_rows_wait_when_the_database_cannot_be_reached(make_app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    app = make_app(SCIM_LOG_FLUSH_SECONDS=60.0, SCIM_LOG_BATCH=1000)
    when = datetime(2026, 12, 7, 15, 0, 0)

    def unreachable(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(recorder, "_write_rows", unreachable)
    with pytest.raises(OperationalError):
        _write(app, [_row(when, 0), _row(when, 1)])
    with app.app_context():
        assert [row["path"] for row in recorder.pending().rows] == ["/api/scim/v2/Users/0", "/api/scim/v2/Users/1"]
    monkeypatch.undo()
    _write(app, [])  # the next flush writes what waited
    assert [path for _method, path, _status in logged(app)] == ["/api/scim/v2/Users/0", "/api/scim/v2/Users/1"]


def test_rows_after_a_refused_one_still_wait_if_the_database_goes_away(make_app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    app = make_app(SCIM_LOG_FLUSH_SECONDS=60.0, SCIM_LOG_BATCH=1000)
    when = datetime(2026, 12, 7, 15, 0, 0)
    real = recorder._write_rows
    calls = []

    def flaky(queue, rows, counts):
        calls.append([row["path"] for row in rows])
        if len(calls) == 1:
            raise ValueError("refused")  # the batch: refused, so each row is tried alone
        if len(calls) == 3:
            raise OperationalError("INSERT", {}, Exception("connection lost"))  # the second row
        return real(queue, rows, counts)

    monkeypatch.setattr(recorder, "_write_rows", flaky)
    with pytest.raises(OperationalError):
        _write(app, [_row(when, 0), _row(when, 1), _row(when, 2)])
    with app.app_context():
        assert [row["path"] for row in recorder.pending().rows] == ["/api/scim/v2/Users/1", "/api/scim/v2/Users/2"]
    assert [path for _method, path, _status in logged(app)] == ["/api/scim/v2/Users/0"]
