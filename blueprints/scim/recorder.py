"""Per-request bookkeeping kept in the database: the rate limit, the request log, last use.

All of it is shared by the app processes through the database. The rate limit is a
fixed one-minute window per token: the check before a request reads the window and
adds the requests this process has not written yet; the count goes up when the
process writes its queued log rows (class Pending), in one small transaction per
batch. Other processes' unwritten requests (at most one flush interval's worth) and
requests already in flight are not seen, so a burst can overshoot the limit by that
much: an approximation that keeps bookkeeping from costing a commit per request.
"""
from __future__ import annotations

import atexit
import hmac
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote_plus

from flask import current_app
from sqlalchemy import bindparam, select, text
from sqlalchemy.exc import OperationalError

from models import ScimRequestLog, ScimToken, Setting, db, direct, settings, utcnow, will_write
from models.scim_token import ScimRateWindow, hash_token
from models.setting import DEFINITIONS

from .filters import has_lone_surrogate

BODY_LIMIT = 4000
SECRET_WORDS = ("pass", "secret", "token", "authorization", "credential")  # "pass" covers "password"
SECRET_KEYS = re.compile("|".join(SECRET_WORDS), re.IGNORECASE)
LAST_USED_RESOLUTION = timedelta(seconds=60)


class TokenInfo:
    """What the request log needs of a token, read once: it outlives the request's transaction."""

    __slots__ = ("id", "name", "last_used_at")

    def __init__(self, row):
        self.id, self.name, self.last_used_at = row.id, row.name, row.last_used_at


def current_minute(now: float | None = None) -> int:
    return int((now if now is not None else time.time()) // 60)


# Built once: composing a statement costs more Python time than the query itself.
# Table columns, not ORM attributes: an ORM-enabled select sets up ORM state on every execution.
_TOKENS, _SETTINGS, _WINDOWS = ScimToken.__table__.c, Setting.__table__.c, ScimRateWindow.__table__.c
_GATE = direct.Statement(
    select(_TOKENS.id, _TOKENS.name, _TOKENS.last_used_at, _TOKENS.revoked_at, _TOKENS.token_hash,
           select(_SETTINGS.value).where(_SETTINGS.section == "scim", _SETTINGS.name == "enabled")
           .scalar_subquery().label("enabled"),
           _WINDOWS.minute, _WINDOWS.count)
    .select_from(ScimToken.__table__.outerjoin(ScimRateWindow.__table__, _WINDOWS.token_id == _TOKENS.id))
    .where(_TOKENS.token_hash == bindparam("digest"))
)


@dataclass
class Gate:
    """What decides whether a request may go on, read in one query."""
    token: "TokenInfo | None"
    enabled: bool
    retry_after: int | None
    along: list | None = None  # the rows of the read asked for with the check (see check_gate)


_GATED: dict = {}


def _gated(read: direct.Statement) -> direct.Statement:
    """The token check with ``read`` in the same statement: ``read`` runs only for a live token."""
    combined = _GATED.get(read)
    if combined is None:
        gate = _GATE.select.subquery("gate")
        along = read.select.subquery("along")
        combined = _GATED[read] = direct.Statement(
            select(*gate.c, *along.c).select_from(gate.outerjoin(along, gate.c.revoked_at.is_(None))))
    return combined


def check_gate(presented: str, limit: int, along: tuple[direct.Statement, dict] | None = None) -> Gate:
    """The live token matching ``presented``, whether SCIM is on, and the token's rate window.

    One round trip instead of three, on the driver (models.direct): this runs before every
    SCIM request. It reads committed state, outside the transaction a write will open.

    ``along``: a read (statement, parameters) the request will make once admitted, such as the
    ``userName eq`` lookup IdPs send before every push. It joins the token check's round trip
    (saving one) and runs only if the token is live; its rows are handed back only if the
    request is admitted.
    """
    digest = hash_token(presented) if presented else ""
    if along is None:
        row, rows = _GATE.first(digest=digest), None
    else:
        read, params = along
        width = len(_GATE.names)
        joined = _gated(read).all(digest=digest, **params)
        row = _GATE.row._make(joined[0][:width]) if joined else None
        # A token with no matching rows still comes back, once, with the read's columns empty.
        rows = [read.row._make(r[width:]) for r in joined if any(value is not None for value in r[width:])]
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return Gate(None, True, None)
    setting = row.enabled
    on = DEFINITIONS["scim"]["enabled"].default if setting is None else bool(setting)
    wait = None
    now = time.time()
    minute = current_minute(now)
    if limit > 0 and (row.count or 0) * (row.minute == minute) + pending().counted(row.id, minute) >= limit:
        wait = max(1, int(60 - now % 60) + 1)
    return Gate(TokenInfo(row), on, wait, rows if on and wait is None else None)


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


def _may_name_a_secret(text: str) -> bool:
    """Whether any secret-marking word appears in ``text``, matched as ``SECRET_KEYS`` matches.
    For ASCII text (nearly every body) lower-casing and ``in`` say the same ten times faster than
    the case-blind regular expression; other text, where Unicode case rules (such as "ſ" matching
    "s") come in, is searched with the expression itself."""
    if text.isascii():
        lowered = text.lower()
        return any(word in lowered for word in SECRET_WORDS)
    return SECRET_KEYS.search(text) is not None


def body_for_log(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\\u" not in text and "\x00" not in text and not _may_name_a_secret(text):
        # No word a secret's key is recognised by appears anywhere (and none could hide in a \u
        # escape), so nothing would be redacted: kept as sent, without parsing and re-encoding it.
        return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + " [truncated]"
    try:
        redacted = redact(json.loads(raw))
        shown = json.dumps(redacted, ensure_ascii=False)
        if has_lone_surrogate(shown):
            # Refused with a 400, still logged: escaped, since no text column can store one.
            shown = json.dumps(redacted)
    except (ValueError, UnicodeDecodeError):
        shown = "[not JSON]"
    except RecursionError:  # too deeply nested to parse (or to redact): still logged, as such
        shown = "[JSON nested too deeply]"
    return shown if len(shown) <= BODY_LIMIT else shown[:BODY_LIMIT] + " [truncated]"


class Pending:
    """This process's request-log rows not yet in the database, written in batches.

    One transaction per request for bookkeeping costs more than the lookup it records
    (and on SQLite it makes every read take the write lock), so rows wait here until the
    batch is full, the oldest is ``SCIM_LOG_FLUSH_SECONDS`` old (a background thread
    looks every interval), a request fails (an error is shown at once), or the process
    exits. With the setting at 0 every request writes its own row, as the tests do.
    A crash loses at most one interval of log rows; never a provisioning change.
    """

    def __init__(self, app, interval: float, batch: int):
        self.app, self.interval, self.batch = app, interval, max(1, batch)
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.rows: list[dict] = []
        self.oldest = 0.0
        self.thread: threading.Thread | None = None
        self.written = 0  # rows this process has written (trimming runs about every tenth)
        self.trimmed_to = 0  # rows with ids up to here are gone (this process's last trim)
        self.counts: dict[tuple[int, int], int] = {}  # (token id, minute) -> queued rows

    def add(self, row: dict, urgent: bool) -> bool:
        """Queue ``row``; True when the caller should write the queue now."""
        with self.lock:
            self.rows.append(row)
            self._count([row])
            if len(self.rows) == 1:
                self.oldest = time.monotonic()
            due = (urgent or self.interval <= 0 or len(self.rows) >= self.batch
                   or time.monotonic() - self.oldest >= self.interval)
        if not due and self.thread is None:
            self._start_thread()
        return due

    def take(self) -> tuple[list[dict], dict[tuple[int, int], int]]:
        """The queued rows, and how many of them each (token id, minute) has."""
        with self.lock:
            rows, counts, self.rows, self.counts = self.rows, self.counts, [], {}
        return rows, counts

    def put_back(self, rows: list[dict]) -> None:
        """Rows whose write failed wait for the next try, unless too many have piled up."""
        with self.lock:
            if len(self.rows) + len(rows) <= MAX_PENDING:
                self.rows[:0] = rows
                self._count(rows)
                self.oldest = time.monotonic()

    def _count(self, rows: list[dict]) -> None:
        """Add ``rows`` to the per-(token, minute) counts (the caller holds the lock)."""
        for row in rows:
            key = (row["token_id"], row["minute"])
            self.counts[key] = self.counts.get(key, 0) + 1

    def counted(self, token_id: int, minute: int) -> int:
        """Requests of ``token_id`` in ``minute`` that the database does not know of yet."""
        return self.counts.get((token_id, minute), 0)

    def _start_thread(self) -> None:
        with self.lock:
            if self.thread is not None:
                return
            self.thread = threading.Thread(target=self._run, name="lobby-scim-log", daemon=True)
        self.thread.start()
        atexit.register(self.flush_now)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self.lock:
                due = bool(self.rows) and time.monotonic() - self.oldest >= self.interval
            if due:
                self.flush_now()

    def flush_now(self) -> None:
        """Write the queue from outside a request (the background thread, process exit)."""
        try:
            with self.app.app_context():
                write_pending(self)
        except Exception:  # never let the log thread die; the next interval tries again
            self.app.logger.exception("could not write the SCIM request log")


MAX_PENDING = 5000


def pending() -> Pending:
    """This process's queue for the current app (made on first use, and again after a fork)."""
    app = current_app._get_current_object()
    queue = app.extensions.get("lobby.scim_log")
    if queue is None or queue.pid != os.getpid():
        queue = Pending(app, float(app.config.get("SCIM_LOG_FLUSH_SECONDS", 1.0)),
                        int(app.config.get("SCIM_LOG_BATCH", 200)))
        app.extensions["lobby.scim_log"] = queue
    return queue


def record(*, token: "TokenInfo | None", method: str, path: str, status: int, duration_ms: float | None,
           error: str | None, request_body: bytes | None, response_body: bytes | None) -> None:
    """Queue the request-log row (with the rate-limit count and the token's last use) and write
    the queue when it is due.

    Error handlers have already rolled back a failed request's work, and a successful
    write has committed, so a write here continues whatever (read-only) transaction is open.
    """
    row = dict(
        created_at=utcnow(), token_id=token.id if token else None, token_name=token.name if token else None,
        # Any token is a method to HTTP; the column holds the standard ones (PROPFIND is the longest).
        method=method[:8], path=path_for_log(path), status=status,
        duration_ms=round(duration_ms, 2) if duration_ms is not None else None, error=error,
        request_body=body_for_log(request_body), response_body=body_for_log(response_body),
        minute=current_minute(),
    )
    queue = pending()
    if queue.add(row, urgent=status >= 400):
        write_pending(queue)


_LOG_COLUMNS = ("created_at", "token_id", "token_name", "method", "path", "status", "duration_ms", "error",
                "request_body", "response_body")
# PostgreSQL: a batch of log rows as ONE statement with ONE parameter, the rows as a JSON array
# (json_populate_recordset gives them the table's column types, in order). An executemany costs the
# driver and the server a statement per row, and binding each column as an array costs the driver a
# Python loop per value; json.dumps is C.
_LOG_BATCH_PG = text(
    f"INSERT INTO scim_request_log ({', '.join(_LOG_COLUMNS)}) "
    f"SELECT {', '.join(_LOG_COLUMNS)} FROM json_populate_recordset(NULL::scim_request_log, CAST(:rows AS json)) "
    "WITH ORDINALITY AS batch ORDER BY batch.ordinality")
_RELAX_PG = text("SELECT set_config('synchronous_commit', 'off', true)")
# Adds a batch's requests to the token's window; a window another process already moved on is left alone.
_COUNT = text("""
INSERT INTO scim_rate_windows (token_id, minute, count) VALUES (:token_id, :minute, :n)
ON CONFLICT (token_id) DO UPDATE SET
    count = CASE WHEN scim_rate_windows.minute = excluded.minute
                 THEN scim_rate_windows.count + excluded.count ELSE excluded.count END,
    minute = excluded.minute
WHERE excluded.minute >= scim_rate_windows.minute
""")
# Trimming keeps the newest rows. It deletes only above the last cut this process made: on
# PostgreSQL the index keeps entries of deleted rows until VACUUM, and a DELETE from the lowest id
# walked through all of them every time (4.7 ms per batch of 200 at 160,000 rows written).
# A row another process committed later with an id below that cut is left to a fresh process's
# first trim, which starts from the lowest id.
_NEWEST = text("SELECT max(id) FROM scim_request_log")
_TRIM = text("DELETE FROM scim_request_log WHERE id > :above AND id <= :cut")
_TOUCH = text("UPDATE scim_tokens SET last_used_at = :now WHERE id = :id "
              "AND (last_used_at IS NULL OR last_used_at <= :stale)")


def write_pending(queue: Pending) -> None:
    """Write every queued row, the rate-limit counts and last-use times in one transaction.

    If the database cannot be reached, the rows wait for the next try. If it refuses the batch
    (a value it cannot store), each row is written alone and only the refused ones are dropped
    (said in the server log): one bad row must not hold back every row after it for good.
    """
    rows, counts = queue.take()
    if not rows:
        return
    will_write()
    try:
        _write_rows(queue, rows, counts)
    except OperationalError:
        queue.put_back(rows)
        raise
    except Exception:
        if len(rows) == 1:
            _drop(rows[0])
            return
        for index, row in enumerate(rows):
            try:
                _write_rows(queue, [row], {(row["token_id"], row["minute"]): 1})
            except OperationalError:
                queue.put_back(rows[index:])  # this row and those after it wait for the next try
                raise
            except Exception:
                _drop(row)


def _drop(row: dict) -> None:
    current_app.logger.exception("SCIM request log: the database refused the row of %s %s (status %s); dropped",
                                 row["method"], row["path"][:200], row["status"])


def _write_rows(queue: Pending, rows: list[dict], counts: dict) -> None:
    session = db.session
    try:
        connection = session.connection()
        batch = [{name: row[name] for name in _LOG_COLUMNS} for row in rows]
        if connection.dialect.name == "postgresql":
            # Bookkeeping may be lost in a crash; it is not worth a disk flush.
            connection.execute(_RELAX_PG)
            for row in batch:
                row["created_at"] = row["created_at"].isoformat()
            connection.execute(_LOG_BATCH_PG, {"rows": json.dumps(batch, ensure_ascii=False)})
        else:
            # sqlite3 runs an executemany's rows in C: one statement, compiled once.
            connection.execute(ScimRequestLog.__table__.insert(), batch)
        last_use: dict[int, object] = {}
        for row in rows:
            if row["token_id"] is not None:
                last_use[row["token_id"]] = max(row["created_at"], last_use.get(row["token_id"], row["created_at"]))
        for (token_id, minute), n in sorted(counts.items(), key=lambda item: item[0][1]):
            if token_id is not None:
                connection.execute(_COUNT, {"token_id": token_id, "minute": minute, "n": n})
        for token_id, when in last_use.items():
            connection.execute(_TOUCH, {"id": token_id, "now": when, "stale": when - LAST_USED_RESOLUTION})
        written, queue.written = queue.written, queue.written + len(rows)
        cut = None
        if queue.written // 10 > written // 10:  # about every tenth row: keep the newest rows only
            newest = connection.execute(_NEWEST).scalar() or 0
            # Ids below the last cut mean the table was emptied and its ids began again.
            above = queue.trimmed_to if newest >= queue.trimmed_to else 0
            cut = newest - settings_size()
            if cut > above:
                connection.execute(_TRIM, {"above": above, "cut": cut})
            cut = max(cut, above)
        session.commit()
    except Exception:
        session.rollback()
        raise
    if cut is not None:
        queue.trimmed_to = cut  # only once the delete is committed


def settings_size() -> int:
    return max(1, settings.get("scim", "flight_recorder_size"))
