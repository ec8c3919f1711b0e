"""models.direct: hot reads on the driver give what SQLAlchemy gives, on one connection per thread,
and fail the way SQLAlchemy's errors fail (a 503, the dead connection dropped)."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Integer, bindparam, create_engine, event, select, text
from sqlalchemy.exc import DBAPIError

from models import Group, Membership, User, db, direct, new_id, reads_only

from .scim.conftest import ScimClient, issue_token

USERS = User.__table__.c


def _statement():
    return direct.Statement(
        select(USERS.id, USERS.user_name, USERS.extra, USERS.active, USERS.created_at, USERS.version,
               USERS.manager_id)
        .where(USERS.user_name_key == bindparam("key")))


@pytest.fixture
def stored(app):
    user_id = new_id()
    with app.app_context():
        db.session.add(User(id=user_id, user_name="Ada@Example.com", source="scim", active=False, version=7,
                            extra={"phoneNumbers": [{"value": "+44 1", "primary": True}], "locale": "en-GB"},
                            created_at=datetime(2026, 1, 2, 3, 4, 5, 678901)))
        db.session.commit()
        db.session.remove()
    return user_id


def test_rows_hold_what_sqlalchemy_would_return(app, stored):
    statement = _statement()
    with app.test_request_context():
        expected = db.session.connection().execute(statement.select, {"key": "ada@example.com"}).one()
        db.session.remove()
        row = statement.first(key="ada@example.com")
    assert tuple(row) == tuple(expected)
    # Values, not the driver's storage: SQLite keeps these as text and integers.
    assert row.extra == {"phoneNumbers": [{"value": "+44 1", "primary": True}], "locale": "en-GB"}
    assert row.active is False and row.version == 7 and row.manager_id is None
    assert row.created_at == datetime(2026, 1, 2, 3, 4, 5, 678901)
    with app.test_request_context():
        assert statement.first(key="nobody@example.com") is None
        assert statement.all(key="ada@example.com") == [row]


def test_literal_values_written_into_the_statement_are_sent(app, stored):
    with app.app_context():
        group_id = new_id()
        db.session.add(Group(id=group_id, display_name="Staff", source="scim"))
        db.session.flush()
        db.session.add(Membership(group_id=group_id, user_id=stored))
        db.session.commit()
        db.session.remove()
    groups = Group.__table__.c
    only_scim = direct.Statement(select(groups.display_name).where(groups.source == "scim"))
    only_local = direct.Statement(select(groups.display_name).where(groups.source == "local"))
    with app.test_request_context():
        assert [r.display_name for r in only_scim.all()] == ["Staff"]
        assert only_local.all() == []


def _count_checkouts(engine):
    seen = []
    event.listen(engine, "checkout", lambda *args: seen.append(1))
    return seen


def test_a_userName_lookup_checks_out_one_connection_and_never_the_sessions(app, stored):
    token = issue_token(app)
    scim = ScimClient(app.test_client(), token)
    with app.app_context():
        checkouts = _count_checkouts(db.engine)
    response = scim.get('Users?filter=userName eq "ada@example.com"')
    assert response.status_code == 200 and response.get_json()["totalResults"] == 1
    # Token check and lookup share one pooled connection (the log row is written at once
    # in tests, SCIM_LOG_FLUSH_SECONDS=0, through the session: a second checkout).
    assert len(checkouts) == 2
    checkouts.clear()
    assert scim.get("Users?count=5").status_code == 200  # the general path uses the session
    assert len(checkouts) == 3


def test_with_the_session_holding_a_connection_a_statement_runs_on_it(app, stored):
    statement = _statement()
    with app.test_request_context():
        db.session.execute(text("SELECT 1"))
        before = db.engine.pool.checkedout()
        row = statement.first(key="ada@example.com")
        assert row.user_name == "Ada@Example.com"
        assert db.engine.pool.checkedout() == before  # no second connection for this thread
        db.session.remove()


def test_the_session_takes_its_connection_only_after_the_direct_one_is_returned(app, stored):
    statement = _statement()
    with app.test_request_context():
        statement.first(key="ada@example.com")
        assert db.engine.pool.checkedout() == 1
        db.session.execute(select(User.id)).all()
        assert db.engine.pool.checkedout() == 1  # the direct one went back first
        db.session.remove()
        assert db.engine.pool.checkedout() == 0


def test_a_read_only_request_gets_an_autocommit_session_connection_when_it_first_needs_one(app, stored, backend):
    with app.test_request_context():
        reads_only()
        connection = db.session.connection()
        assert connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        db.session.remove()
    with app.test_request_context():
        connection = db.session.connection()
        assert connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT"
        if backend == "postgresql":  # the pooled connection came back out of autocommit
            assert connection.connection.driver_connection.autocommit is False
        db.session.remove()


def test_a_connection_killed_under_a_request_gives_a_503_and_the_pool_reconnects(make_app, backend):
    if backend != "postgresql":
        pytest.skip("a server-side disconnect is PostgreSQL's; SQLite has no server")
    app = make_app(fresh=True)
    scim = ScimClient(app.test_client(), issue_token(app))
    with app.test_request_context():
        # Two pooled connections, both just used (no idle ping will look at them), both killed,
        # as when the database restarts.
        pooled = [db.engine.raw_connection() for _ in range(2)]
        killed = {connection.driver_connection.info.backend_pid for connection in pooled}
        for connection in pooled:
            connection.close()
        killer = create_engine(db.engine.url, isolation_level="AUTOCOMMIT")
        with killer.connect() as conn:
            for pid in killed:
                assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        killer.dispose()
    response = scim.get('Users?filter=userName eq "ada@example.com"')
    assert response.status_code == 503
    assert "cannot reach its database" in response.get_json()["detail"]
    # The dead connections are dropped (the next request reconnects), none handed out again.
    assert scim.get('Users?filter=userName eq "ada@example.com"').status_code == 200
    with app.test_request_context():
        alive = {row.pid for row in direct.Statement(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()").columns(pid=Integer)).all()}
    assert not killed & alive


def test_driver_errors_come_out_as_sqlalchemy_errors(app):
    broken = direct.Statement(text("SELECT no_such_column FROM users").columns(no_such_column=Integer))
    with app.test_request_context():
        with pytest.raises(DBAPIError):
            broken.all()


LOOKUP = 'Users?filter=userName eq "ada@example.com"'


def test_a_userName_lookup_is_one_statement_with_the_token_check(app, stored, monkeypatch):
    scim = ScimClient(app.test_client(), issue_token(app))
    sent = []
    run = direct._execute
    monkeypatch.setattr(direct, "_execute", lambda *args: sent.append(args[1]) or run(*args))
    body = scim.get(LOOKUP).get_json()
    assert body["totalResults"] == 1 and body["Resources"][0]["userName"] == "Ada@Example.com"
    assert len(sent) == 1 and "scim_tokens" in sent[0] and "user_name_key" in sent[0]
    sent.clear()
    assert scim.get('Users?filter=userName eq "nobody@example.com"').get_json()["totalResults"] == 0
    assert len(sent) == 1


def test_a_lookup_riding_on_the_token_check_answers_nothing_to_a_refused_request(make_app, stored):
    from models import ScimToken, settings
    app = make_app(SCIM_RATE_LIMIT_PER_MINUTE=2)
    token = issue_token(app)
    scim = ScimClient(app.test_client(), token)
    wrong = ScimClient(app.test_client(), token[:-2] + ("aa" if not token.endswith("aa") else "bb"))
    assert wrong.get(LOOKUP).status_code == 401
    assert scim.get(LOOKUP).status_code == 200
    assert scim.get(LOOKUP).status_code == 200
    limited = scim.get(LOOKUP)
    assert limited.status_code == 429 and "Ada" not in limited.get_data(as_text=True)
    with app.app_context():
        settings.set("scim", "enabled", False)
        db.session.commit()
    second = ScimClient(app.test_client(), issue_token(app, "Second"))
    switched_off = second.get(LOOKUP)
    assert switched_off.status_code == 403 and "Ada" not in switched_off.get_data(as_text=True)
    with app.app_context():
        settings.set("scim", "enabled", True)
        db.session.commit()
    assert second.get(LOOKUP).status_code == 200
    with app.app_context():
        ScimToken.query.filter_by(name="Second").one().revoked_at = datetime(2026, 1, 1)
        db.session.commit()
    revoked = second.get(LOOKUP)
    assert revoked.status_code == 401 and "Ada" not in revoked.get_data(as_text=True)
