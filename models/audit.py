"""The audit log: one function records every sign-in, provisioning and settings change."""
from __future__ import annotations

import secrets
from typing import Any

from . import db, utcnow

OUTCOMES = ("success", "failure")


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (db.Index("ix_audit_events_action_created", "action", "created_at"),)

    id = db.Column(db.Integer, primary_key=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    actor = db.Column(db.String(255), index=True)  # "admin@x", "scim:Okta token", "anonymous"
    action = db.Column(db.String(64), nullable=False)  # e.g. "auth.login", "scim.user.update"
    target = db.Column(db.String(512), index=True)
    outcome = db.Column(db.String(16), nullable=False, default="success")
    reason = db.Column(db.Text)
    # A short code shown to a person on an error page, to find this event again.
    reference = db.Column(db.String(16), index=True)
    ip_address = db.Column(db.String(64))
    details = db.Column(db.JSON, nullable=False, default=dict)


def new_reference() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


def record_event(action: str, **fields: Any) -> AuditEvent:
    """Add an audit event to the current transaction (it commits with the change it records).

    When called inside a request, the actor and address default to the
    signed-in user and the client's address.
    """
    event = new_event(action, **fields)
    db.session.add(event)
    return event


def new_event(action: str, *, actor: str | None = None, target: str | None = None,
              outcome: str = "success", reason: str | None = None,
              details: dict[str, Any] | None = None, reference: str | None = None,
              ip_address: str | None = None) -> AuditEvent:
    """The audit event ``record_event`` would add, not yet added (for ``models.insert_new``)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    if actor is None or ip_address is None:
        request_actor, request_ip = _request_context()
        actor = actor if actor is not None else request_actor
        ip_address = ip_address if ip_address is not None else request_ip
    return AuditEvent(action=action, actor=_fit(actor, _ACTOR_LIMIT), target=_fit(target, _TARGET_LIMIT),
                      outcome=outcome, reason=reason, details=details or {}, reference=reference,
                      ip_address=_fit(ip_address, _IP_LIMIT), created_at=utcnow())


_ACTOR_LIMIT, _TARGET_LIMIT, _IP_LIMIT = (AuditEvent.__table__.c[name].type.length
                                          for name in ("actor", "target", "ip_address"))


def _fit(value: str | None, limit: int) -> str | None:
    """An actor or target too long for its column (a 255-character token name behind "scim:", a
    NameID sent as the target of a refused sign-in) is shortened, marked with "…", rather than
    failing the change it records; the event's details keep whatever the change itself kept."""
    if value is None or len(value) <= limit:
        return value
    return value[:limit - 1] + "…"


def _request_context() -> tuple[str, str | None]:
    from flask import has_request_context
    if not has_request_context():
        return "system", None
    from flask_login import current_user

    from blueprints.security import client_address
    actor = current_user.user_name if getattr(current_user, "is_authenticated", False) else "anonymous"
    return actor, client_address()
