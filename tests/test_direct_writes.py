"""models.direct writes: a transaction on the driver commits all of its rows or none, refuses the
session inside it, and takes SQLite's write lock up front as the session's transactions do."""
from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.exc import IntegrityError

from models import AuditEvent, LobbySession, User, UserEmail, db, direct, new_id, write_new
from models.audit import new_event

from .scim.conftest import ScimClient, issue_token

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _user(name: str, *emails: str) -> User:
    user = User(id=new_id(), user_name=name, source="scim", extra={})
    user.emails = [UserEmail(value=value, type="work", primary=index == 0, position=index)
                   for index, value in enumerate(emails)]
    for email in user.emails:
        email.user_id = user.id
    return user


def _count(app, model) -> int:
    with app.app_context():
        with db.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(model.__table__)).scalar()


def test_a_transaction_commits_every_row_with_what_the_columns_take(app):
    user = _user("Ada@Example.com", "ada@example.com", "lovelace@example.com")
    event = new_event("test.create", actor="test", target=user.user_name, details={"id": user.id, "n": [1, 2]})
    with app.test_request_context():
        with direct.transaction():
            direct.insert(user, *user.emails, event)
        assert not direct.in_transaction()
    assert user.version == 1 and user.active is True and user.created_at is not None  # defaults written back
    with app.app_context():
        stored = db.session.get(User, user.id)
        assert stored.user_name_key == "ada@example.com" and stored.extra == {}
        assert stored.created_at == user.created_at and stored.active is True
        assert [e.value for e in stored.emails] == ["ada@example.com", "lovelace@example.com"]
        logged = AuditEvent.query.filter_by(action="test.create").one()
        assert logged.details == {"id": user.id, "n": [1, 2]}
        db.session.remove()


def test_rows_are_invisible_to_others_until_the_commit(app):
    user = _user("pending@example.com")
    with app.app_context():
        other = create_engine(db.engine.url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with app.test_request_context():
            with direct.transaction():
                direct.insert(user)
                with other.connect() as conn:
                    assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 0
            with other.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 1
    finally:
        other.dispose()


def test_an_error_inside_rolls_every_row_back_and_the_connection_serves_again(app):
    first, second = _user("first@example.com", "first@example.com"), _user("second@example.com")
    with app.test_request_context():
        with pytest.raises(ZeroDivisionError):
            with direct.transaction():
                direct.insert(first, *first.emails)
                1 / 0
        assert not direct.in_transaction()
        with direct.transaction():
            direct.insert(second)
    assert _count(app, User) == 1 and _count(app, UserEmail) == 0
    with app.app_context():
        assert User.query.one().user_name == "second@example.com"
        db.session.remove()


def test_a_unique_clash_is_sqlalchemys_integrity_error_and_leaves_nothing(app):
    with app.test_request_context():
        write_new(_user("taken@example.com"))
    clash = _user("TAKEN@example.com", "clash@example.com")
    with app.test_request_context():
        with pytest.raises(IntegrityError):
            with direct.transaction():
                direct.insert(*clash.emails, clash)  # the e-mail row goes in before the clash
        # The request goes on: its session still works after the failed direct transaction.
        assert db.session.execute(select(func.count()).select_from(User.__table__)).scalar() == 1
        db.session.remove()
    assert _count(app, UserEmail) == 0


def test_the_session_is_refused_inside_a_direct_transaction(app):
    user = _user("inside@example.com")
    with app.test_request_context():
        with pytest.raises(RuntimeError, match="direct transaction"):
            with direct.transaction():
                direct.insert(user)
                db.session.execute(select(User.id)).all()
        db.session.remove()
        assert not direct.in_transaction()
    assert _count(app, User) == 0


def test_insert_outside_a_transaction_and_a_nested_transaction_are_refused(app):
    with app.test_request_context():
        with pytest.raises(RuntimeError, match="inside direct.transaction"):
            direct.insert(_user("loose@example.com"))
        with direct.transaction():
            with pytest.raises(RuntimeError, match="already open"):
                with direct.transaction():
                    pass
    assert _count(app, User) == 0


def test_write_new_uses_the_session_when_the_session_holds_a_connection(app):
    user = _user("through.session@example.com", "ts@example.com")
    with app.test_request_context():
        db.session.execute(select(User.id)).all()  # the session now holds a connection
        assert not direct.session_free()
        checkouts = []
        event.listen(db.engine, "checkout", lambda *args: checkouts.append(1))
        write_new(user, *user.emails)
        assert checkouts == []  # written on the session's connection, no second one taken
        db.session.remove()
    assert _count(app, User) == 1 and _count(app, UserEmail) == 1


def test_a_direct_transaction_holds_sqlites_write_lock_from_its_start(app, backend):
    if backend != "sqlite":
        pytest.skip("SQLite's write lock; PostgreSQL locks rows, not the database")
    with app.test_request_context():
        path = db.engine.url.database
        with direct.transaction():
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()


def test_a_scim_create_naming_a_manager_writes_without_the_session(app, monkeypatch):
    scim = ScimClient(app.test_client(), issue_token(app))
    boss = scim.create_user("boss@example.com")
    with app.app_context():
        db.session.get(User, boss["id"]).display_name = "The Boss"
        db.session.commit()
        db.session.remove()
    used = []
    original = LobbySession.get_bind

    def watched(self, *args, **kwargs):
        used.append(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LobbySession, "get_bind", watched)
    reply = scim.post("Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
                                "userName": "report@example.com", ENTERPRISE: {"manager": {"value": boss["id"]}}})
    assert reply.status_code == 201, reply.get_data(as_text=True)
    assert reply.get_json()[ENTERPRISE]["manager"]["value"] == boss["id"]
    monkeypatch.undo()
    # The 201 came without the session taking a connection (the request-log row is written
    # through the session, after the answer: tests write it at once, so allow that one).
    assert len(used) <= 1
    with app.app_context():
        assert User.query.filter_by(user_name="report@example.com").one().manager_display == "The Boss"
        db.session.remove()


def test_on_postgresql_a_transaction_is_pipelined_and_still_all_or_nothing(app, backend):
    if backend != "postgresql":
        pytest.skip("psycopg's pipeline mode is PostgreSQL's; SQLite runs in process")
    with app.test_request_context():
        write_new(_user("first@example.com"))
        driver = direct.connection().driver_connection
        with direct.transaction():
            assert driver.pgconn.pipeline_status != 0  # statements are sent without waiting for answers
            direct.insert(_user("second@example.com"))
        assert driver.pgconn.pipeline_status == 0
        # A failing INSERT whose answer nobody reads still fails the block, and takes the rows
        # sent before it along.
        with pytest.raises(IntegrityError):
            with direct.transaction():
                direct.insert(_user("third@example.com"))
                direct.insert(_user("FIRST@example.com"))
        assert not direct.in_transaction()
        # A read inside the block gets its rows (the pipeline syncs for it), and the connection
        # serves the next transaction normally.
        with direct.transaction():
            direct.insert(_user("fourth@example.com"))
            names = direct.Statement(select(User.__table__.c.user_name).order_by(User.__table__.c.user_name)).all()
            assert [row.user_name for row in names] == ["first@example.com", "fourth@example.com",
                                                        "second@example.com"]
    with app.app_context():
        assert sorted(u.user_name for u in User.query) == ["first@example.com", "fourth@example.com",
                                                           "second@example.com"]
        db.session.remove()


def test_write_new_makes_its_rows_ready_before_the_write_lock_is_taken(app, monkeypatch):
    """The values (defaults, bind processing) are computed outside the transaction: on SQLite
    the write lock is held only while the INSERTs run, not while Python prepares them."""
    import models
    seen = []
    real = models.new_rows

    def noting(objects):
        seen.append(direct.in_transaction())
        return real(objects)

    monkeypatch.setattr(models, "new_rows", noting)
    user = _user("staged@example.com", "staged@example.com")
    with app.test_request_context():
        write_new(user, *user.emails)
        assert not direct.in_transaction()
    assert seen == [False]
    with app.app_context():
        assert [e.value for e in db.session.get(User, user.id).emails] == ["staged@example.com"]
        db.session.remove()


def test_on_postgresql_write_new_is_one_statement_all_rows_or_none(app, backend):
    """A create's rows go in one INSERT ... WITH statement outside any transaction: committed
    when it returns, nothing of it when any row fails (here the user, after its e-mail row)."""
    if backend != "postgresql":
        pytest.skip("data-modifying WITH is PostgreSQL's; SQLite writes in a transaction")
    sent = []
    with app.test_request_context():
        driver = direct.connection().driver_connection
        real = type(driver.cursor())

        class Counting(real):
            def execute(self, query, *args, **kwargs):
                sent.append(str(query).split()[0])
                return super().execute(query, *args, **kwargs)

        driver.cursor_factory = Counting
        try:
            first = _user("first@example.com", "first@example.com", "other@example.com")
            write_new(first, *first.emails, new_event("test.create", actor="test", target="first"))
            assert sent == ["WITH"]  # no BEGIN, no COMMIT
            with app.app_context():
                other = create_engine(db.engine.url)
            try:
                with other.connect() as conn:  # committed: another connection sees every row
                    assert conn.execute(text("SELECT count(*) FROM user_emails")).scalar() == 2
            finally:
                other.dispose()
            clash = _user("FIRST@example.com", "clash@example.com")
            with pytest.raises(IntegrityError):
                write_new(*clash.emails, clash)
            # The same shape (one user, two e-mails, one event) reuses its compiled statement.
            shapes = len(direct._AT_ONCE)
            again = _user("again@example.com", "again@example.com", "more@example.com")
            write_new(again, *again.emails, new_event("test.create", actor="test", target="again"))
            assert len(direct._AT_ONCE) == shapes
        finally:
            driver.cursor_factory = real
    assert _count(app, User) == 2 and _count(app, UserEmail) == 4


def test_insert_at_once_refuses_a_transaction_and_a_row_missing_a_defaulted_column(app):
    with app.test_request_context():
        with direct.transaction():
            with pytest.raises(RuntimeError, match="its own transaction"):
                direct.insert_at_once(_user("inside@example.com"))
        # Every column with a default must be given (new_rows does): a default SQLAlchemy filled
        # in would be one parameter shared by every row of that table.
        with pytest.raises(RuntimeError, match="version"):
            direct._at_once([(User.__table__, ["id", "user_name", "user_name_key", "extra", "active", "is_admin",
                                               "source", "created_at", "updated_at", "session_epoch",
                                               "search_text"])])
