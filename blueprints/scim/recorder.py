"""Per-request bookkeeping kept in the database: the rate limit, the request log, last use.

Everything here is shared by all app processes through the database (Lobby keeps no
state in a process). The rate limit is a fixed one-minute window per token: the check
before a request is a read, and the count goes up with the request log after it, in
one small transaction. Requests already in flight when a token reaches its limit still
finish, so a burst can overshoot by at most the number of concurrent requests — an
approximation that costs no extra commit per request.
"""
from __future__ import annotations

import json
import re
import time
from datetime import timedelta

from sqlalchemy import select, text, update

from models import ScimRequestLog, ScimToken, db, settings, utcnow
from models.scim_token import ScimRateWindow

BODY_LIMIT = 4000
SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|credential", re.IGNORECASE)
LAST_USED_RESOLUTION = timedelta(seconds=60)


class TokenInfo:
    """What the request log needs of a token, read once: it outlives the request's transaction."""

    __slots__ = ("id", "name", "last_used_at")

    def __init__(self, row: ScimToken):
        self.id, self.name, self.last_used_at = row.id, row.name, row.last_used_at


def current_minute(now: float | None = None) -> int:
    return int((now if now is not None else time.time()) // 60)


def retry_after(token_id: int, limit: int) -> int | None:
    """Seconds until the token may call again, or None while it is under its limit."""
    if limit <= 0:
        return None
    now = time.time()
    row = db.session.execute(select(ScimRateWindow.minute, ScimRateWindow.count)
                             .where(ScimRateWindow.token_id == token_id)).first()
    if row is None or row.minute != current_minute(now) or row.count < limit:
        return None
    return max(1, int(60 - now % 60) + 1)


def redact(value):
    if isinstance(value, dict):
        return {k: ("[redacted]" if SECRET_KEYS.search(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def body_for_log(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        shown = json.dumps(redact(json.loads(raw)), ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        shown = "[not JSON]"
    return shown if len(shown) <= BODY_LIMIT else shown[:BODY_LIMIT] + " [truncated]"


def record(*, token: "TokenInfo | None", method: str, path: str, status: int, duration_ms: float,
           error: str | None, request_body: bytes | None, response_body: bytes | None) -> None:
    """Write the request log row, count the request, note the token's last use; commit."""
    session = db.session
    session.rollback()  # never carry a failed request's half-done work into this transaction
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        # Bookkeeping may be lost in a crash; it is not worth a disk flush per request.
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    now = utcnow()
    entry = ScimRequestLog(
        created_at=now, token_id=token.id if token else None, token_name=token.name if token else None,
        method=method, path=path[:2048], status=status, duration_ms=round(duration_ms, 2), error=error,
        request_body=body_for_log(request_body), response_body=body_for_log(response_body),
    )
    session.add(entry)
    if token is not None:
        _count(bind.dialect.name, token.id)
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            session.execute(update(ScimToken).where(ScimToken.id == token.id).values(last_used_at=now))
    session.flush()
    keep = settings_size()
    if entry.id % 10 == 0 or keep < 10:
        session.execute(ScimRequestLog.__table__.delete().where(ScimRequestLog.id <= entry.id - keep))
    session.commit()


def settings_size() -> int:
    return max(1, settings.get("scim", "flight_recorder_size"))


def _count(dialect: str, token_id: int) -> None:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    minute = current_minute()
    statement = insert(ScimRateWindow).values(token_id=token_id, minute=minute, count=1)
    table = ScimRateWindow.__table__
    statement = statement.on_conflict_do_update(
        index_elements=["token_id"],
        set_={
            "count": _case_count(table, statement, minute),
            "minute": minute,
        },
    )
    db.session.execute(statement)


def _case_count(table, statement, minute):
    from sqlalchemy import case
    return case((table.c.minute == minute, table.c.count + 1), else_=1)
