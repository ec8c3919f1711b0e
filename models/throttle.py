"""Failed sign-ins, counted per key: a password sign-in per account and per client address, a refused
SAML Response per client address."""
from __future__ import annotations

from datetime import timedelta

from . import db, utcnow


class LoginFailure(db.Model):
    __tablename__ = "login_failures"
    __table_args__ = (db.Index("ix_login_failures_key_created", "key", "created_at"),)

    id = db.Column(db.Integer, primary_key=True)
    # "account:<folded login>", "address:<ip>" (password sign-ins) or "saml-acs:<ip>" (refused Responses)
    key = db.Column(db.String(400), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    @classmethod
    def count_recent(cls, key: str, window_seconds: int) -> int:
        since = utcnow() - timedelta(seconds=window_seconds)
        return cls.query.filter(cls.key == key, cls.created_at >= since).count()

    @classmethod
    def add(cls, *keys: str, keep_seconds: int | None = None) -> None:
        """Count a failure under each key; with ``keep_seconds``, those keys' rows older than that
        (outside every window they are counted in) are deleted, so a key holds at most one window's."""
        now = utcnow()
        if keep_seconds is not None:
            cls.query.filter(cls.key.in_(keys), cls.created_at < now - timedelta(seconds=keep_seconds)).delete(
                synchronize_session=False)
        for key in keys:
            db.session.add(cls(key=key, created_at=now))

    @classmethod
    def clear(cls, key: str) -> None:
        cls.query.filter_by(key=key).delete(synchronize_session=False)

    @classmethod
    def purge_older_than(cls, window_seconds: int) -> None:
        cls.query.filter(cls.created_at < utcnow() - timedelta(seconds=window_seconds)).delete(
            synchronize_session=False)
