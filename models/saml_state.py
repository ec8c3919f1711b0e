"""SAML protocol state, in the database so that every app process sees the same.

* outstanding AuthnRequests (InResponseTo must name one of them, once);
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
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    expires_at = db.Column(db.DateTime, nullable=False, index=True)


class SamlSeenAssertion(db.Model):
    __tablename__ = "saml_seen_assertions"

    assertion_id = db.Column(db.String(255), primary_key=True)
    issuer = db.Column(db.String(1024))
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Kept until the assertion could no longer be accepted anyway.
    expires_at = db.Column(db.DateTime, nullable=False, index=True)
