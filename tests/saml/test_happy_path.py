"""SP-initiated sign-in and the Okta tile (initiate-sp-login), end to end with a signing IdP."""
import re

import pytest

from models import AuditEvent, Identity, SamlOutstandingRequest, SamlResponseLog, User, db

from ..saml_idp import (ACS_URL, LOGIN_PATH, SP_ENTITY_ID, PERSISTENT, post_response, read_authn_request, sign_in,
                        start_login)


@pytest.mark.parametrize("sign", ["assertion", "response", "both"])
def test_sp_initiated_sign_in(app, client, saml, sign):
    request = start_login(client, next_path="/admin/users?q=x")
    assert request.location.startswith(saml.sso_url + "?SAMLRequest=")
    reply = post_response(client, saml.response(request.id, sign=sign), request.relay_state)
    assert reply.status_code == 303, reply.get_data(as_text=True)
    assert reply.headers["Location"] == "/admin/users?q=x"
    home = client.get("/")
    assert home.status_code == 200 and "Erin Employee" in home.get_data(as_text=True)
    with app.app_context():
        user = User.query.filter_by(user_name_key="erin@example.com").one()
        assert user.source == "saml" and user.active
        assert (user.given_name, user.family_name, user.email) == ("Erin", "Employee", "erin@example.com")
        assert (user.department, user.title) == ("Sales", "Account manager")
        assert user.display_name == "Erin Employee"  # the name attribute was empty: "given family"
        assert user.last_login_at is not None
        identity = Identity.query.one()
        assert (identity.provider, identity.identifier, identity.user_id) == (
            saml.entity_id, "00u1erinlobbytest", user.id)
        event = AuditEvent.query.filter_by(action="auth.login").one()
        assert event.outcome == "success" and event.actor == "erin@example.com"
        assert event.details["method"] == "saml" and event.details["created"] is True
        row = SamlResponseLog.query.one()
        assert row.verdict == "accepted" and row.user_id == user.id and row.reference == event.reference
        assert row.attributes["department"] == ["Sales"]
        # The AuthnRequest is consumed.
        assert SamlOutstandingRequest.query.count() == 0


def test_authn_request_asks_for_a_persistent_nameid_at_the_acs(app, client, saml):
    request = start_login(client)
    assert f'AssertionConsumerServiceURL="{ACS_URL}"' in request.xml
    assert f">{SP_ENTITY_ID}</" in request.xml
    assert f'Format="{PERSISTENT}"' in request.xml
    assert f'Destination="{saml.sso_url}"' in request.xml
    assert re.match(r"^[A-Za-z0-9_-]{20,}$", request.relay_state)  # an opaque handle, not the path
    with app.app_context():
        row = db.session.get(SamlOutstandingRequest, request.id)
        assert row.relay_state == request.relay_state and row.next_path == "/" and row.purpose == "login"


def test_session_is_rotated(app, client, saml, employee):
    """Nothing from the session before the sign-in survives it (no session fixation)."""
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    reply = sign_in(client, saml, attributes={"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":
                                              "employee@example.com"})
    assert reply.headers["Location"] == "/"
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"].startswith(employee.id + ":")


def test_okta_tile_starts_a_fresh_sp_initiated_login(app, client, saml):
    """RelayState initiate-sp-login: the Response is not a login; a new AuthnRequest goes to the IdP."""
    unsolicited = saml.response(None)  # what the Okta dashboard tile posts
    reply = _restarted(client, post_response(client, unsolicited, "initiate-sp-login"), saml)
    request = read_authn_request(reply.headers["Location"])
    assert client.get("/").status_code == 302  # not signed in by the tile's Response
    with app.app_context():
        assert User.query.filter_by(user_name_key="erin@example.com").count() == 0
        row = SamlResponseLog.query.one()
        assert row.verdict == "rejected" and "initiate-sp-login" in row.reason
        assert db.session.get(SamlOutstandingRequest, request.id) is not None
    # The IdP answers the new request silently (the person is signed in there) ...
    reply = post_response(client, saml.response(request.id), request.relay_state)
    assert reply.status_code == 303 and reply.headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_okta_tile_response_even_when_valid_for_a_request_is_not_a_login(app, client, saml):
    request = start_login(client)
    _restarted(client, post_response(client, saml.response(request.id), "initiate-sp-login"), saml)
    assert client.get("/").status_code == 302


def test_okta_tile_with_garbage_still_restarts(app, client, saml):
    _restarted(client, post_response(client, None, "initiate-sp-login", raw="%%% not base64 %%%"), saml)


def test_a_forged_tile_post_does_not_touch_the_session(app, client, saml, employee):
    """Any page can make a browser POST to the ACS with RelayState initiate-sp-login: the answer
    sets no cookie, so the person's session (here, signed in) survives it."""
    assert sign_in(client, saml).headers["Location"] == "/"
    stranger = app.test_client()  # the forged cross-site POST carries no session cookie
    reply = post_response(stranger, None, "initiate-sp-login", raw="junk")
    assert reply.status_code == 303 and reply.headers["Location"] == LOGIN_PATH
    assert "Set-Cookie" not in reply.headers
    assert client.get("/").status_code == 200


def _restarted(client, reply, saml):
    """The tile's POST is answered with the SP-initiated login start (a GET, so the browser's own
    session comes along), which sends the browser to the IdP with a new AuthnRequest."""
    assert reply.status_code == 303 and reply.headers["Location"] == LOGIN_PATH
    started = client.get(LOGIN_PATH)
    assert started.status_code == 302 and started.headers["Location"].startswith(saml.sso_url)
    return started


@pytest.mark.parametrize("relay_state", ["", "unknown-handle", "https://evil.example/", "//evil.example"])
def test_unknown_or_foreign_relay_state_lands_on_root(app, client, saml, relay_state):
    request = start_login(client, next_path="/admin/")
    reply = post_response(client, saml.response(request.id), relay_state)
    assert reply.status_code == 303 and reply.headers["Location"] == "/"


def test_relay_state_of_another_request_does_not_redirect_there(app, client, saml):
    first = start_login(client, next_path="/admin/audit")
    second = start_login(client, next_path="/")
    reply = post_response(client, saml.response(second.id), first.relay_state)
    assert reply.headers["Location"] == "/"


@pytest.mark.parametrize("next_path", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_next_is_same_site_only(app, client, saml, next_path):
    request = start_login(client, next_path=next_path)
    with app.app_context():
        assert db.session.get(SamlOutstandingRequest, request.id).next_path == "/"


def test_sso_button_on_login_page(app, client, saml):
    page = client.get("/login?next=/admin/").get_data(as_text=True)
    assert "SSO Login" in page
    assert "/internal-api/auth/integrations/saml2/login?next=/admin/" in page


def test_no_sso_button_when_not_active(app, client, saml):
    from ..saml_idp import configure_saml
    configure_saml(app, saml, active=False)
    assert "SSO Login" not in client.get("/login").get_data(as_text=True)
    reply = client.get("/internal-api/auth/integrations/saml2/login")
    assert reply.status_code == 303 and "kind=not_configured" in reply.headers["Location"]


def test_sp_metadata(client, admin):
    reply = client.get("/auth/saml2")
    assert reply.status_code == 200
    assert reply.mimetype == "application/samlmetadata+xml"
    text = reply.get_data(as_text=True)
    assert f'entityID="{SP_ENTITY_ID}"' in text
    assert f"<md:NameIDFormat>{PERSISTENT}</md:NameIDFormat>" in text
    assert 'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"' in text and f'Location="{ACS_URL}"' in text


def test_urls_come_from_base_url_not_host_header(app, saml):
    client = app.test_client()
    text = client.get("/auth/saml2", headers={"Host": "evil.example"}).get_data(as_text=True)
    assert "evil.example" not in text and SP_ENTITY_ID in text
    request = start_login(client)
    assert "evil.example" not in request.xml


def test_password_off_and_only_sso_goes_straight_to_idp_but_not_after_failure(app, client, saml):
    from models import settings
    with app.app_context():
        settings.set("auth", "password_login", False)
        db.session.commit()
    reply = client.get("/login")
    assert reply.status_code == 302 and reply.headers["Location"].startswith(
        "/internal-api/auth/integrations/saml2/login")
    # A failed SSO sign-in: the failure page marks it, /login then shows the button instead of looping.
    request = start_login(client)
    failed = post_response(client, saml.response(request.id, audience="https://x.example"), request.relay_state)
    client.get(failed.headers["Location"])
    page = client.get("/login")
    assert page.status_code == 200 and "SSO Login" in page.get_data(as_text=True)
