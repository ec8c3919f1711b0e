"""The hottest statements, run straight on the database driver.

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

Writes: ``transaction()`` opens a transaction on that connection (``BEGIN IMMEDIATE`` on
SQLite, as the session's transactions do) and ``insert()`` writes new model objects in it
(a user created over SCIM: an IdP's initial push is thousands of them; ``staged()`` computes
their values before the transaction opens). On PostgreSQL, ``insert_at_once()`` writes new
objects as one statement instead, needing no transaction; a fixed UPDATE or
DELETE runs with ``Statement.run``, a batch of rows with ``run_many`` (one executemany). A
statement over a list of ids binds the list as one parameter (``in_list``, ``id_list``), so
it compiles once for any length; ``PerDialect`` holds such statements, whose SQL differs
between the databases. The session must not be used inside such a transaction;
``LobbySession.get_bind`` refuses.
"""
from __future__ import annotations

import json
from collections import namedtuple
from contextlib import contextmanager, nullcontext

from flask import g
from sqlalchemy import String, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from . import db

_SLOT = "lobby_direct_connection"
_IN_TRANSACTION = "lobby_direct_transaction"


class Statement:
    """A Core statement whose execution bypasses SQLAlchemy's per-call machinery.

    Parameters are plain values (strings, numbers, or what the columns' types take: a
    datetime, a dict for JSON); literal values written into the statement are taken from
    its compiled form. Rows are named tuples whose values are what SQLAlchemy would have
    produced (SQLite's datetimes, booleans and JSON decoded). An INSERT is compiled for the
    ``column_keys`` it is given; it, an UPDATE or a DELETE runs with ``run`` or ``run_many`` (no rows).
    """

    def __init__(self, select, column_keys=None):
        self.select = select
        self.column_keys = list(column_keys) if column_keys is not None else None
        # An INSERT, UPDATE or DELETE (without RETURNING) selects nothing.
        selected = (getattr(select, "selected_columns", None) or []) if self.column_keys is None else []
        self.selected = list(selected)
        self.names = [column.key for column in self.selected]
        self.row = namedtuple("Row", self.names, rename=True) if self.names else None
        self._compiled: dict[str, tuple] = {}

    def _for(self, dialect) -> tuple:
        ready = self._compiled.get(dialect.name)
        if ready is None:
            compiled = self.select.compile(dialect=dialect, column_keys=self.column_keys)
            binders = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                       for name, bind in compiled.binds.items()}
            converters = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                          for column in self.selected]
            # psycopg: a server-side prepared statement from the first call (these run constantly);
            # sqlite3 keeps its own cache of compiled statements.
            options = {"prepare": True} if dialect.driver == "psycopg" else {}
            ready = (compiled.string, compiled.positiontup if dialect.positional else None,
                     dict(compiled.params), {k: f for k, f in binders.items() if f is not None},
                     converters if any(converters) else None, options)
            self._compiled[dialect.name] = ready
        return ready

    def _arguments(self, dialect, params: dict) -> tuple:
        sql, order, defaults, binders, converters, options = self._for(dialect)
        values = dict(defaults, **params)
        for name, convert in binders.items():
            values[name] = convert(values[name])
        return sql, (tuple(values[name] for name in order) if order is not None else values), converters, options

    def run(self, **params) -> None:
        """Execute a statement that returns no rows (an INSERT) on this request's connection."""
        if _session_holds_connection():
            db.session.connection().execute(self.select, params)
            return
        dialect = db.engine.dialect
        sql, arguments, _converters, options = self._arguments(dialect, params)
        _execute(dialect, sql, arguments, options, fetch=False)

    def run_many(self, rows: list[dict]) -> None:
        """Execute a statement that returns no rows once per parameter set, as one executemany."""
        if not rows:
            return
        if _session_holds_connection():
            db.session.connection().execute(self.select, rows)
            return
        dialect = db.engine.dialect
        prepared = [self._arguments(dialect, params) for params in rows]
        _execute(dialect, prepared[0][0], [arguments for _sql, arguments, _c, _o in prepared], {},
                 fetch=False, many=True)

    def all(self, **params) -> list:
        if _session_holds_connection():
            # Never a second connection while the session holds one: run it on the session's.
            return [self.row._make(row) for row in db.session.connection().execute(self.select, params)]
        dialect = db.engine.dialect
        sql, arguments, converters, options = self._arguments(dialect, params)
        rows = _execute(dialect, sql, arguments, options)
        make = self.row._make
        if converters is None:
            return [make(row) for row in rows]
        return [make([value if convert is None else convert(value) for convert, value in zip(converters, row)])
                for row in rows]

    def first(self, **params):
        rows = self.all(**params)
        return rows[0] if rows else None


class PerDialect:
    """A statement whose SQL differs by database: ``build(dialect_name)`` makes its Core form,
    once per dialect; it runs as a ``Statement`` does."""

    def __init__(self, build, column_keys=None):
        self.build, self.column_keys = build, column_keys
        self._statements: dict[str, Statement] = {}

    def statement(self) -> Statement:
        name = db.engine.dialect.name
        statement = self._statements.get(name)
        if statement is None:
            statement = self._statements[name] = Statement(self.build(name), self.column_keys)
        return statement

    def run(self, **params) -> None:
        self.statement().run(**params)

    def run_many(self, rows: list[dict]) -> None:
        self.statement().run_many(rows)

    def all(self, **params) -> list:
        return self.statement().all(**params)

    def first(self, **params):
        return self.statement().first(**params)


def in_list(column, name: str, dialect: str):
    """``column IN (...)`` over a list bound as ONE parameter (pass it through ``id_list``), so a
    statement compiles once for any number of values: ``= ANY(array)`` on PostgreSQL, the
    elements of a JSON array on SQLite."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(String)))
    return column.in_(select(literal_column("value")).select_from(func.json_each(bindparam(name, type_=String))))


def id_list(values) -> object:
    """The parameter value for an ``in_list`` condition."""
    return list(values) if db.engine.dialect.name == "postgresql" else json.dumps(list(values))


_INSERTS: dict[tuple, Statement] = {}


def insert(*objects) -> None:
    """INSERT new model objects (not added to the session), one statement per row, inside
    ``transaction()``: the direct counterpart of ``models.insert_new`` (whose docstring says
    what is and is not applied: validators yes, column defaults yes, flush-time events no)."""
    if not g.get(_IN_TRANSACTION):
        raise RuntimeError("direct.insert runs inside direct.transaction()")
    run_staged(staged(*objects))


def staged(*objects) -> list[tuple]:
    """The INSERTs of new model objects, their values computed and bound, ready for ``run_staged``.

    Staged before ``transaction()`` opens, the Python work is done before the write lock is
    taken: on SQLite every other writer waits while a transaction is open (and a waiter that
    finds the lock taken sleeps at least a millisecond), so the lock is held only while the
    statements themselves run."""
    from . import new_rows
    dialect = db.engine.dialect
    ready = []
    for table, values in new_rows(objects):
        key = (table.name, tuple(values))
        statement = _INSERTS.get(key)
        if statement is None:
            if len(_INSERTS) > 256:  # the column sets a create writes are few; never grow unbounded
                _INSERTS.clear()
            statement = _INSERTS[key] = Statement(table.insert(), column_keys=values)
        sql, arguments, _converters, options = statement._arguments(dialect, values)
        ready.append((sql, arguments, options))
    return ready


_AT_ONCE: dict[tuple, Statement] = {}


def insert_at_once(*objects) -> None:
    """PostgreSQL: INSERT new model objects in ONE statement, one data-modifying ``WITH`` part per
    row, outside any transaction. A single statement is atomic (all rows or none; foreign keys
    between its rows are checked when it ends) and, committed on its own, as durable as a
    transaction's COMMIT, so a create needs no BEGIN and COMMIT: one message to the server
    instead of five in a pipeline, which cost the driver about three times the Python time.
    Values are computed as for ``insert``; the statement is compiled once per shape (which
    tables, which columns, how many rows)."""
    if g.get(_IN_TRANSACTION):
        raise RuntimeError("insert_at_once is its own transaction; it cannot run inside one")
    from . import new_rows
    rows = new_rows(objects)
    shape = tuple((table.name, tuple(values)) for table, values in rows)
    statement = _AT_ONCE.get(shape)
    if statement is None:
        if len(_AT_ONCE) > 256:  # creates come in few shapes; never grow unbounded
            _AT_ONCE.clear()
        statement = _AT_ONCE[shape] = _at_once([(table, list(values)) for table, values in rows])
    statement.run(**{f"r{index}_{key}": value for index, (_table, values) in enumerate(rows)
                     for key, value in values.items()})


def _at_once(rows: list[tuple]) -> Statement:
    parts, names = [], set()
    for index, (table, keys) in enumerate(rows):
        values = {key: bindparam(f"r{index}_{key}", type_=table.c[key].type) for key in keys}
        names.update(values[key].key for key in keys)
        parts.append(table.insert().values(values).cte(f"row{index}"))
    statement = Statement(select(literal_column("1")).add_cte(*parts))
    _sql, _order, parameters, *_rest = statement._for(db.engine.dialect)  # compiled here, once
    stray = sorted(set(parameters) - names)
    if stray:  # a column default SQLAlchemy added itself: its parameter would be shared by the rows
        raise RuntimeError(f"insert_at_once needs every column's value given; missing for {stray}")
    return statement


def run_staged(ready: list[tuple]) -> None:
    """Run INSERTs made by ``staged``, inside ``transaction()``."""
    if not g.get(_IN_TRANSACTION):
        raise RuntimeError("direct inserts run inside direct.transaction()")
    dialect = db.engine.dialect
    for sql, arguments, options in ready:
        _execute(dialect, sql, arguments, options, fetch=False)


@contextmanager
def transaction():
    """A transaction on this request's direct connection: committed when the block ends,
    rolled back if it raises. On SQLite it takes the write lock up front (``BEGIN IMMEDIATE``,
    waiting up to the busy timeout), as the session's transactions do. On PostgreSQL its
    statements go out in psycopg's pipeline mode: sent without waiting for each answer, the
    answers read when a statement's rows are needed and at the end, so a create's BEGIN,
    INSERTs and COMMIT cost one round trip instead of five. An error of any statement is
    raised by the end of the block at the latest, as SQLAlchemy's exception class."""
    if g.get(_IN_TRANSACTION):
        raise RuntimeError("a direct transaction is already open")
    if _session_holds_connection():
        raise RuntimeError("the session holds a connection: write through it, not directly")
    dialect = db.engine.dialect
    pooled = connection()
    batched = pooled.driver_connection.pipeline() if dialect.name == "postgresql" else nullcontext()
    setattr(g, _IN_TRANSACTION, True)
    try:
        with _raised_as_sqlalchemy(dialect, pooled), batched:
            _execute(dialect, "BEGIN IMMEDIATE" if dialect.name == "sqlite" else "BEGIN", (), {}, fetch=False)
            yield
            _execute(dialect, "COMMIT", (), {}, fetch=False)
    except BaseException:
        g.pop(_IN_TRANSACTION, None)
        if g.get(_SLOT) is pooled:  # still ours (a lost connection was dropped from the pool)
            try:
                _execute(dialect, "ROLLBACK", (), {}, fetch=False)
            except DBAPIError:
                pass  # the rollback's own failure must not hide the error that caused it
        raise
    g.pop(_IN_TRANSACTION, None)


@contextmanager
def _raised_as_sqlalchemy(dialect, pooled):
    """A driver error raised outside ``_execute`` (PostgreSQL's pipeline reports errors when it
    reads the answers) comes out as SQLAlchemy's exception class, as ``_execute``'s do."""
    try:
        yield
    except dialect.loaded_dbapi.Error as error:
        raise _converted(dialect, pooled, None, error, "(pipelined statements)", ()) from error


def in_transaction() -> bool:
    return bool(g.get(_IN_TRANSACTION))


def session_free() -> bool:
    """True when a direct transaction may start: the session holds no connection."""
    return not _session_holds_connection()


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
    if g.pop(_IN_TRANSACTION, None):
        # Only a bug gets here (teardown ends every direct transaction first): never hand the
        # pool a connection in the middle of one. Closing it rolls the transaction back.
        pooled.invalidate()
        pooled.close()
        raise RuntimeError("a direct transaction was left open")
    try:
        if db.engine.dialect.name == "postgresql" and pooled.dbapi_connection is not None:
            pooled.driver_connection.autocommit = False  # how the pool hands connections out
    finally:
        pooled.close()


def _execute(dialect, sql: str, arguments, options: dict, fetch: bool = True, many: bool = False) -> list:
    pooled = connection()
    cursor = pooled.cursor()
    try:
        if many:
            cursor.executemany(sql, arguments)
            return []
        cursor.execute(sql, arguments, **options)
        return cursor.fetchall() if fetch else []
    except dialect.loaded_dbapi.Error as error:
        raise _converted(dialect, pooled, cursor, error, sql, arguments) from error
    finally:
        try:
            cursor.close()
        except dialect.loaded_dbapi.Error:
            pass


def _converted(dialect, pooled, cursor, error, sql: str, arguments) -> DBAPIError:
    """SQLAlchemy's exception for a driver error; a lost connection is dropped from the pool."""
    gone = dialect.is_disconnect(error, pooled.dbapi_connection, cursor)
    if gone:
        # As SQLAlchemy does on a lost connection: drop it and every connection pooled
        # with it (they went to the same server), so the next request reconnects.
        g.pop(_SLOT, None)
        db.engine.pool._invalidate(pooled, error)
    return DBAPIError.instance(sql, arguments, error, dialect.loaded_dbapi.Error,
                               connection_invalidated=gone, dialect=dialect)


def init_app(app) -> None:
    app.teardown_appcontext(release)
