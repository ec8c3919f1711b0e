"""SAML protocol state, in the database so that every app process sees the same.

* outstanding AuthnRequests (InResponseTo must name one of them, once);
* sign-ins whose Response was accepted, waiting for the browser that started them;
* assertion IDs already accepted (the replay cache).
"""
from __future__ import annotations

from . import db, utcnow


class SamlOutstandingRequest(db.Model):
    __tablename__ = "saml_outstanding_requests"

    # The AuthnRequest's ID attribute.
    id = db.Column(db.String(255), primary_key=True)
    # Opaque handle sent as RelayState; maps back to where the user wanted to go.
    relay_state = db.Column(db.String(128), unique=True)
    next_path = db.Column(db.String(2048))
    purpose = db.Column(db.String(16), nullable=False, default="login")  # login | test
    # SHA-256 of the secret the starting browser keeps in its session: the sign-in completes
    # only in that browser (a Response relayed into someone else's browser signs nobody in).
    binding_hash = db.Column(db.String(64))
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    expires_at = db.Column(db.DateTime, nullable=False, index=True)


class SamlPendingSignIn(db.Model):
    """An accepted Response, held for a moment: the ACS is a cross-site POST that carries no
    session cookie, so the browser is sent on to a GET that does, and is signed in there if
    it holds the secret of the browser that started the login."""
    __tablename__ = "saml_pending_sign_ins"

    # SHA-256 of the one-time ticket in the redirect URL.
    ticket_hash = db.Column(db.String(64), primary_key=True)
    user_id = db.Column(db.String(36), db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    binding_hash = db.Column(db.String(64))
    next_path = db.Column(db.String(2048))
    purpose = db.Column(db.String(16), nullable=False, default="login")
    reference = db.Column(db.String(16))
    # What the sign-in's audit event records once it completes.
    details = db.Column(db.JSON, nullable=False, default=dict)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    expires_at = db.Column(db.DateTime, nullable=False, index=True)


class SamlSeenAssertion(db.Model):
    __tablename__ = "saml_seen_assertions"

    assertion_id = db.Column(db.String(255), primary_key=True)
    issuer = db.Column(db.String(1024))
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Kept until the assertion could no longer be accepted anyway.
    expires_at = db.Column(db.DateTime, nullable=False, index=True)
