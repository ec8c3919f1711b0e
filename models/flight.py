"""The flight recorder: the last SAML Responses and SCIM requests, for troubleshooting."""
from __future__ import annotations

from . import db, utcnow


class SamlResponseLog(db.Model):
    __tablename__ = "saml_response_log"

    id = db.Column(db.Integer, primary_key=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    reference = db.Column(db.String(16), index=True)
    verdict = db.Column(db.String(16), nullable=False)  # accepted | rejected
    reason = db.Column(db.Text)
    issuer = db.Column(db.String(1024))
    name_id = db.Column(db.String(1024))
    in_response_to = db.Column(db.String(255))
    relay_state = db.Column(db.String(512))
    user_id = db.Column(db.String(36))
    # The decoded Response (pretty-printed XML), bounded in size.
    response_xml = db.Column(db.Text)
    # Attributes as received and as mapped onto the user.
    attributes = db.Column(db.JSON, nullable=False, default=dict)
    mapped = db.Column(db.JSON, nullable=False, default=dict)
    issue_instant_skew_seconds = db.Column(db.Float)


class ScimRequestLog(db.Model):
    __tablename__ = "scim_request_log"

    id = db.Column(db.Integer, primary_key=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    token_id = db.Column(db.Integer)
    token_name = db.Column(db.String(255))
    method = db.Column(db.String(8), nullable=False)
    path = db.Column(db.String(2048), nullable=False)
    status = db.Column(db.Integer, nullable=False)
    duration_ms = db.Column(db.Float)
    error = db.Column(db.Text)
    # Bodies with secrets redacted, truncated to a bound.
    request_body = db.Column(db.Text)
    response_body = db.Column(db.Text)
