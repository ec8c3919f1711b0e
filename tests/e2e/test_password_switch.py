"""Flow 5: the admin turns the email + password form off (SSO only); the CLI turns it back on."""
import subprocess
import sys

import pytest

from models import settings
from tests.live import ROOT

from .steps import (ADMIN_LOGIN, ADMIN_PASSWORD, SSO_LABEL, make_admin, okta_user, saml_set_up, sign_in_at_idp,
                    sign_in_with_password)

pytestmark = pytest.mark.browser


def save_password_switch(page, on: bool) -> list[str]:
    """Set "Allow email + password sign-in" and save; returns the flash messages shown."""
    card = page.locator("section.card", has=page.get_by_role("heading", name="Email + password form"))
    card.get_by_label("Allow email + password sign-in").set_checked(on)
    with page.expect_navigation():  # the flashes are read from the page that answers the POST
        card.get_by_role("button", name="Save").click()
    return page.locator("main .flash").all_inner_texts()


def test_sso_only_then_cli_recovery(app, make_user, live_server, idp_server, page, new_page, shoot):
    make_admin(make_user)
    saml_set_up(app, idp_server)
    okta_user(idp_server, ADMIN_LOGIN, name_id="00u1olivia", first="Olivia", last="Office")
    # Turning the form off asks for confirmation first (lobby.js); the admin says yes.
    page.on("dialog", lambda dialog: dialog.accept())

    sign_in_with_password(page, live_server, ADMIN_LOGIN, ADMIN_PASSWORD)
    page.goto(live_server.url + "/admin/authentication")
    # Not yet: no admin has signed in over SSO with this provider, so it could lock everyone out.
    messages = " ".join(save_password_switch(page, False))
    assert "stays on" in messages, messages
    assert page.get_by_label("Allow email + password sign-in").is_checked()
    shoot(page, "switch-refused-before-sso-test")

    page.get_by_role("button", name="Test sign-in").click()
    sign_in_at_idp(page, idp_server, ADMIN_LOGIN)
    page.wait_for_url(lambda url: "/admin/authentication?test=" in url)
    assert "Test sign-in worked" in page.locator("section.test-result").inner_text()
    messages = " ".join(save_password_switch(page, False))
    assert "SSO is the only way in" in messages, messages
    assert not page.get_by_label("Allow email + password sign-in").is_checked()
    shoot(page, "password-form-off")
    with app.app_context():
        assert settings.get("auth", "password_login") is False

    # Someone new opens /login: straight to the IdP, no Lobby password field on the way.
    visitor = new_page()
    visitor.goto(live_server.url + "/login")
    visitor.wait_for_url(lambda url: url.startswith(idp_server.sso_url))
    shoot(visitor, "login-goes-straight-to-okta")
    # After an SSO failure (or asked for), /login stays put: the SSO button and nothing else.
    visitor.goto(live_server.url + "/login?sso_error=1")
    assert visitor.get_by_role("link", name=SSO_LABEL).is_visible()
    assert visitor.locator("input[type=password]").count() == 0
    assert visitor.locator("form[action='/login']").count() == 0
    shoot(visitor, "login-sso-only")

    done = subprocess.run([sys.executable, "-m", "flask", "auth", "enable-password-login"], cwd=ROOT,
                          env={**live_server.env, "FLASK_APP": "app:create_app"}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

    visitor.goto(live_server.url + "/login")
    assert visitor.get_by_role("link", name=SSO_LABEL).is_visible()
    assert visitor.get_by_label("Password").is_visible()
    shoot(visitor, "password-form-back")
    sign_in_with_password(visitor, live_server, ADMIN_LOGIN, ADMIN_PASSWORD)
    assert visitor.locator("h1").inner_text() == "Welcome, Olivia Office"
