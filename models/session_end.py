"""Browser sessions ended by signing out, until they would have expired anyway.

The session lives in a signed cookie; clearing it in the browser does not stop a copy of it
from working. Each sign-in gets a random session id (in the cookie); signing out records its
hash here, and a session whose id is recorded is not accepted again.
"""
from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, exists, select

from . import db, utcnow


class EndedSession(db.Model):
    __tablename__ = "ended_sessions"

    sid_hash = db.Column(db.String(64), primary_key=True)
    # When the cookie would have expired anyway: the row is useless after that.
    expires_at = db.Column(db.DateTime, nullable=False, index=True)

    @staticmethod
    def digest(sid: str) -> str:
        return hashlib.sha256(sid.encode("utf-8")).hexdigest()

    @classmethod
    def end(cls, sid: str, lifetime_seconds: int) -> None:
        """Record ``sid`` as ended (the caller commits); forget rows past their expiry."""
        now = utcnow()
        db.session.execute(delete(cls).where(cls.expires_at < now))
        db.session.merge(cls(sid_hash=cls.digest(sid), expires_at=now + timedelta(seconds=lifetime_seconds)))

    @classmethod
    def has_ended(cls, sid: str) -> bool:
        return bool(db.session.execute(select(exists().where(cls.sid_hash == cls.digest(sid)))).scalar())
