"""Flight recorder: real rejected SAML Responses and failed SCIM requests, shown with reasons and no secrets."""
import json

from flask.testing import FlaskClient

from models import ScimToken, db

from ..saml_idp import TestIdP, configure_saml, post_response, start_login
from .conftest import add_saml_response, add_scim_request


def rejected_sign_in(app, idp, **response_options) -> str:
    """An employee's browser runs into a refused Response; returns the reference their error page shows."""
    browser = FlaskClient(app, use_cookies=True)
    request = start_login(browser)
    reply = post_response(browser, idp.response(request.id, **response_options), request.relay_state)
    assert reply.status_code == 303
    return reply.headers["Location"].split("ref=")[1][:8]


def test_reference_from_the_error_page_opens_the_rejected_response(app, admin_client):
    idp = TestIdP()
    configure_saml(app, idp)
    reference = rejected_sign_in(app, idp, audience="https://lobby.test/auth/saml2x")

    found = admin_client.get("/admin/flight/saml", query_string={"reference": reference.lower()})
    assert found.status_code == 302
    page = admin_client.get(found.headers["Location"]).get_data(as_text=True)
    assert "Verdict: rejected" in page
    assert "https://lobby.test/auth/saml2x" in page  # the reason names what came and what was expected
    assert idp.entity_id in page and "00u1erinlobbytest" in page
    # The Response is shown decoded and indented, as text: markup escaped, never live.
    assert "&lt;saml2:Audience&gt;https://lobby.test/auth/saml2x&lt;/saml2:Audience&gt;" in page
    assert "<saml2:Audience>" not in page
    assert "SignatureValue" in page and "PRIVATE KEY" not in page
    # The same reference finds the audit event, so both stories agree.
    assert f'href="/admin/flight/saml?reference={reference}"' in page


def test_rejected_response_is_listed_with_its_reason(app, admin_client):
    idp = TestIdP()
    configure_saml(app, idp)
    rejected_sign_in(app, idp, audience="https://other.example/saml")
    listing = admin_client.get("/admin/flight/saml").get_data(as_text=True)
    assert "rejected" in listing and "https://other.example/saml" in listing
    only_accepted = admin_client.get("/admin/flight/saml", query_string={"verdict": "accepted"}).get_data(as_text=True)
    assert "https://other.example/saml" not in only_accepted


def test_unknown_reference_points_to_the_audit_log(app, admin_client):
    from .conftest import add_event
    add_event(app, "auth.login", outcome="failure", reason="wrong password", reference="PWD23456")
    page = admin_client.get("/admin/flight/saml", query_string={"reference": "PWD23456"}).get_data(as_text=True)
    assert "No SAML Response has the reference" in page
    assert 'href="/admin/audit?reference=PWD23456"' in page


def test_matched_user_and_mapped_attributes(app, admin_client, make_user):
    anna = make_user("anna@example.com", given_name="Anna")
    entry = add_saml_response(app, verdict="accepted", reason=None, user_id=anna.id,
                              mapped={"given_name": "Anna", "email": "anna@example.com"},
                              issue_instant_skew_seconds=200.0)
    page = admin_client.get(f"/admin/flight/saml/{entry}").get_data(as_text=True)
    assert f'href="/admin/users/{anna.id}"' in page
    assert "given_name" in page and "anna@example.com" in page
    assert "the IdP is behind" in page and "more than the 120 s allowed" in page


def test_unparseable_xml_is_shown_as_text(app, admin_client):
    entry = add_saml_response(app, response_xml='<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>')
    page = admin_client.get(f"/admin/flight/saml/{entry}").get_data(as_text=True)
    assert "&lt;!DOCTYPE x" in page and "boom</x>" not in page


def test_failed_scim_request_is_recorded_without_secrets(app, client, auth, admin):
    with app.app_context():
        _row, secret = ScimToken.issue("Okta provisioning", created_by="test")
        db.session.commit()
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "name": {"givenName": "Ben"},
            "password": "Sup3r-secret-pass", "active": True}
    reply = client.post("/api/scim/v2/Users", data=json.dumps(body), content_type="application/scim+json",
                        headers={"Authorization": f"Bearer {secret}"})
    assert reply.status_code == 400

    auth.login_as(admin)
    listing = client.get("/admin/flight/scim", query_string={"outcome": "errors"}).get_data(as_text=True)
    assert "POST /api/scim/v2/Users" in listing and "Okta provisioning" in listing
    entry_link = listing.split('href="/admin/flight/scim/')[1].split('"')[0]
    page = client.get(f"/admin/flight/scim/{entry_link}").get_data(as_text=True)
    assert "Status 400" in page and "userName" in page
    assert "Sup3r-secret-pass" not in page and secret not in page
    assert "&#34;givenName&#34;: &#34;Ben&#34;" in page  # pretty-printed JSON, escaped


def test_secrets_are_redacted_even_if_the_writer_missed_them(app, admin_client):
    entry = add_scim_request(app, method="PATCH", path="/api/scim/v2/Users/1", request_body=json.dumps({
        "Operations": [{"op": "replace", "path": "password", "value": "patched-secret"},
                       {"op": "replace", "value": {"password": "nested-secret", "title": "Boss"}}]}),
        response_body='{"detail": "<b>html</b>", "token": "resp-secret"}')
    page = admin_client.get(f"/admin/flight/scim/{entry}").get_data(as_text=True)
    for secret in ("patched-secret", "nested-secret", "resp-secret"):
        assert secret not in page
    assert "[redacted]" in page and "Boss" in page and "&lt;b&gt;html&lt;/b&gt;" in page


def test_scim_list_shows_only_the_last_n(app, admin_client):
    from models import settings
    with app.app_context():
        settings.set("scim", "flight_recorder_size", 3)
        db.session.commit()
    for i in range(5):
        add_scim_request(app, path=f"/api/scim/v2/Users/n{i}", status=200, error=None)
    listing = admin_client.get("/admin/flight/scim").get_data(as_text=True)
    assert [f"/Users/n{i}" in listing for i in range(5)] == [False, False, True, True, True]


def test_unknown_entries_are_404(admin_client):
    assert admin_client.get("/admin/flight/saml/999").status_code == 404
    assert admin_client.get("/admin/flight/scim/999").status_code == 404


def test_user_page_links_their_saml_responses(app, admin_client, make_user):
    anna = make_user("anna@example.com")
    entry = add_saml_response(app, user_id=anna.id, reason="Anna's Response was refused for a test")
    page = admin_client.get(f"/admin/users/{anna.id}").get_data(as_text=True)
    assert f'href="/admin/flight/saml/{entry}"' in page and "refused for a test" in page
