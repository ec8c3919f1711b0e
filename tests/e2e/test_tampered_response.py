"""Flow 7: a Response changed after signing is refused; the employee gets a reference, the admin the reason."""
import re

import pytest

from models import User

from .steps import (ADMIN_LOGIN, ADMIN_PASSWORD, SSO_LABEL, make_admin, okta_user, saml_set_up, sign_in_at_idp,
                    sign_in_with_password)

pytestmark = pytest.mark.browser


def test_tampered_response_is_refused_and_explained(app, make_user, live_server, idp_server, page, new_page, shoot):
    make_admin(make_user)
    saml_set_up(app, idp_server)
    okta_user(idp_server, "mallory@acme.example", name_id="00u1mallory", first="Mallory", last="Moss")
    # Someone between Okta and Lobby turns Mallory's signed assertion into the admin's.
    idp_server.tamper = lambda xml: xml.replace("mallory@acme.example", ADMIN_LOGIN)

    page.goto(live_server.url + "/login")
    page.get_by_role("link", name=SSO_LABEL).click()
    sign_in_at_idp(page, idp_server, "mallory@acme.example")
    page.wait_for_url(lambda url: "/saml2/failed" in url)
    assert page.get_by_role("heading", name="Sign-in did not work").is_visible()
    reference = page.locator(".reference").inner_text()
    assert re.fullmatch(r"[A-Z0-9]{8}", reference), reference
    assert "signature" not in page.content().lower()  # the reason is for the admin, not for whoever posted
    shoot(page, "employee-error-with-reference")
    # Nobody got in: not the admin the Response names, and no session for this browser.
    page.goto(live_server.url + "/")
    page.wait_for_url(lambda url: "/login" in url)
    with app.app_context():
        assert User.query.filter_by(user_name="mallory@acme.example").count() == 0
        assert User.query.filter_by(user_name=ADMIN_LOGIN).one().last_login_at is None

    # The employee tells the admin the code; the admin looks it up in the flight recorder.
    admin = new_page()
    sign_in_with_password(admin, live_server, ADMIN_LOGIN, ADMIN_PASSWORD)
    admin.goto(live_server.url + "/admin/")
    admin.get_by_role("navigation", name="Admin").get_by_role("link", name="Flight recorder").click()
    row = admin.locator("table.list tbody tr", has_text=reference)
    assert "rejected" in row.inner_text() and "Invalid signature" in row.inner_text()
    shoot(admin, "flight-recorder-list")
    # The reference code alone leads to the one Response it names.
    admin.get_by_label("Reference code").fill(reference.lower())
    admin.get_by_role("button", name="Show", exact=True).click()
    admin.wait_for_url(lambda url: "/admin/flight/saml/" in url)
    assert admin.get_by_role("heading", name="Verdict: rejected").is_visible()
    reason = admin.locator(".big-reason").inner_text()
    assert "changed after signing" in reason, reason
    # The decoded Response shows what was sent: the admin's address where Mallory's was signed.
    assert ADMIN_LOGIN in admin.get_by_label("SAML Response XML").inner_text()
    shoot(admin, "flight-recorder-entry")
