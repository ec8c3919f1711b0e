"""SCIM bearer tokens: compared in constant time, stored only as a hash, never written anywhere.

The token is a long-lived credential for the whole directory; a copy in a log row, an audit
event, the app log, an error message or a SQL parameter is a copy someone can read later.
"""
from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from sqlalchemy import event

from models import AuditEvent, ScimRequestLog, ScimToken, db

from ..scim.conftest import BASE, USER_SCHEMA, ScimClient, issue_token


def _row_text(row) -> str:
    return " ".join(repr(getattr(row, column.key)) for column in row.__table__.columns)


@pytest.fixture
def sql_seen(app, monkeypatch):
    """Every SQL statement and its parameters, as the database receives them: through
    SQLAlchemy, and through models.direct (which runs on the driver, past SQLAlchemy's events)."""
    from models import direct
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    def remember(conn, cursor, statement, parameters, context, executemany):
        seen.append(f"{statement} {parameters!r}")

    run_direct = direct._execute

    def remember_direct(dialect, sql, arguments, options, **how):
        seen.append(f"{sql} {arguments!r}")
        return run_direct(dialect, sql, arguments, options, **how)

    monkeypatch.setattr(direct, "_execute", remember_direct)
    event.listen(engine, "before_cursor_execute", remember)
    yield seen
    event.remove(engine, "before_cursor_execute", remember)


@pytest.fixture
def everything_logged(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def _scim_traffic(app, client, token: str) -> list:
    """A provisioning session's worth of calls, each with ``token`` presented a different way."""
    valid = ScimClient(client, token)
    replies = [
        valid.get("Users"),
        valid.post("Users", {"schemas": [USER_SCHEMA], "userName": "tok.test@example.com", "active": True}),
        valid.get("Users?filter=" + 'userName eq "tok.test@example.com"'),
        valid.get("Users/not-a-user"),  # an error answer too
        client.get(f"{BASE}/Users", headers={"Authorization": token}),  # the "Bearer " prefix forgotten
        client.get(f"{BASE}/Users", headers={"Authorization": f"Basic {token}"}),
        client.get(f"{BASE}/Users", headers={"Authorization": f"Bearer  {token}  "}),  # sloppy spacing: accepted
    ]
    wrong = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")  # one near miss
    replies += [
        ScimClient(client, wrong).get("Users"),
        ScimClient(client, wrong).post("Users", {"schemas": [USER_SCHEMA], "userName": "x@example.com"}),
        ScimClient(client, "lobby_scim_" + "x" * 43).get("Groups"),
    ]
    return replies, wrong


def test_tokens_never_reach_logs_rows_or_answers(app, client, admin, everything_logged, sql_seen):
    token = issue_token(app)
    app.logger.info("capture canary")  # proves the app log is captured here at all
    replies, wrong = _scim_traffic(app, client, token)
    statuses = [reply.status_code for reply in replies]
    assert statuses == [200, 201, 200, 404, 401, 401, 200, 401, 401, 401], statuses
    secrets = {"the valid token": token, "a near-miss token": wrong}
    with app.app_context():
        logged = ScimRequestLog.query.all()
        assert len(logged) == len(replies)  # every call was recorded ...
        audit = AuditEvent.query.all()
        assert any(e.action.startswith("scim.") for e in audit)  # ... and the SCIM writes audited
        stored = ScimToken.query.one()
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
        places = {
            "scim request log": [_row_text(row) for row in logged],
            "audit log": [_row_text(row) for row in audit],
            "token table": [_row_text(stored)],
            "app log": [record.getMessage() + " " + repr(record.args) for record in everything_logged.records],
            "answers": [reply.get_data(as_text=True) + repr(dict(reply.headers)) for reply in replies],
            "SQL sent to the database": sql_seen,
        }
    assert any("capture canary" in text for text in places["app log"]) and places["SQL sent to the database"]
    for what, secret in secrets.items():
        for place, texts in places.items():
            leaks = [text for text in texts if secret in text]
            assert not leaks, f"{what} appears in the {place}: {leaks[0][:300]}"
    # The lookup is by hash: the database only ever compares SHA-256 digests.
    assert any(hashlib.sha256(token.encode()).hexdigest() in sql for sql in sql_seen)
    assert any(hashlib.sha256(wrong.encode()).hexdigest() in sql for sql in sql_seen)


def test_token_in_the_query_string_is_not_logged(app, client, admin):
    """A client that puts the token in the URL is refused, and the URL it used is logged without it."""
    token = issue_token(app)
    reply = client.get(f"{BASE}/Users?access_token={token}&count=1")
    assert reply.status_code == 401
    with app.app_context():
        row = ScimRequestLog.query.one()
        assert token not in _row_text(row), row.path


def test_token_comparison_is_constant_time(app, client, admin, monkeypatch):
    """The presented token is hashed and compared with hmac.compare_digest, not ==."""
    from blueprints.scim import recorder
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(recorder.hmac, "compare_digest", spy)
    token = issue_token(app)
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert ScimClient(client, token).get("Users").status_code == 200
    assert (digest, digest) in calls
    calls.clear()
    # A token that differs only in its last character is refused after the same comparison.
    near = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert ScimClient(client, near).get("Users").status_code == 401
    assert all(token not in (a, b) and near not in (a, b) for a, b in calls)


def test_a_revoked_token_is_refused_even_though_its_hash_matches(app, client, admin):
    token = issue_token(app)
    with app.app_context():
        from models import utcnow
        ScimToken.query.one().revoked_at = utcnow()
        db.session.commit()
    reply = ScimClient(client, token).get("Users")
    assert reply.status_code == 401 and token not in reply.get_data(as_text=True)
