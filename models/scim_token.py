"""Bearer tokens for the SCIM API: only a hash is stored, the token is shown once."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from . import db, utcnow

TOKEN_PREFIX = "lobby_scim_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ScimToken(db.Model):
    __tablename__ = "scim_tokens"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(255), nullable=False)
    token_hash = db.Column(db.String(64), nullable=False, unique=True)
    # The first characters, so an admin can tell tokens apart; useless on its own.
    prefix = db.Column(db.String(32), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    created_by = db.Column(db.String(255))
    last_used_at = db.Column(db.DateTime)
    revoked_at = db.Column(db.DateTime)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def issue(cls, name: str, created_by: str | None = None) -> tuple["ScimToken", str]:
        """Make a token; return the row and the only copy of the secret."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = cls(name=name, token_hash=hash_token(secret), prefix=secret[: len(TOKEN_PREFIX) + 4],
                  created_by=created_by)
        db.session.add(row)
        return row, secret

    @classmethod
    def authenticate(cls, presented: str) -> "ScimToken | None":
        """The live token matching ``presented``, compared in constant time."""
        if not presented:
            return None
        digest = hash_token(presented)
        row = cls.query.filter_by(token_hash=digest).one_or_none()
        if row is None or row.revoked:
            return None
        # The index lookup found the row by its hash; compare again without a timing signal.
        return row if hmac.compare_digest(row.token_hash, digest) else None


class ScimRateWindow(db.Model):
    """Requests one token made in the current minute: the rate limit shared by every process."""

    __tablename__ = "scim_rate_windows"

    token_id = db.Column(db.Integer, db.ForeignKey("scim_tokens.id", ondelete="CASCADE"), primary_key=True)
    # Minutes since the epoch; the count restarts when a new minute begins.
    minute = db.Column(db.BigInteger, nullable=False)
    count = db.Column(db.Integer, nullable=False, default=0)
