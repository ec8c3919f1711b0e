"""Lobby's data model: one module per aggregate, all sharing one ``db``."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from flask import current_app, g, has_app_context, has_request_context
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import MetaData, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

# Deterministic constraint names, so migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class LobbySession(FlaskSession):
    """The session: in a request declared read-only (``reads_only``), its connection is autocommit.

    Chosen when the session first needs a connection, not when the request starts, so a
    request that never uses the session (one answered by ``models.direct``) never checks
    a connection out for it. Before the session takes a connection, the request's direct
    connection goes back to the pool: a thread never waits for a second connection while
    holding one.
    """

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        engine = super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
        if bind is None and has_app_context():
            if direct.in_transaction():
                raise RuntimeError("the session cannot take a connection inside a direct transaction")
            direct.release()
            if g.get("lobby_reads_only"):
                return _autocommit(engine)
        return engine


def _autocommit(engine):
    """A view of ``engine`` whose connections are autocommit (same pool; reset when returned)."""
    views = current_app.extensions.setdefault("lobby.autocommit_engines", {})
    view = views.get(engine)
    if view is None:
        view = views[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return view


db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING), session_options={"class_": LobbySession})


def utcnow() -> datetime:
    """Naive UTC: both databases store it the same way."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


# SQLite's lower() folds A-Z only; SQL that must lower-case any letter, as PostgreSQL's lower()
# does, calls this function instead (registered on every SQLite connection, below).
SQLITE_LOWER = "lobby_lower"


def _unicode_lower(value):
    """lower() for SQLite as PostgreSQL's: every letter, NULL stays NULL, a number becomes text."""
    return None if value is None else str(value).lower()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """WAL and foreign keys on every SQLite connection (the busy timeout is set by ``config.py``,
    ``PRAGMA synchronous`` by ``install_sqlite_synchronous`` for the app's engine).

    The driver's own transaction handling is switched off so that ``BEGIN
    IMMEDIATE`` (below) takes the write lock up front: a deferred transaction
    that reads and then writes fails at once with "database is locked" when
    another writer got there first, whatever the busy timeout.

    ``SQLITE_LOWER`` gets its own name rather than replacing lower(), so lower() keeps
    meaning the same here as in any other program that opens the file (the sqlite3
    shell, a backup's integrity check), should an index or a query ever use it.
    """
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    dbapi_connection.create_function(SQLITE_LOWER, 1, _unicode_lower, deterministic=True)
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin_immediate(conn):
    if conn.dialect.name == "sqlite" and conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def reads_only() -> None:
    """Declare, before its first query, that the current request only reads the database.

    Its statements then run without a transaction (autocommit): on PostgreSQL that saves
    the BEGIN and ROLLBACK round trips, on SQLite the write lock every transaction here
    takes up front (WAL lets readers run beside the one writer). Each statement still
    reads a consistent state; several statements may see different moments. Takes effect
    when the session first needs a connection (``LobbySession.get_bind``).
    """
    g.lobby_reads_only = True


def will_write() -> None:
    """About to write after ``reads_only``: hand back the autocommit connection, so that the
    next statement runs in a transaction (on SQLite, one that holds the write lock)."""
    if has_request_context() and g.pop("lobby_reads_only", False):
        db.session.commit()


def insert_new(*objects) -> None:
    """INSERT new model objects (not added to the session) with Core statements, in the session's
    transaction: one statement per table (an executemany for several rows of one table).

    For a create that knows exactly what it writes: the ORM's unit of work cost about twice the
    INSERTs themselves on a small flush (docs/performance.md). The model's own logic still
    applies, since the objects were built through it (validators ran on assignment); column
    defaults are evaluated here and written back onto the objects, so the caller can render
    them. Values computed at flush time by session events (``users.search_text``) are the
    caller's to set. Autoincremented keys are not read back. ``direct.insert`` does the same
    on the driver, inside ``direct.transaction()``.
    """
    batches: dict[tuple, list[dict]] = {}
    for table, values in new_rows(objects):
        batches.setdefault((table, tuple(values)), []).append(values)
    connection = db.session.connection()
    for (table, _keys), rows in batches.items():
        connection.execute(table.insert(), rows if len(rows) > 1 else rows[0])


def write_new(*objects) -> None:
    """INSERT new model objects and commit: on the driver (``direct``) when the session holds
    no connection, which is the case for a SCIM create; otherwise in the session's transaction.
    A constraint violation raises ``IntegrityError`` with nothing written."""
    if direct.session_free():
        if db.engine.dialect.name == "postgresql":
            direct.insert_at_once(*objects)
            return
        rows = direct.staged(*objects)  # the values made ready before SQLite's write lock is taken
        with direct.transaction():
            direct.run_staged(rows)
        return
    insert_new(*objects)
    db.session.commit()


def new_rows(objects) -> list[tuple]:
    """(table, column values) for each new object, its column defaults evaluated and set on it."""
    rows = []
    for obj in objects:
        table, state = obj.__table__, inspect(obj)
        if state.session is not None or state.key is not None:
            raise ValueError(f"{obj!r} is not a new object outside the session")
        values = {}
        given = state.dict
        for key, kind, default in _column_plan(table):
            if key in given:
                values[key] = given[key]
            elif kind is not None:
                value = default if kind == "scalar" else default(None)
                setattr(obj, key, value)
                values[key] = value
        rows.append((table, values))
    return rows


_PLANS: dict = {}


def _column_plan(table) -> tuple:
    """Each column's key and its Python-side default as (key, "scalar" or "callable" or None, value
    or function), read from the table once (walking the column objects cost as much as the rest
    of new_rows)."""
    plan = _PLANS.get(table)
    if plan is None:
        steps = []
        for column in table.columns:
            default = column.default
            if default is not None and default.is_scalar:
                steps.append((column.key, "scalar", default.arg))
            elif default is not None and default.is_callable:
                steps.append((column.key, "callable", default.arg))
            else:
                steps.append((column.key, None, None))
        plan = _PLANS[table] = tuple(steps)
    return plan


def install_sqlite_synchronous(engine, level: str) -> None:
    """Set ``PRAGMA synchronous`` (``SQLITE_SYNCHRONOUS``: FULL or NORMAL) on each new connection of
    this SQLite engine. Other engines keep SQLite's own default, FULL."""
    if engine.dialect.name != "sqlite":
        return
    if level not in ("FULL", "NORMAL"):  # checked by config.py; never put anything else into the SQL
        raise ValueError(f"SQLITE_SYNCHRONOUS must be FULL or NORMAL, got {level!r}")

    @event.listens_for(engine, "connect")
    def _synchronous(dbapi_connection, record):
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA synchronous={level}")
        cursor.close()


IDLE_PING_SECONDS = 5.0


def install_idle_ping(engine) -> None:
    """Check a pooled connection that sat idle for a while before handing it out.

    A server restart or a network timeout kills idle connections; this finds them
    before a request does. A connection in steady use is not pinged (SQLAlchemy's
    ``pool_pre_ping`` costs a round trip on every checkout); if its server goes away
    mid-use, the failing request answers 503 and the pool drops every connection of it.
    """
    @event.listens_for(engine, "checkin")
    def _idle_since(dbapi_connection, record):
        record.info["lobby_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, proxy):
        since = record.info.get("lobby_idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"idle connection is gone: {type(error).__name__}") from error
        if not alive:
            raise DisconnectionError("idle connection is gone")


from .user import User, UserEmail  # noqa: E402
from .group import Group, Membership  # noqa: E402
from .identity import Identity  # noqa: E402
from .setting import Setting, settings  # noqa: E402
from .scim_token import ScimToken  # noqa: E402
from .audit import AuditEvent, record_event  # noqa: E402
from .saml_state import SamlOutstandingRequest, SamlPendingSignIn, SamlSeenAssertion  # noqa: E402
from .throttle import LoginFailure  # noqa: E402
from .session_end import EndedSession  # noqa: E402
from .flight import SamlResponseLog, ScimRequestLog  # noqa: E402
from . import direct  # noqa: E402  (uses db)

__all__ = [
    "db", "utcnow", "new_id", "reads_only", "will_write", "install_idle_ping", "install_sqlite_synchronous",
    "insert_new", "write_new",
    "SQLITE_LOWER",
    "User", "UserEmail", "Group", "Membership", "Identity", "Setting", "settings",
    "ScimToken", "AuditEvent", "record_event", "SamlOutstandingRequest", "SamlPendingSignIn", "SamlSeenAssertion",
    "LoginFailure", "EndedSession", "SamlResponseLog", "ScimRequestLog",
]
