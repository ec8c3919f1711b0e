"""Lobby's data model: one module per aggregate, all sharing one ``db``."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine

# Deterministic constraint names, so migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))


def utcnow() -> datetime:
    """Naive UTC: both databases store it the same way."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """WAL and foreign keys on every SQLite connection (the busy timeout is set by ``config.py``).

    The driver's own transaction handling is switched off so that ``BEGIN
    IMMEDIATE`` (below) takes the write lock up front: a deferred transaction
    that reads and then writes fails at once with "database is locked" when
    another writer got there first, whatever the busy timeout.
    """
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin_immediate(conn):
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


from .user import User, UserEmail  # noqa: E402
from .group import Group, Membership  # noqa: E402
from .identity import Identity  # noqa: E402
from .setting import Setting, settings  # noqa: E402
from .scim_token import ScimToken  # noqa: E402
from .audit import AuditEvent, record_event  # noqa: E402
from .saml_state import SamlOutstandingRequest, SamlSeenAssertion  # noqa: E402
from .throttle import LoginFailure  # noqa: E402
from .flight import SamlResponseLog, ScimRequestLog  # noqa: E402

__all__ = [
    "db", "utcnow", "new_id",
    "User", "UserEmail", "Group", "Membership", "Identity", "Setting", "settings",
    "ScimToken", "AuditEvent", "record_event", "SamlOutstandingRequest", "SamlSeenAssertion",
    "LoginFailure", "SamlResponseLog", "ScimRequestLog",
]
