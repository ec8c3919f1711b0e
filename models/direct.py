"""The hottest reads, run straight on the database driver.

A statement run through SQLAlchemy costs about 0.1 ms of Python on top of the driver's
own work (session, Connection, execution context, Result), and a request's first one
pays about as much again to set up the session's connection; the same SELECT on the
driver's cursor costs about half. For the few fixed statements that run on nearly every
SCIM request (the token check, the ``userName eq`` lookup IdPs make before each push)
that overhead was about a third of the request (docs/performance.md). Statements are still
built with SQLAlchemy Core and compiled by it, once per dialect; only their execution
skips it. Errors come out as SQLAlchemy's own exception classes, so the 503 handlers
treat them as they treat every other database error.

Each request that uses this checks out one pooled connection in autocommit mode (a
read sees committed data only, and never waits for SQLite's write lock) and hands it
back when the request ends or when the session first needs a connection
(``LobbySession.get_bind``), whichever comes first; while the session holds one, a
statement here runs on the session's connection instead. So a thread never holds two.
"""
from __future__ import annotations

from collections import namedtuple

from flask import g
from sqlalchemy.exc import DBAPIError

from . import db

_SLOT = "lobby_direct_connection"


class Statement:
    """A Core SELECT whose execution bypasses SQLAlchemy's per-call machinery.

    Parameters are plain values (strings, numbers); literal values written into the
    statement are taken from its compiled form. Rows are named tuples whose values are
    what SQLAlchemy would have produced (SQLite's datetimes, booleans and JSON decoded).
    """

    def __init__(self, select):
        self.select = select
        self.names = [column.key for column in select.selected_columns]
        self.row = namedtuple("Row", self.names, rename=True)
        self._compiled: dict[str, tuple] = {}

    def _for(self, dialect) -> tuple:
        ready = self._compiled.get(dialect.name)
        if ready is None:
            compiled = self.select.compile(dialect=dialect)
            binders = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                       for name, bind in compiled.binds.items()}
            converters = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                          for column in self.select.selected_columns]
            # psycopg: a server-side prepared statement from the first call (these run constantly);
            # sqlite3 keeps its own cache of compiled statements.
            options = {"prepare": True} if dialect.driver == "psycopg" else {}
            ready = (compiled.string, compiled.positiontup if dialect.positional else None,
                     dict(compiled.params), {k: f for k, f in binders.items() if f is not None},
                     converters if any(converters) else None, options)
            self._compiled[dialect.name] = ready
        return ready

    def all(self, **params) -> list:
        if _session_holds_connection():
            # Never a second connection while the session holds one: run it on the session's.
            return [self.row._make(row) for row in db.session.connection().execute(self.select, params)]
        dialect = db.engine.dialect
        sql, order, defaults, binders, converters, options = self._for(dialect)
        values = dict(defaults, **params)
        for name, convert in binders.items():
            values[name] = convert(values[name])
        arguments = tuple(values[name] for name in order) if order is not None else values
        rows = _execute(dialect, sql, arguments, options)
        make = self.row._make
        if converters is None:
            return [make(row) for row in rows]
        return [make([value if convert is None else convert(value) for convert, value in zip(converters, row)])
                for row in rows]

    def first(self, **params):
        rows = self.all(**params)
        return rows[0] if rows else None


def _session_holds_connection() -> bool:
    return db.session.registry.has() and db.session().in_transaction()


def connection():
    """This request's pooled connection for direct reads, in autocommit mode."""
    pooled = g.get(_SLOT)
    if pooled is None:
        pooled = db.engine.raw_connection()
        driver = pooled.driver_connection
        if db.engine.dialect.name == "postgresql":
            driver.autocommit = True
        else:  # SQLite: no implicit BEGIN (each statement is its own transaction)
            driver.isolation_level = None
        setattr(g, _SLOT, pooled)
    return pooled


def release(_error=None) -> None:
    """Hand the request's connection back to the pool (a teardown handler)."""
    pooled = g.pop(_SLOT, None)
    if pooled is None:
        return
    try:
        if db.engine.dialect.name == "postgresql" and pooled.dbapi_connection is not None:
            pooled.driver_connection.autocommit = False  # how the pool hands connections out
    finally:
        pooled.close()


def _execute(dialect, sql: str, arguments, options: dict) -> list:
    pooled = connection()
    cursor = pooled.cursor()
    try:
        cursor.execute(sql, arguments, **options)
        return cursor.fetchall()
    except dialect.loaded_dbapi.Error as error:
        gone = dialect.is_disconnect(error, pooled.dbapi_connection, cursor)
        if gone:
            # As SQLAlchemy does on a lost connection: drop it and every connection pooled
            # with it (they went to the same server), so the next request reconnects.
            g.pop(_SLOT, None)
            db.engine.pool._invalidate(pooled, error)
        raise DBAPIError.instance(sql, arguments, error, dialect.loaded_dbapi.Error,
                                  connection_invalidated=gone, dialect=dialect) from error
    finally:
        try:
            cursor.close()
        except dialect.loaded_dbapi.Error:
            pass


def init_app(app) -> None:
    app.teardown_appcontext(release)
