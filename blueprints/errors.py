"""Error pages: HTML for people, JSON for API clients, never a traceback."""
from __future__ import annotations

from flask import current_app, jsonify, make_response, render_template, request, session
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from models import db

from .security import wants_json

MESSAGES = {
    400: "The request could not be understood.",
    401: "You need to sign in first.",
    403: "You do not have permission to see this page.",
    404: "There is nothing at this address.",
    405: "That method is not allowed here.",
    413: "What was sent is too large.",
    429: "Too many attempts. Wait a little and try again.",
    500: "Something went wrong on our side. It has been logged.",
    503: "Lobby cannot reach its database right now. Try again in a moment.",
}


def _render(status: int, message: str | None = None):
    message = message or MESSAGES.get(status, "Error")
    if wants_json():
        return make_response(jsonify({"status": status, "error": message}), status)
    return make_response(render_template("errors/error.html", status=status, message=message), status)


def _discard_session_changes() -> None:
    """A failed request's database changes were rolled back; its session changes must not reach
    the browser either. Otherwise a sign-in whose commit failed (no audit event, no last-login)
    still sends a signed-in cookie. The session goes back to what the request arrived with."""
    arrived = current_app.session_interface.open_session(current_app, request)
    session.clear()
    session.update(arrived or {})
    session.modified = False  # the content is what the browser already holds: nothing to send


def init_app(app):
    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return _render(400, "The form expired or was not sent from Lobby. Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(error):
        if error.code is None or error.code < 400:
            return error
        response = _render(error.code, error.description if getattr(error, "shown", False) else None)
        if error.code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    def database_unavailable(error):
        db.session.rollback()
        _discard_session_changes()
        app.logger.error("database unavailable: %s", error.orig.__class__.__name__ if error.orig else error)
        return _render(503)

    @app.errorhandler(Exception)
    def unexpected_error(error):
        db.session.rollback()
        _discard_session_changes()
        app.logger.exception("unhandled error")
        return _render(500)
