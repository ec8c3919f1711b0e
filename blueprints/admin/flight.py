"""Admin section: the flight recorder — the last SAML Responses and SCIM requests, decoded.

The SAML and SCIM code write the rows (bounded in number and size); these
pages only read them. Everything shown is escaped by the templates; bodies
are redacted once more here, in case a secret slipped past the writer.
"""
from __future__ import annotations

import json
from xml.parsers.expat import ExpatError

from defusedxml import DefusedXmlException
from defusedxml.minidom import parseString
from flask import abort, redirect, render_template, request, url_for

from models import AuditEvent, SamlResponseLog, ScimRequestLog, User, db, settings

from . import bp
from .forms import SamlFlightFilterForm, ScimFlightFilterForm

REDACTED = "[redacted]"
SECRET_WORDS = ("password", "secret", "token", "authorization", "credential", "apikey", "api_key")


def _is_secret_name(name) -> bool:
    return isinstance(name, str) and any(word in name.lower() for word in SECRET_WORDS)


def redact(value):
    """A copy of a JSON value with anything that looks like a secret replaced.

    Covers plain keys ({"password": ...}) and SCIM PATCH operations that name
    the secret in ``path`` and carry it in ``value``.
    """
    if isinstance(value, list):
        return [redact(item) for item in value]
    if not isinstance(value, dict):
        return value
    patch_secret = _is_secret_name(value.get("path"))
    out = {}
    for key, item in value.items():
        if _is_secret_name(key) or (patch_secret and key == "value"):
            out[key] = REDACTED
        else:
            out[key] = redact(item)
    return out


def pretty_body(text: str | None) -> str:
    """A request or response body for people: JSON indented and redacted, anything else as it came."""
    if not text:
        return ""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return json.dumps(redact(parsed), indent=2, ensure_ascii=False)


def pretty_xml(text: str | None) -> str:
    """The Response indented for reading; parsed without entities or DTDs, shown as-is if it will not parse."""
    if not text:
        return ""
    try:
        document = parseString(text.encode("utf-8"), forbid_dtd=True)
    except (ExpatError, DefusedXmlException, ValueError):
        return text
    lines = document.toprettyxml(indent="  ").splitlines()
    # Already-indented input leaves whitespace-only lines behind; they carry nothing.
    return "\n".join(line for line in lines if line.strip())


@bp.route("/flight/saml")
def flight():
    """SAML Responses, newest first; ``?reference=CODE`` finds the one an employee's error page showed."""
    filters = SamlFlightFilterForm(request.args)
    limit = settings.get("saml", "flight_recorder_size")
    query = SamlResponseLog.query
    reference = (filters.reference.data or "").strip().upper()
    if reference:
        query = query.filter(SamlResponseLog.reference == reference)
    if filters.verdict.data:
        query = query.filter(SamlResponseLog.verdict == filters.verdict.data)
    entries = query.order_by(SamlResponseLog.created_at.desc(), SamlResponseLog.id.desc()).limit(limit).all()
    if reference and len(entries) == 1:
        return redirect(url_for("admin.flight_saml_entry", entry_id=entries[0].id))
    # A reference can also belong to a failure that never reached the recorder (e.g. a password sign-in).
    audit_hits = (db.session.query(AuditEvent.id).filter(AuditEvent.reference == reference).count()
                  if reference and not entries else 0)
    return render_template("admin/flight/saml_list.html", filters=filters, entries=entries, limit=limit,
                           reference=reference, audit_hits=audit_hits)


@bp.route("/flight/saml/<int:entry_id>")
def flight_saml_entry(entry_id):
    entry = db.session.get(SamlResponseLog, entry_id)
    if entry is None:
        abort(404)
    user = db.session.get(User, entry.user_id) if entry.user_id else None
    events = (AuditEvent.query.filter(AuditEvent.reference == entry.reference).order_by(AuditEvent.id).all()
              if entry.reference else [])
    return render_template("admin/flight/saml_entry.html", entry=entry, user=user, events=events,
                           xml=pretty_xml(entry.response_xml),
                           allowed_skew=settings.get("saml", "clock_skew_seconds"))


@bp.route("/flight/scim")
def flight_scim():
    filters = ScimFlightFilterForm(request.args)
    limit = settings.get("scim", "flight_recorder_size")
    query = ScimRequestLog.query
    if filters.outcome.data == "errors":
        query = query.filter(ScimRequestLog.status >= 400)
    entries = query.order_by(ScimRequestLog.created_at.desc(), ScimRequestLog.id.desc()).limit(limit).all()
    return render_template("admin/flight/scim_list.html", filters=filters, entries=entries, limit=limit)


@bp.route("/flight/scim/<int:entry_id>")
def flight_scim_entry(entry_id):
    entry = db.session.get(ScimRequestLog, entry_id)
    if entry is None:
        abort(404)
    return render_template("admin/flight/scim_entry.html", entry=entry,
                           request_body=pretty_body(entry.request_body),
                           response_body=pretty_body(entry.response_body))
