"""Per-request bookkeeping kept in the database: the rate limit, the request log, last use.

Everything here is shared by all app processes through the database (Lobby keeps no
state in a process). The rate limit is a fixed one-minute window per token: the check
before a request is a read, and the count goes up with the request log after it, in
one small transaction. Requests already in flight when a token reaches its limit still
finish, so a burst can overshoot by at most the number of concurrent requests — an
approximation that costs no extra commit per request.
"""
from __future__ import annotations

import hmac
import json
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote_plus

from sqlalchemy import bindparam, select, text, update

from models import ScimRequestLog, ScimToken, Setting, db, settings, utcnow
from models.scim_token import ScimRateWindow, hash_token
from models.setting import DEFINITIONS

BODY_LIMIT = 4000
SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|credential", re.IGNORECASE)
LAST_USED_RESOLUTION = timedelta(seconds=60)


class TokenInfo:
    """What the request log needs of a token, read once: it outlives the request's transaction."""

    __slots__ = ("id", "name", "last_used_at")

    def __init__(self, row):
        self.id, self.name, self.last_used_at = row.id, row.name, row.last_used_at


def current_minute(now: float | None = None) -> int:
    return int((now if now is not None else time.time()) // 60)


# Built once: composing a statement costs more Python time than the query itself.
_GATE = (
    select(ScimToken.id, ScimToken.name, ScimToken.last_used_at, ScimToken.revoked_at, ScimToken.token_hash,
           select(Setting.value).where(Setting.section == "scim", Setting.name == "enabled")
           .scalar_subquery().label("enabled"),
           ScimRateWindow.minute, ScimRateWindow.count)
    .outerjoin(ScimRateWindow, ScimRateWindow.token_id == ScimToken.id)
    .where(ScimToken.token_hash == bindparam("digest"))
)

# PostgreSQL: the log row, the rate-limit count and "no disk flush for this commit" in one round trip.
_RECORD_PG = text("""
WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS setting),
counted AS (
    INSERT INTO scim_rate_windows (token_id, minute, count)
    SELECT :token_id, :minute, 1 WHERE CAST(:token_id AS INTEGER) IS NOT NULL
    ON CONFLICT (token_id) DO UPDATE SET
        count = CASE WHEN scim_rate_windows.minute = EXCLUDED.minute THEN scim_rate_windows.count + 1 ELSE 1 END,
        minute = EXCLUDED.minute
    RETURNING token_id
)
INSERT INTO scim_request_log (created_at, token_id, token_name, method, path, status, duration_ms, error,
                              request_body, response_body)
SELECT :created_at, :token_id, :token_name, :method, :path, :status, :duration_ms, :error,
       :request_body, :response_body
FROM relaxed
RETURNING id
""")


@dataclass
class Gate:
    """What decides whether a request may go on, read in one query."""
    token: "TokenInfo | None"
    enabled: bool
    retry_after: int | None


def check_gate(presented: str, limit: int) -> Gate:
    """The live token matching ``presented``, whether SCIM is on, and the token's rate window.

    One round trip instead of three: this runs before every SCIM request.
    """
    digest = hash_token(presented) if presented else ""
    # Core on the session's connection: the ORM layer adds nothing to a column query but time.
    row = db.session.connection().execute(_GATE, {"digest": digest}).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return Gate(None, True, None)
    setting = row.enabled
    on = DEFINITIONS["scim"]["enabled"].default if setting is None else bool(setting)
    wait = None
    now = time.time()
    if limit > 0 and row.minute == current_minute(now) and (row.count or 0) >= limit:
        wait = max(1, int(60 - now % 60) + 1)
    return Gate(TokenInfo(row), on, wait)


def redact(value):
    if isinstance(value, dict):
        return {k: ("[redacted]" if SECRET_KEYS.search(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def path_for_log(full_path: str) -> str:
    """The request path with secret-looking query values (``?access_token=...``) redacted."""
    path, sep, query = full_path.partition("?")
    if not sep:
        return full_path[:2048]
    parts = []
    for item in query.split("&"):
        name, eq, _value = item.partition("=")
        parts.append(f"{name}=[redacted]" if eq and SECRET_KEYS.search(unquote_plus(name)) else item)
    return (path + "?" + "&".join(parts))[:2048]


def body_for_log(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        shown = json.dumps(redact(json.loads(raw)), ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        shown = "[not JSON]"
    except RecursionError:  # too deeply nested to parse (or to redact): still logged, as such
        shown = "[JSON nested too deeply]"
    return shown if len(shown) <= BODY_LIMIT else shown[:BODY_LIMIT] + " [truncated]"


def record(*, token: "TokenInfo | None", method: str, path: str, status: int, duration_ms: float,
           error: str | None, request_body: bytes | None, response_body: bytes | None) -> None:
    """Write the request log row, count the request, note the token's last use; commit.

    Error handlers have already rolled back a failed request's work, and a successful
    write has committed, so this continues whatever (read-only) transaction is open.
    """
    session = db.session
    connection = session.connection()
    dialect = connection.dialect.name
    now = utcnow()
    values = dict(
        created_at=now, token_id=token.id if token else None, token_name=token.name if token else None,
        method=method, path=path_for_log(path), status=status, duration_ms=round(duration_ms, 2), error=error,
        request_body=body_for_log(request_body), response_body=body_for_log(response_body),
    )
    if dialect == "postgresql":
        # Bookkeeping may be lost in a crash; it is not worth a disk flush per request.
        entry_id = connection.execute(_RECORD_PG, {**values, "minute": current_minute()}).scalar()
    else:
        if token is not None:
            connection.execute(_count_statement(dialect, token.id))
        entry_id = connection.execute(ScimRequestLog.__table__.insert().returning(ScimRequestLog.id), values).scalar()
    if token is not None and (token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION):
        connection.execute(update(ScimToken.__table__).where(ScimToken.__table__.c.id == token.id)
                           .values(last_used_at=now))
    log = ScimRequestLog.__table__
    if entry_id % 10 == 0:
        keep = settings_size()
        connection.execute(log.delete().where(log.c.id <= entry_id - keep))
    session.commit()


def settings_size() -> int:
    return max(1, settings.get("scim", "flight_recorder_size"))


def _count_statement(dialect: str, token_id: int):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    from sqlalchemy import case

    minute = current_minute()
    table = ScimRateWindow.__table__
    statement = insert(table).values(token_id=token_id, minute=minute, count=1)
    return statement.on_conflict_do_update(
        index_elements=["token_id"],
        set_={"count": case((table.c.minute == minute, table.c.count + 1), else_=1), "minute": minute},
    )
