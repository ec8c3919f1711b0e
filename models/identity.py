"""The stable link between an IdP's NameID and a Lobby user."""
from __future__ import annotations

from . import db, utcnow


class Identity(db.Model):
    __tablename__ = "identities"
    __table_args__ = (db.UniqueConstraint("provider", "identifier", name="uq_identities_provider_identifier"),)

    id = db.Column(db.Integer, primary_key=True)
    # The IdP's entity ID: a NameID only means something together with who issued it.
    provider = db.Column(db.String(1024), nullable=False)
    identifier = db.Column(db.String(1024), nullable=False)
    user_id = db.Column(db.String(36), db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    last_used_at = db.Column(db.DateTime)

    user = db.relationship("User", back_populates="identities")
