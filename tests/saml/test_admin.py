"""Settings > Authentication: add the SAML2 provider as the guide says, validation messages, the values
to paste into Okta, Test sign-in, and the email + password switch."""
import html
import io
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from models import AuditEvent, SamlOutstandingRequest, db, settings

from ..conftest import csrf_token
from ..saml_idp import (ACS_URL, SP_ENTITY_ID, TestIdP, configure_saml, make_key_pair, post_response,
                        read_authn_request)

PAGE = "/admin/authentication"
SAML_PAGE = "/admin/authentication/saml2"
DEFAULT_MAP = {
    "attr_given_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    "attr_family_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    "attr_email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "attr_user_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "attr_display_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "attr_department": "department", "attr_title": "jobtitle",
}


@pytest.fixture
def as_admin(client, auth, admin):
    auth.login_as(admin)
    return client


def form(client, **fields):
    data = {"csrf_token": csrf_token(client, SAML_PAGE), "active": "y", "method": "metadata_file",
            "label": "SSO Login", "group_attribute": "", "jit_create": "y", "clock_skew_seconds": "120",
            **DEFAULT_MAP}
    data.update(fields)
    return {key: value for key, value in data.items() if value is not None}


def upload(client, metadata: str | bytes, **fields):
    raw = metadata.encode() if isinstance(metadata, str) else metadata
    data = form(client, **fields)
    data["metadata_file"] = (io.BytesIO(raw), "okta-metadata.xml")
    return client.post(SAML_PAGE, data=data, content_type="multipart/form-data")


def saml_settings(app):
    with app.app_context():
        return settings.section("saml")


def test_add_provider_menu_when_none(as_admin):
    page = as_admin.get(PAGE).get_data(as_text=True)
    assert "Add provider" in page and f'href="{SAML_PAGE}">SAML2 SSO</a>' in page
    form_page = as_admin.get(SAML_PAGE).get_data(as_text=True)
    for label in ("Activate the SAML2 SSO", "Metadata File", "Metadata URL", "Manual", "SAML2 Label",
                  "Synchronize Groups"):
        assert label in form_page


def test_values_to_paste_into_okta_with_copy_buttons(as_admin):
    page = as_admin.get(PAGE).get_data(as_text=True)
    for label, value, element in [("Single sign on URL", ACS_URL, "sp-acs-url"),
                                  ("Audience URI (SP Entity ID)", SP_ENTITY_ID, "sp-entity-id"),
                                  ("Name ID format", "Persistent", "sp-nameid-format"),
                                  ("Default RelayState", "initiate-sp-login", "sp-relay-state")]:
        assert label in page
        assert f'<code id="{element}">{value}</code>' in page
        assert f'data-copy="{element}"' in page
    # The guide's attribute statements: name, name format, Okta value.
    rows = re.findall(r'<code id="attr-[a-z_]+">([^<]+)</code>.*?<td>([^<]+)</td>\s*<td><code>([^<]+)</code>',
                      page, re.S)
    assert set(rows) == {
        ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", "URI Reference", "user.firstName"),
        ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "URI Reference", "user.email"),
        ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "URI Reference", "user.login"),
        ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname", "URI Reference", "user.lastName"),
        ("department", "Basic", "user.department"),
        ("jobtitle", "Basic", "user.title"),
        ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "URI Reference", "user.displayName"),
    }


def test_metadata_file_as_the_guide_says(app, as_admin, idp):
    """Activate, method Metadata File, upload, SAML2 Label "SSO Login", Synchronize Groups empty, save."""
    reply = upload(as_admin, idp.metadata_xml())
    assert reply.status_code == 302 and reply.headers["Location"] == PAGE
    values = saml_settings(app)
    assert values["active"] and values["method"] == "metadata_file" and values["label"] == "SSO Login"
    assert values["idp_entity_id"] == idp.entity_id and values["idp_sso_url"] == idp.sso_url
    assert values["idp_certificates"] == [idp.keys.cert_pem]
    assert values["group_attribute"] == "" and values["provider_changed_at"]
    page = as_admin.get(PAGE).get_data(as_text=True)
    assert idp.entity_id in page and idp.sso_url in page
    assert "CN=lobby-test-idp, O=Okta" in page
    assert re.search(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", page)  # SHA-256 fingerprint
    # The button shows on /login.
    login = app.test_client().get("/login").get_data(as_text=True)
    assert "SSO Login" in login


def test_metadata_pasted_from_a_web_page_with_blank_lines(app, as_admin, idp):
    assert upload(as_admin, "\ufeff\n\n  " + idp.metadata_xml() + "\n").status_code == 302


def test_settings_change_is_audited_with_a_diff(app, as_admin, idp):
    upload(as_admin, idp.metadata_xml())
    upload(as_admin, b"", label="Sign in with Okta")  # keeps the stored metadata file
    with app.app_context():
        events = AuditEvent.query.filter_by(action="settings.update", target="saml").order_by(AuditEvent.id).all()
        assert len(events) == 2 and events[0].actor == "admin@example.com"
        first, second = events[0].details, events[1].details
        assert first["idp_entity_id"] == {"old": "", "new": idp.entity_id}
        assert first["metadata_xml"]["new"].startswith("sha256:")  # not the whole document
        assert re.match(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$", first["idp_certificates"]["new"][0])
        assert second == {"label": {"old": "SSO Login", "new": "Sign in with Okta"}}


METADATA_ERRORS = [
    ("<md:EntityDescriptor", "The metadata is not valid XML (line 1, column"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "DOCTYPE or entity declaration"),
    ('<html><body>Okta</body></html>', "The XML is not SAML metadata: it has no EntityDescriptor."),
    ('<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example">'
     '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></md:EntityDescriptor>',
     "The metadata has no IdP descriptor (IDPSSODescriptor)."),
    ("", "Choose the metadata XML file to upload."),
]


@pytest.mark.parametrize("metadata, message", METADATA_ERRORS)
def test_metadata_file_errors_say_exactly_what_is_wrong(app, as_admin, metadata, message):
    reply = upload(as_admin, metadata)
    assert reply.status_code == 400
    assert message in reply.get_data(as_text=True)
    assert not saml_settings(app)["idp_entity_id"]


def test_metadata_without_signing_certificate(app, as_admin, idp):
    xml = re.sub(r'<md:KeyDescriptor use="signing">.*?</md:KeyDescriptor>', "", idp.metadata_xml())
    reply = upload(as_admin, xml)
    assert reply.status_code == 400
    assert "The metadata has no signing certificate" in reply.get_data(as_text=True)


def test_metadata_with_only_an_encryption_certificate(app, as_admin, idp):
    xml = idp.metadata_xml().replace('use="signing"', 'use="encryption"')
    assert "no signing certificate" in upload(as_admin, xml).get_data(as_text=True)


def test_expired_certificate_is_refused(app, as_admin):
    idp = TestIdP(keys=make_key_pair("expired-idp", days=-1, not_before_days=-400))
    reply = upload(as_admin, idp.metadata_xml())
    assert reply.status_code == 400
    assert "The certificate CN=expired-idp, O=Okta expired on" in reply.get_data(as_text=True)


def test_certificate_expiring_within_30_days_is_saved_with_a_warning(app, as_admin):
    idp = TestIdP(keys=make_key_pair("soon-idp", days=10))
    reply = upload(as_admin, idp.metadata_xml())
    assert reply.status_code == 302
    page = as_admin.get(PAGE).get_data(as_text=True)
    assert "The certificate CN=soon-idp, O=Okta expires on" in page
    assert re.search(r"\(in (9|10) days\)", page)
    assert saml_settings(app)["idp_entity_id"] == idp.entity_id


def test_tls_server_certificate_is_refused(app, as_admin):
    idp = TestIdP(keys=make_key_pair("idp.example.com", tls_server=True))
    reply = upload(as_admin, idp.metadata_xml())
    assert reply.status_code == 400
    assert "looks like a TLS server (website) certificate" in reply.get_data(as_text=True)


def test_manual_method_with_two_certificates(app, as_admin, idp):
    next_key = make_key_pair("next-idp-key")
    reply = as_admin.post(SAML_PAGE, data=form(
        as_admin, method="manual", idp_entity_id=idp.entity_id, idp_sso_url=idp.sso_url,
        idp_certificates=idp.keys.cert_pem + "\n" + next_key.cert_pem))
    assert reply.status_code == 302, reply.get_data(as_text=True)
    values = saml_settings(app)
    assert values["method"] == "manual" and values["idp_certificates"] == [idp.keys.cert_pem, next_key.cert_pem]
    # Either certificate verifies (rollover): sign with the second one.
    rolled = TestIdP(entity_id=idp.entity_id, sso_url=idp.sso_url, keys=next_key)
    browser = app.test_client()
    request = read_authn_request(browser.get("/internal-api/auth/integrations/saml2/login").headers["Location"])
    assert post_response(browser, rolled.response(request.id), request.relay_state).headers["Location"] == "/"


@pytest.mark.parametrize("fields, message", [
    (dict(idp_entity_id=""), "Enter the IdP entity ID"),
    (dict(idp_sso_url="not a url"), "is not a web address"),
    (dict(idp_certificates=""), "Paste at least one signing certificate"),
    (dict(idp_certificates="-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----"),
     "not valid base64"),
    (dict(idp_certificates="-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----"),
     "not an X.509 certificate"),
    (dict(label=""), "This field is required."),
])
def test_manual_method_errors(app, as_admin, idp, fields, message):
    data = dict(method="manual", idp_entity_id=idp.entity_id, idp_sso_url=idp.sso_url,
                idp_certificates=idp.keys.cert_pem)
    data.update(fields)
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, **data))
    assert reply.status_code == 400
    assert message in reply.get_data(as_text=True)


class MetadataServer:
    """A local HTTP server serving IdP metadata (the Metadata URL method)."""

    def __init__(self):
        self.body = b""
        self.status = 200
        self.redirect_to = None  # a Location: answer 302 with it instead of the body
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                if outer.redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", outer.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/app/exk1/sso/saml/metadata"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metadata_server():
    server = MetadataServer()
    yield server
    server.close()


def test_metadata_url_fetched_on_save_and_refreshed(app, as_admin, idp, metadata_server):
    metadata_server.body = idp.metadata_xml().encode()
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url", metadata_url=metadata_server.url))
    assert reply.status_code == 302, reply.get_data(as_text=True)
    values = saml_settings(app)
    assert values["idp_entity_id"] == idp.entity_id and values["metadata_url"] == metadata_server.url
    assert values["metadata_fetched_at"]
    changed_at = values["provider_changed_at"]
    # The IdP rolls its key over; Refresh fetches the metadata again.
    new_key = make_key_pair("rolled-over")
    metadata_server.body = idp.metadata_xml(certificates=[idp.keys, new_key]).encode()
    page = as_admin.get(PAGE).get_data(as_text=True)
    assert "Refresh metadata" in page
    token = csrf_token(as_admin, PAGE)
    assert as_admin.post(PAGE + "/saml2/refresh", data={"csrf_token": token}).status_code == 302
    values = saml_settings(app)
    assert values["idp_certificates"] == [idp.keys.cert_pem, new_key.cert_pem]
    assert values["provider_changed_at"] > changed_at


@pytest.mark.parametrize("status, body, message", [
    (404, b"not here", "answered HTTP 404"),
    (200, b"<html>login page</html>", "not SAML metadata"),
    (200, b"x" * (1024 * 1024 + 10), "more than 1024 KB"),
])
def test_metadata_url_errors(app, as_admin, metadata_server, status, body, message):
    metadata_server.status, metadata_server.body = status, body
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url", metadata_url=metadata_server.url))
    assert reply.status_code == 400 and message in reply.get_data(as_text=True)


def test_metadata_url_redirect_followed(app, as_admin, idp, metadata_server):
    target = MetadataServer()
    try:
        target.body = idp.metadata_xml().encode()
        metadata_server.redirect_to = target.url
        reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url", metadata_url=metadata_server.url))
        assert reply.status_code == 302, reply.get_data(as_text=True)
        assert saml_settings(app)["idp_entity_id"] == idp.entity_id
        assert (metadata_server.requests, target.requests) == (1, 1)
    finally:
        target.close()


@pytest.mark.parametrize("address, kind", [
    ("169.254.169.254", "points at 169.254.169.254, a link-local address"),
    ("[fe80::1]", "points at fe80::1, a link-local address"),
    ("0.0.0.0", "the unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("240.0.0.1", "a reserved address"),
    ("[::ffff:169.254.169.254]", "a link-local address"),
    ("[fd00:ec2::254]", "AWS's instance metadata address range"),
])
def test_metadata_url_never_fetched_from_link_local_or_reserved_addresses(app, as_admin, metadata_server, address,
                                                                          kind):
    """Cloud instance metadata (credentials) lives on link-local addresses: neither the URL given
    nor a redirect may lead there. Nothing is saved."""
    before = saml_settings(app)
    url = f"http://{address}/latest/meta-data/iam/security-credentials/"
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url", metadata_url=url))
    page = html.unescape(reply.get_data(as_text=True))
    assert reply.status_code == 400 and "Lobby does not fetch from it" in page and kind in page
    metadata_server.redirect_to = url
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url", metadata_url=metadata_server.url))
    assert reply.status_code == 400 and "Lobby does not fetch from it" in reply.get_data(as_text=True)
    assert metadata_server.requests == 1
    assert saml_settings(app) == before


def test_metadata_url_redirects_bounded_and_checked(app, as_admin, metadata_server):
    metadata_server.redirect_to = metadata_server.url  # a loop
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url", metadata_url=metadata_server.url))
    assert reply.status_code == 400 and "redirected more than 5 times" in reply.get_data(as_text=True)
    assert metadata_server.requests == 6
    metadata_server.redirect_to = "file:///etc/passwd"
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url", metadata_url=metadata_server.url))
    assert reply.status_code == 400 and "is not a web address" in reply.get_data(as_text=True)


def test_metadata_url_unknown_host(app, as_admin):
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url",
                                               metadata_url="https://idp.invalid/metadata"))
    assert reply.status_code == 400 and "could not be found (DNS)" in reply.get_data(as_text=True)


def test_metadata_url_through_a_proxy_is_not_resolved_here(app, as_admin, monkeypatch):
    """Behind an outbound proxy this machine may not resolve outside names at all: the proxy does."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url",
                                               metadata_url="https://idp.invalid/metadata"))
    text = reply.get_data(as_text=True)
    assert reply.status_code == 400 and "could not be fetched (ProxyError)" in text and "DNS" not in text


def test_metadata_url_unreachable(app, as_admin):
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, method="metadata_url",
                                               metadata_url="http://127.0.0.1:9/metadata"))
    assert reply.status_code == 400 and "could not be fetched" in reply.get_data(as_text=True)


# --- Test sign-in ----------------------------------------------------------------------------------

def start_test(as_admin):
    reply = as_admin.post(PAGE + "/saml2/test", data={"csrf_token": csrf_token(as_admin, PAGE)})
    assert reply.status_code == 302
    return read_authn_request(reply.headers["Location"])


def test_test_sign_in_reports_success(app, as_admin, saml):
    request = start_test(as_admin)
    with app.app_context():
        assert db.session.get(SamlOutstandingRequest, request.id).purpose == "test"
    reply = post_response(as_admin, saml.response(request.id, name_id="00u1ada",
                                                  attributes={"http://schemas.xmlsoap.org/ws/2005/05/identity/"
                                                              "claims/upn": "admin@example.com"}),
                          request.relay_state)
    assert reply.status_code == 303 and reply.headers["Location"].startswith(PAGE + "?test=")
    page = as_admin.get(reply.headers["Location"]).get_data(as_text=True)
    assert "Test sign-in worked" in page and "00u1ada" in page
    assert saml_settings(app)["admin_sso_verified_at"]


def test_test_sign_in_reports_the_failure_reason(app, as_admin, saml):
    request = start_test(as_admin)
    reply = post_response(as_admin, saml.response(request.id, audience="https://wrong.example"),
                          request.relay_state)
    assert reply.headers["Location"].startswith(PAGE + "?test=")
    page = as_admin.get(reply.headers["Location"]).get_data(as_text=True)
    assert "Test sign-in failed" in page and "Wrong Audience" in page
    assert as_admin.get("/").status_code == 200  # the admin is still signed in


def test_test_sign_in_as_an_employee_keeps_the_admin_session(app, as_admin, saml, admin):
    request = start_test(as_admin)
    reply = post_response(as_admin, saml.response(request.id), request.relay_state)
    page = as_admin.get(reply.headers["Location"]).get_data(as_text=True)
    assert "Test sign-in worked" in page
    with as_admin.session_transaction() as session:
        assert session["_user_id"].startswith(admin.id + ":")
    assert not saml_settings(app)["admin_sso_verified_at"]  # an employee signed in, not an admin


def test_test_sign_in_needs_a_configured_provider(app, as_admin):
    reply = as_admin.post(PAGE + "/saml2/test", data={"csrf_token": csrf_token(as_admin, PAGE)},
                          follow_redirects=True)
    assert "Activate SAML2 SSO and configure the identity provider before testing." in reply.get_data(as_text=True)


# --- the password form switch ------------------------------------------------------------------------

def switch_password(as_admin, on: bool):
    data = {"csrf_token": csrf_token(as_admin, PAGE)}
    if on:
        data["password_login"] = "y"
    return as_admin.post(PAGE + "/password", data=data, follow_redirects=True)


def password_login(app):
    with app.app_context():
        return settings.get("auth", "password_login")


def test_password_form_cannot_be_switched_off_without_sso(app, as_admin):
    page = switch_password(as_admin, False).get_data(as_text=True)
    assert "Email + password sign-in stays on: SAML2 SSO is not active" in page
    assert password_login(app) is True


def test_password_form_off_needs_an_admin_sso_sign_in_since_the_last_change(app, as_admin, saml, admin):
    page = switch_password(as_admin, False).get_data(as_text=True)
    assert ("Email + password sign-in stays on: no admin has completed an SSO sign-in since the SAML provider "
            "was last changed.") in page
    assert password_login(app) is True
    # An admin signs in with SSO ...
    request = start_test(as_admin)
    post_response(as_admin, saml.response(request.id, name_id="00u1ada", attributes={
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "admin@example.com"}), request.relay_state)
    page = switch_password(as_admin, False).get_data(as_text=True)
    assert "Email + password sign-in is off" in page
    assert password_login(app) is False
    with app.app_context():
        event = AuditEvent.query.filter_by(action="settings.update", target="auth").one()
        assert event.details == {"password_login": {"old": True, "new": False}}
    # /login now shows only the SSO button (and goes straight to the IdP).
    visitor = app.test_client()
    assert visitor.get("/login").headers["Location"].startswith("/internal-api/auth/integrations/saml2/login")
    assert visitor.get("/login?sso_error=1").get_data(as_text=True).count('name="password"') == 0


def test_provider_change_requires_a_new_sso_proof(app, as_admin, saml, admin):
    with app.app_context():
        settings.set("saml", "admin_sso_verified_at", "2026-01-01T00:00:00")
        settings.set("saml", "provider_changed_at", "2025-12-01T00:00:00")
        db.session.commit()
    other = TestIdP(entity_id="http://www.okta.com/exkNEW", keys=make_key_pair("new-idp"))
    assert upload(as_admin, other.metadata_xml()).status_code == 302
    page = switch_password(as_admin, False).get_data(as_text=True)
    assert "no admin has completed an SSO sign-in since the SAML provider was last changed" in page


def test_deactivating_saml_while_it_is_the_only_way_in_is_refused(app, as_admin, saml):
    with app.app_context():
        settings.set("auth", "password_login", False)
        db.session.commit()
    reply = as_admin.post(SAML_PAGE, data=form(as_admin, active=None))
    assert reply.status_code == 400
    assert "turn on &#34;Allow email + password sign-in&#34; before deactivating it" in reply.get_data(as_text=True)
    assert saml_settings(app)["active"] is True


def test_cli_turns_the_password_form_back_on(app, saml):
    with app.app_context():
        settings.set("auth", "password_login", False)
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["auth", "enable-password-login"])
    assert result.exit_code == 0 and password_login(app) is True
