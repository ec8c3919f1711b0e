"""Flow 2: the admin adds the SAML2 SSO provider in the browser, as the customer guide says, and tests it."""
import pytest

from models import settings

from .steps import ADMIN_LOGIN, ADMIN_PASSWORD, make_admin, okta_user, sign_in_at_idp, sign_in_with_password

pytestmark = pytest.mark.browser


def test_admin_adds_saml_provider_from_metadata_file(app, make_user, live_server, idp_server, page, shoot, tmp_path):
    make_admin(make_user)
    # The guide: copy Okta's "Provide the following IDP metadata to your SP provider" box into an .xml file.
    metadata_file = tmp_path / "okta-metadata.xml"
    metadata_file.write_text(idp_server.metadata_xml())
    okta_user(idp_server, ADMIN_LOGIN, name_id="00u1olivia", first="Olivia", last="Office",
              department="Operations", title="Office manager")

    sign_in_with_password(page, live_server, ADMIN_LOGIN, ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin").click()
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Authentication").click()
    page.wait_for_url("**/admin/authentication")
    shoot(page, "authentication-empty")

    # Settings > Authentication > Add provider > SAML2 SSO
    page.get_by_text("Add provider").click()
    page.get_by_role("link", name="SAML2 SSO").click()
    page.wait_for_url("**/admin/authentication/saml2")
    activate = page.get_by_label("Activate the SAML2 SSO")
    activate.check()
    page.get_by_label("Metadata File", exact=True).check()
    page.get_by_label("Metadata XML file").set_input_files(str(metadata_file))
    page.get_by_label("SAML2 Label").fill("SSO Login")
    assert page.get_by_label("Synchronize Groups").input_value() == ""  # the guide: leave it empty with SCIM
    shoot(page, "saml-form-filled")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/admin/authentication")
    assert "SAML2 SSO settings saved." in page.locator("main").inner_text()

    # What was parsed from the file, and the values to paste into Okta.
    main = page.locator("main")
    assert idp_server.idp.entity_id in main.inner_text()
    assert idp_server.sso_url in main.inner_text()
    assert page.locator("#sp-acs-url").inner_text() == live_server.url + "/internal-api/auth/integrations/saml2/callback"
    assert page.locator("#sp-entity-id").inner_text() == live_server.url + "/auth/saml2"
    assert page.locator("#sp-nameid-format").inner_text() == "Persistent"
    assert page.locator("#sp-relay-state").inner_text() == "initiate-sp-login"
    statements = page.locator("table.statements").inner_text()
    for name in ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", "department", "jobtitle"):
        assert name in statements
    shoot(page, "authentication-saved")
    with app.app_context():
        saved = settings.section("saml")
        assert saved["active"] and saved["label"] == "SSO Login"
        assert saved["idp_entity_id"] == idp_server.idp.entity_id and saved["idp_sso_url"] == idp_server.sso_url

    # The guide: "Assign a test user to the application and test the connection".
    page.get_by_role("button", name="Test sign-in").click()
    page.wait_for_url(lambda url: url.startswith(idp_server.sso_url))
    shoot(page, "okta-sign-in-form")
    sign_in_at_idp(page, idp_server, ADMIN_LOGIN)
    page.wait_for_url(lambda url: "/admin/authentication?test=" in url)
    result = page.locator("section.test-result")
    assert "Test sign-in worked" in result.inner_text()
    assert "00u1olivia" in result.inner_text()
    assert "Office manager" in result.inner_text()  # the attributes as received
    shoot(page, "test-sign-in-worked")
    # It answered the AuthnRequest Lobby sent for the test, and nothing else.
    assert len(idp_server.seen.authn_requests) == 1
    assert idp_server.seen.responses[0][0] == idp_server.seen.authn_requests[0]
