"""Steps the browser flows share: signing in at Lobby and at the test IdP, SAML set up directly."""
from __future__ import annotations

import re

from tests.saml_idp import configure_saml, okta_attributes

ADMIN_LOGIN, ADMIN_PASSWORD = "olivia.office@acme.example", "a long admin password"
OKTA_PASSWORD = "okta password 1"
SSO_LABEL = "Sign in with Okta"  # the SAML2 Label the flows set up


def sign_in_with_password(page, server, login: str, password: str) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Email or username").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def sign_in_at_idp(page, idp, username: str, password: str = OKTA_PASSWORD) -> None:
    """On the test Okta's login form (the browser must be there): sign in; its POST form carries on to Lobby."""
    page.wait_for_url(lambda url: url.startswith(idp.url + "/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in to Okta").click()


def make_admin(make_user):
    return make_user(ADMIN_LOGIN, password=ADMIN_PASSWORD, admin=True, given_name="Olivia", family_name="Office")


def okta_user(idp, username: str, *, name_id: str, first: str, last: str, department: str | None = None,
              title: str | None = None):
    """An Okta account assigned to the Lobby app, with the guide's attribute statements."""
    return idp.add_user(username, OKTA_PASSWORD, name_id=name_id, attributes=okta_attributes(
        first=first, last=last, email=username, login=username, display=f"{first} {last}",
        department=department, title=title))


def saml_set_up(app, idp, label: str = SSO_LABEL) -> None:
    """SAML2 SSO as the admin page saves it (flow 2 does it through the page itself)."""
    configure_saml(app, idp.idp, label=label, metadata_xml=idp.metadata_xml(), idp_sso_url=idp.sso_url)
