"""Failed password sign-ins, counted per account and per client address."""
from __future__ import annotations

from datetime import timedelta

from . import db, utcnow


class LoginFailure(db.Model):
    __tablename__ = "login_failures"
    __table_args__ = (db.Index("ix_login_failures_key_created", "key", "created_at"),)

    id = db.Column(db.Integer, primary_key=True)
    # "account:<folded login>" or "address:<ip>"
    key = db.Column(db.String(400), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    @classmethod
    def count_recent(cls, key: str, window_seconds: int) -> int:
        since = utcnow() - timedelta(seconds=window_seconds)
        return cls.query.filter(cls.key == key, cls.created_at >= since).count()

    @classmethod
    def add(cls, *keys: str) -> None:
        now = utcnow()
        for key in keys:
            db.session.add(cls(key=key, created_at=now))

    @classmethod
    def clear(cls, key: str) -> None:
        cls.query.filter_by(key=key).delete(synchronize_session=False)

    @classmethod
    def purge_older_than(cls, window_seconds: int) -> None:
        cls.query.filter(cls.created_at < utcnow() - timedelta(seconds=window_seconds)).delete(
            synchronize_session=False)
