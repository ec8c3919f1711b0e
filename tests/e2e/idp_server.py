"""An Okta-like identity provider as a small web app, for the browser tests.

It runs in a thread of the test process on 127.0.0.1 and is reached by the
browser as http://localhost:PORT: another *site* than Lobby's
http://127.0.0.1:PORT, so the POST to Lobby's ACS is cross-site as it is with
the real Okta (Lax cookies are not sent with it). The signing is TestIdP's
(xmlsec1, its own key); this module adds what a browser sees of an IdP:

- GET  /metadata           the metadata XML (SSO URL pointing here) the admin uploads
- GET  /sso                the HTTP-Redirect binding: reads Lobby's AuthnRequest, asks for a
                           username and password, or answers at once when the IdP session
                           cookie says who the browser is
- POST /sso                the login form
- GET  /app/lobby/tile     Okta's dashboard tile: an unsolicited Response with RelayState
                           ``initiate-sp-login``
Every Response leaves through an auto-submitting HTTP-POST form, as Okta's does.

    with IdPServer(lobby_url) as idp:
        idp.add_user("erin", "pw", name_id="00u1", attributes=okta_attributes(...))
        idp.tamper = lambda xml: xml.replace(...)   # changes the next Responses after signing
"""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Callable

import defusedxml.ElementTree as SafeET
from flask import Flask, Response, abort, make_response, render_template_string, request
from werkzeug.serving import make_server

from tests.saml_idp import ACS_PATH, TestIdP, encode, make_key_pair, read_authn_request

SESSION_COOKIE = "okta_test_sid"  # not Lobby's cookie name: both live on loopback
IDP_INITIATED_RELAY_STATE = "initiate-sp-login"
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} · Test Okta</title>
<style>
 body { font-family: sans-serif; background: #f4f5f7; margin: 0; }
 .box { width: 340px; margin: 60px auto; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 28px; }
 .brand { color: #00297a; font-weight: bold; font-size: 1.4em; margin-bottom: 6px; }
 label { display: block; margin-top: 14px; } input[type=text], input[type=password] { width: 100%; padding: 8px; box-sizing: border-box; }
 button { margin-top: 18px; width: 100%; padding: 10px; background: #00297a; color: #fff; border: 0; border-radius: 4px; }
 .error { color: #b00020; } .muted { color: #666; font-size: .9em; }
</style></head>
<body><div class="box"><div class="brand">Test Okta</div>{{ body|safe }}</div></body></html>"""

LOGIN_BODY = """
<h1>Sign in</h1>
<p class="muted">to continue to <strong>{{ app_name }}</strong></p>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">
  <input type="hidden" name="pending" value="{{ pending }}">
  <label for="okta-username">Username</label><input type="text" id="okta-username" name="username" value="{{ username }}" autofocus>
  <label for="okta-password">Password</label><input type="password" id="okta-password" name="password">
  <button type="submit">Sign in to Okta</button>
</form>"""

# Okta's own page does the same: a form with the Response, submitted by an inline script.
POST_BODY = """
<p>Signing you in to {{ app_name }} …</p>
<form method="post" action="{{ acs }}" id="saml-post">
  <input type="hidden" name="SAMLResponse" value="{{ saml_response }}">
  {% if relay_state is not none %}<input type="hidden" name="RelayState" value="{{ relay_state }}">{% endif %}
  <noscript><button type="submit">Continue</button></noscript>
</form>
<script>document.getElementById("saml-post").submit();</script>"""


@dataclass
class IdPUser:
    username: str
    password: str
    name_id: str
    attributes: dict


@dataclass
class Pending:
    """A sign-in the IdP is working on: an AuthnRequest to answer, or a tile click (request_id None)."""
    request_id: str | None
    relay_state: str | None


@dataclass
class Seen:
    """What the IdP received, for the tests to assert on."""
    authn_requests: list = field(default_factory=list)  # AuthnRequest IDs, in order
    responses: list = field(default_factory=list)  # (in_response_to, relay_state, username)


class IdPServer:
    __test__ = False

    def __init__(self, lobby_url: str, *, app_name: str = "Lobby"):
        self.lobby_url = lobby_url.rstrip("/")
        self.audience = self.lobby_url + "/auth/saml2"
        self.acs_url = self.lobby_url + ACS_PATH
        self.app_name = app_name
        self.users: dict[str, IdPUser] = {}
        self.sessions: dict[str, str] = {}  # IdP session cookie -> username
        self.pending: dict[str, Pending] = {}
        self.seen = Seen()
        # Applied to every Response after it is signed (flow 7: an attacker in the middle).
        self.tamper: Callable[[str], str] | None = None
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._make_app(), threaded=True)
        self.port = self._server.port
        self.url = f"http://localhost:{self.port}"
        self.sso_url = self.url + "/sso"
        self.tile_url = self.url + "/app/lobby/tile"
        self.idp = TestIdP(entity_id=f"http://www.okta.com/exk{self.port}lobbye2e", sso_url=self.sso_url,
                           keys=make_key_pair("lobby-e2e-okta"))
        self._thread: threading.Thread | None = None

    # -- the tests' side -----------------------------------------------------------------
    def add_user(self, username: str, password: str, *, name_id: str, attributes: dict) -> IdPUser:
        user = IdPUser(username, password, name_id, attributes)
        self.users[username] = user
        return user

    def metadata_xml(self) -> str:
        return self.idp.metadata_xml(sso_url=self.sso_url)

    def start(self) -> "IdPServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-idp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=10)

    def __enter__(self) -> "IdPServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the browser's side ----------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("test_idp")

        def page(title: str, body: str, status: int = 200, **values) -> Response:
            inner = render_template_string(body, app_name=self.app_name, **values)
            return make_response(render_template_string(PAGE, title=title, body=inner), status)

        def signed_in_user() -> IdPUser | None:
            username = self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
            return self.users.get(username) if username else None

        def login_form(pending_id: str, error: str = "", username: str = "", status: int = 200) -> Response:
            return page("Sign in", LOGIN_BODY, status, action=self.sso_url, pending=pending_id, error=error,
                        username=username)

        def answer(pending: Pending, user: IdPUser) -> Response:
            xml = self.idp.response(pending.request_id, name_id=user.name_id, attributes=user.attributes,
                                    audience=self.audience, destination=self.acs_url, recipient=self.acs_url,
                                    after_signing=self.tamper)
            with self._lock:
                self.seen.responses.append((pending.request_id, pending.relay_state, user.username))
            return page("Signing in", POST_BODY, acs=self.acs_url, saml_response=encode(xml),
                        relay_state=pending.relay_state)

        def remember(pending: Pending) -> str:
            pending_id = secrets.token_urlsafe(12)
            with self._lock:
                self.pending[pending_id] = pending
            return pending_id

        @app.get("/metadata")
        def metadata():
            return Response(self.metadata_xml(), mimetype="application/xml")

        @app.get("/sso")
        def sso_redirect():
            if "SAMLRequest" not in request.args:
                abort(400, "no SAMLRequest")
            authn = read_authn_request(request.url)
            root = SafeET.fromstring(authn.xml)
            # Okta refuses AuthnRequests whose ACS URL or issuer is not the app's; so does this IdP.
            issuer = root.findtext(f"{SAML}Issuer")
            acs = root.get("AssertionConsumerServiceURL")
            if issuer != self.audience or (acs is not None and acs != self.acs_url):
                return page("Error", "<p class='error'>AuthnRequest not for this app: issuer {{ i }}, ACS {{ a }}</p>",
                            400, i=issuer, a=acs)
            with self._lock:
                self.seen.authn_requests.append(authn.id)
            pending = Pending(authn.id, request.args.get("RelayState"))
            user = signed_in_user()
            if user is not None:  # an IdP session: no form, straight back to Lobby
                return answer(pending, user)
            return login_form(remember(pending))

        @app.post("/sso")
        def sso_login():
            with self._lock:
                pending = self.pending.get(request.form.get("pending", ""))
            if pending is None:
                return page("Error", "<p class='error'>This sign-in expired. Start again.</p>", 400)
            username = request.form.get("username", "")
            user = self.users.get(username)
            if user is None or not secrets.compare_digest(user.password, request.form.get("password", "")):
                return login_form(request.form["pending"], "Unable to sign in", username, 401)
            with self._lock:
                del self.pending[request.form["pending"]]
            sid = secrets.token_urlsafe(16)
            with self._lock:
                self.sessions[sid] = user.username
            reply = answer(pending, user)
            reply.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Lax")
            return reply

        @app.get("/app/lobby/tile")
        def tile():
            # The dashboard tile: IdP-initiated, no AuthnRequest, the app's Default RelayState.
            pending = Pending(None, IDP_INITIATED_RELAY_STATE)
            user = signed_in_user()
            if user is not None:
                return answer(pending, user)
            return login_form(remember(pending))

        return app
