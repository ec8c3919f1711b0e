"""Request-level safety shared by every blueprint: addresses, redirects, headers."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import current_app, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import BadRequest

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def client_address() -> str | None:
    """The client's IP: the socket's, or the one a trusted proxy put in X-Forwarded-For.

    An entry there that is not an IP address (a misconfigured proxy count lets the client's own
    text through) is not believed: the socket's address is used instead."""
    hops = current_app.config.get("TRUSTED_PROXIES", 0)
    if hops:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            try:
                return str(ipaddress.ip_address(forwarded[-hops]))
            except ValueError:
                pass
    return request.remote_addr


class UndecodableQuery(BadRequest):
    """A query string holding raw bytes that are not UTF-8 (not percent-encoded ones: those decode)."""
    description = ("The address's query string is not valid UTF-8. Percent-encode characters outside ASCII "
                   "(for example, é as %C3%A9).")
    shown = True  # the error page shows this description rather than the generic one


def refuse_undecodable_query():
    """Before anything reads ``request.args``: Werkzeug raises UnicodeDecodeError there for such a
    query string, which would end as a 500 instead of the client's own error."""
    try:
        request.query_string.decode("utf-8")
    except UnicodeDecodeError:
        raise UndecodableQuery() from None


class NulCharacter(BadRequest):
    """A NUL character in the address or a form: no field on either database can hold one
    (PostgreSQL refuses it in text), so it is the client's error, said before a page trips on it."""
    description = "The request contains a NUL character (%00), which nothing in Lobby can hold. Remove it and try again."
    shown = True


def refuse_nul_characters():
    """SCIM says the same in its own error format (its hooks), and the ACS records a refused
    sign-in for anything it cannot use: both are left to themselves."""
    if request.path.startswith("/api/scim") or request.endpoint == "saml.acs":
        return
    if "\x00" in request.path or b"%00" in request.query_string or b"\x00" in request.query_string:
        raise NulCharacter()
    if request.method == "POST" and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if any("\x00" in value for values in request.form.listvalues() for value in values):
            raise NulCharacter()


def request_path_for_log() -> str:
    """The request's path and query string as text, whatever bytes the query string holds."""
    query = request.query_string.decode("utf-8", "replace")
    return request.path + ("?" + query if query else "")


def safe_next_path(target: str | None, default: str = "/") -> str:
    """A same-site path to go to after sign-in; anything else becomes ``default``.

    Accepts only absolute paths: no scheme, no host, no ``//`` or ``/\\`` that a
    browser would read as another host, no control characters.
    """
    if not target or not isinstance(target, str) or len(target) > 2048:
        return default
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in target) or "\\" in target:
        return default
    if not target.startswith("/") or target.startswith("//"):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except under /api/: SCIM clients authenticate with a
    bearer token, so a cookie sent there is not read (and no cookie is ever set there)."""

    def open_session(self, app, request):
        if request.path.startswith("/api/"):
            return self.null_session_class()
        return super().open_session(app, request)


SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


def add_security_headers(response):
    """The headers every answer carries, added unless the view set its own. Runs on every request
    (every SCIM call among them): the response's headers are looked through once."""
    wanted = SECURITY_HEADERS
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        wanted += (("Strict-Transport-Security", "max-age=31536000"),)
    if request.endpoint and not request.endpoint.startswith("static"):
        wanted += (("Cache-Control", "no-store"),)
    headers = response.headers
    present = {key.lower() for key, _value in headers.items()}
    for name, value in wanted:
        if name.lower() not in present:
            headers.add(name, value)
    return response


def wants_json() -> bool:
    """API paths and clients that prefer JSON get JSON errors; browsers get pages."""
    if request.path.startswith(("/api/", "/internal-api/")) and not request.path.startswith(
            "/internal-api/auth/integrations/saml2"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
