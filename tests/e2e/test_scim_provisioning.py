"""Flow 6: a SCIM token made in the admin UI provisions a user and a group; deactivation ends a browser session."""
import pytest
import requests

from .steps import (ADMIN_LOGIN, ADMIN_PASSWORD, SSO_LABEL, make_admin, okta_user, saml_set_up, sign_in_at_idp,
                    sign_in_with_password)

pytestmark = pytest.mark.browser

SCIM_JSON = "application/scim+json"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def scim(server, token: str, method: str, path: str, body: dict | None = None) -> requests.Response:
    # As Okta sends them: the token in a Bearer header, SCIM JSON both ways.
    reply = requests.request(method, server.url + "/api/scim/v2" + path, json=body, timeout=15,
                             headers={"Authorization": f"Bearer {token}", "Accept": SCIM_JSON})
    return reply


def table_row(page, text: str):
    return page.locator("table.list tbody tr", has_text=text)


def test_scim_token_provisioning_and_deactivation(app, make_user, live_server, idp_server, page, new_page, shoot):
    make_admin(make_user)
    saml_set_up(app, idp_server)
    okta_user(idp_server, "dev.patel@acme.example", name_id="00u1devpatel", first="Dev", last="Patel")

    sign_in_with_password(page, live_server, ADMIN_LOGIN, ADMIN_PASSWORD)
    page.goto(live_server.url + "/admin/")
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Provisioning").click()
    assert page.locator("#scim-base-url").inner_text() == live_server.url + "/api/scim/v2"
    page.get_by_label("Token name").fill("Okta")
    page.get_by_role("button", name="Generate token").click()
    token = page.locator("#new-token").inner_text().strip()
    assert page.locator("#new-token-bearer").inner_text().strip() == "Bearer " + token  # the guide's API Token
    # The page answering the token POST still shows SCIM's real setting (on by default).
    assert page.get_by_label("Accept SCIM provisioning from the IdP").is_checked()
    shoot(page, "scim-token-shown-once")
    page.goto(live_server.url + "/admin/provisioning")  # shown once: the page, opened again, does not show it
    assert page.locator("#new-token").count() == 0 and token not in page.content()

    # The IdP pushes a user, then a group with that user in it.
    created = scim(live_server, token, "POST", "/Users", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": "dev.patel@acme.example", "name": {"givenName": "Dev", "familyName": "Patel"},
        "displayName": "Dev Patel", "title": "SRE", "active": True,
        "emails": [{"primary": True, "value": "dev.patel@acme.example", "type": "work"}],
        "externalId": "00u1devpatel", ENTERPRISE: {"department": "Engineering"}})
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    group = scim(live_server, token, "POST", "/Groups", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Platform team",
        "members": [{"value": user_id, "display": "dev.patel@acme.example"}]})
    assert group.status_code == 201, group.text
    assert scim(live_server, "not-the-token", "GET", "/Users").status_code == 401

    # Both show up in the admin lists, marked as the IdP's.
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Users").click()
    row = table_row(page, "dev.patel@acme.example")
    assert "Dev Patel" in row.inner_text() and "SCIM" in row.inner_text() and "Active" in row.inner_text()
    assert "Engineering" in row.inner_text()
    shoot(page, "users-list-with-scim-user")
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Groups").click()
    row = table_row(page, "Platform team")
    assert "SCIM" in row.inner_text() and row.locator("td").nth(2).inner_text() == "1"
    shoot(page, "groups-list-with-scim-group")

    # Dev signs in with Okta in his own browser.
    employee = new_page()
    employee.goto(live_server.url + "/login")
    employee.get_by_role("link", name=SSO_LABEL).click()
    sign_in_at_idp(employee, idp_server, "dev.patel@acme.example")
    employee.wait_for_url(live_server.url + "/")
    assert employee.locator("h1").inner_text() == "Welcome, Dev Patel"
    assert "Platform team" in employee.locator("dl.facts").inner_text()
    shoot(employee, "employee-home")

    # Okta deactivates him (unassigned from the app): PATCH active false.
    deactivated = scim(live_server, token, "PATCH", f"/Users/{user_id}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert deactivated.status_code == 200 and deactivated.json()["active"] is False, deactivated.text

    # His open page still shows Lobby; his next click lands on the sign-in page.
    employee.get_by_role("link", name="Lobby", exact=True).click()
    employee.wait_for_url(lambda url: "/login" in url)
    assert employee.get_by_role("heading", name="Sign in to Lobby").is_visible()
    shoot(employee, "after-deactivation-next-click")
    # And Okta cannot sign him back in: the IdP session answers at once, Lobby refuses.
    employee.get_by_role("link", name=SSO_LABEL).click()
    employee.wait_for_url(lambda url: "/saml2/failed" in url)
    assert employee.get_by_role("heading", name="Your Lobby account is deactivated").is_visible()
    shoot(employee, "deactivated-page")

    page.reload()
    assert "Platform team" in page.content()
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Users").click()
    assert "Deactivated" in table_row(page, "dev.patel@acme.example").inner_text()
