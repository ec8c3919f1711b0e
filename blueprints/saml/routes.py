"""HTTP glue for SAML sign-in: SP metadata, SP-initiated start, the ACS, the failure page.

The protocol lives in service.py; here are only requests, redirects and pages.
"""
from __future__ import annotations

import re
import secrets

from flask import Response, current_app, flash, redirect, render_template, request, session, url_for

from blueprints import csrf
from blueprints.security import client_address, safe_next_path
from models import LoginFailure, db
from models.audit import new_reference

from . import bp
from .service import (ACS_PATH, ENTITY_PATH, FINISH_PATH, LOGIN_PATH, MAX_RESPONSE_BYTES, Capture, RestartLogin,
                      SamlError, ServiceProvider, consume_response, finish_sign_in, hold_sign_in, load_provider,
                      record_rejection, record_restart, record_unfinished, sp_metadata_xml, start_login)

FAILED_PATH = "/internal-api/auth/integrations/saml2/failed"
_REFERENCE_RE = re.compile(r"^[A-Z0-9]{8}$")
FAILURE_KINDS = ("error", "deactivated", "no_account", "not_configured", "other_browser")


def browser_binding() -> str:
    """This browser's secret for SAML sign-ins, kept in its session (created on first use).

    A login started here completes only where the secret is presented again: at the finish
    URL, a same-site GET that carries the session cookie (the ACS POST does not).
    """
    binding = session.get("saml_binding")
    if not isinstance(binding, str) or len(binding) < 32:
        binding = session["saml_binding"] = secrets.token_urlsafe(32)
    return binding


def service_provider() -> ServiceProvider:
    # Always from configuration: the Host header is the client's to choose.
    return ServiceProvider(current_app.config["BASE_URL"])


def sso_button():
    """The SAML button on /login, when SAML sign-in is active and configured."""
    provider = load_provider()
    if not provider.ready:
        return None
    next_path = safe_next_path(request.args.get("next"))
    url = url_for("saml.login", next=next_path) if next_path != "/" else url_for("saml.login")
    return {"label": provider.label, "url": url}


@bp.get(ENTITY_PATH)
def metadata():
    """The SP metadata (GET on the entity ID, as the Audience URI in the guide)."""
    return Response(sp_metadata_xml(service_provider()), mimetype="application/samlmetadata+xml",
                    headers={"Content-Disposition": 'inline; filename="lobby-sp-metadata.xml"'})


@bp.get(LOGIN_PATH)
def login():
    """SP-initiated sign-in: remember where to go afterwards, send the browser to the IdP."""
    next_path = safe_next_path(request.args.get("next"))
    try:
        location = start_login(service_provider(), binding=browser_binding(), next_path=next_path, purpose="login")
    except SamlError as error:
        db.session.rollback()
        return _failure_redirect(error.kind, None)
    db.session.commit()
    return redirect(location)


@bp.post(ACS_PATH)
@csrf.exempt  # the IdP posts here from its own origin; the signed Response is the proof
def acs():
    address = client_address()
    refusals = _refusal_key(address)
    limit = current_app.config.get("SAML_MAX_REFUSALS_PER_ADDRESS", 30)
    window = current_app.config.get("SAML_REFUSAL_WINDOW_SECONDS", 60)
    if limit > 0 and LoginFailure.count_recent(refusals, window) >= limit:
        # Posts this fast from one address are not people signing in: they are not read, nor recorded
        # (each refusal writes an audit event and pushes a real one out of the flight recorder).
        current_app.logger.warning("SAML ACS: not reading a Response from %s: %d refused from it within %d s",
                                   address, limit, window)
        span = "a minute" if window == 60 else f"{window} seconds"
        message = (f"Too many sign-in attempts from your network were refused within {span}. Wait {span}, "
                   "then sign in again from the start.")
        return render_template("errors/error.html", status=429, message=message), 429, {"Retry-After": str(window)}
    reference = new_reference()
    provider = load_provider()
    sp = service_provider()

    def reject(error: SamlError):
        return _reject(error, reference, provider, refusals, window)

    if request.content_length is not None and request.content_length > 2 * MAX_RESPONSE_BYTES:
        # Refused before the body is read at all.
        return reject(SamlError(f"The POST body is {request.content_length} bytes, larger than any sign-in",
                                capture=Capture()))
    try:
        outcome = consume_response(sp, request.form.get("SAMLResponse"), request.form.get("RelayState"),
                                   reference=reference, remote_addr=address, provider=provider)
    except SamlError as error:
        return reject(error)
    except Exception as error:  # whatever a hostile document does to a parser: a refusal, not a 500
        current_app.logger.exception("SAML Response check failed unexpectedly [%s]", reference)
        return reject(SamlError(f"The Response could not be checked ({type(error).__name__})"))

    if isinstance(outcome, RestartLogin):
        record_restart(outcome.capture, reference, provider)
        db.session.commit()
        # A fresh SP-initiated login, started by a GET: that request carries the browser's own
        # session cookie, which this cross-site POST does not, so nothing here writes the session
        # (a forged POST cannot replace anyone's session, signing them out).
        return redirect(url_for("saml.login"), 303)

    # Accepted. The session starts at the finish URL, in the browser that started the login.
    ticket = hold_sign_in(outcome, reference)
    db.session.commit()
    return redirect(url_for("saml.finish", ticket=ticket), 303)


@bp.get(FINISH_PATH)
def finish():
    """Complete an accepted sign-in: only the browser that started the login holds its secret."""
    from blueprints.auth.routes import _start_session
    try:
        done = finish_sign_in(request.args.get("ticket"), session.get("saml_binding"))
    except SamlError as error:
        db.session.rollback()
        reference = new_reference()
        record_unfinished(error, reference)
        db.session.commit()
        current_app.logger.info("SAML sign-in not completed [%s]: %s", reference, error.reason)
        if error.capture.purpose == "test" and current_user_is_admin():
            flash(f"Test sign-in not completed: {error.reason} (reference {reference})", "error")
            return redirect(url_for("admin.authentication"), 303)
        return _failure_redirect(error.kind, reference)
    if done.purpose == "test":
        # The admin who pressed "Test sign-in" keeps their session unless the IdP signed in an admin.
        if done.user.is_admin:
            _start_session(done.user)
        else:
            db.session.commit()
        return redirect(url_for("admin.authentication", test=done.reference), 303)
    _start_session(done.user)  # commits the whole sign-in in one transaction
    return redirect(safe_next_path(done.next_path), 303)


def current_user_is_admin() -> bool:
    from flask_login import current_user
    return bool(current_user.is_authenticated and current_user.is_admin)


def _refusal_key(address: str | None) -> str:
    return f"saml-acs:{address or 'unknown'}"


def _reject(error: SamlError, reference: str, provider, refusals: str, window: int):
    db.session.rollback()
    record_rejection(error, reference, provider)
    LoginFailure.add(refusals, keep_seconds=window)  # counted toward the address's limit
    db.session.commit()
    current_app.logger.info("SAML sign-in refused [%s]: %s", reference, error.reason)
    if error.capture.purpose == "test":
        return redirect(url_for("admin.authentication", test=reference), 303)
    return _failure_redirect(error.kind, reference)


def _failure_redirect(kind: str, reference: str | None):
    # A GET page after the cross-site POST: there the session cookie is sent again, so the
    # "SSO just failed" mark that stops /login from bouncing straight back to the IdP sticks.
    args = {"kind": kind}
    if reference:
        args["ref"] = reference
    return redirect(url_for("saml.failed", **args), 303)


@bp.get(FAILED_PATH)
def failed():
    kind = request.args.get("kind", "error")
    if kind not in FAILURE_KINDS:
        kind = "error"
    reference = request.args.get("ref", "")
    if not _REFERENCE_RE.match(reference):
        reference = None
    session["sso_failed"] = True
    status = {"deactivated": 403, "no_account": 403, "not_configured": 503}.get(kind, 401)
    return render_template("saml/failed.html", kind=kind, reference=reference), status

