"""Flows 3 and 4: an employee signs in with the company IdP, from /login and from Okta's dashboard tile."""
import pytest

from models import SamlResponseLog, User

from .steps import make_admin, okta_user, saml_set_up, sign_in_at_idp

pytestmark = pytest.mark.browser


def facts(page) -> dict:
    """The home page's facts list as {label: value}."""
    terms = page.locator("dl.facts dt").all_inner_texts()
    values = page.locator("dl.facts dd").all_inner_texts()
    return dict(zip(terms, values))


def test_employee_signs_in_from_login_page(app, make_user, live_server, idp_server, page, shoot):
    make_admin(make_user)
    saml_set_up(app, idp_server, label="Sign in with Acme Okta")
    okta_user(idp_server, "erin.walsh@acme.example", name_id="00u1erinwalsh", first="Erin", last="Walsh",
              department="Marketing", title="Content lead")

    page.goto(live_server.url + "/")
    page.wait_for_url(lambda url: "/login?next=" in url)  # not signed in: Lobby's sign-in page first
    button = page.get_by_role("link", name="Sign in with Acme Okta")
    assert button.is_visible()
    shoot(page, "login-page-with-sso-button")
    button.click()

    page.wait_for_url(lambda url: url.startswith(idp_server.sso_url))
    shoot(page, "okta-login-form")
    sign_in_at_idp(page, idp_server, "erin.walsh@acme.example", "wrong password")
    assert page.get_by_role("alert").inner_text() == "Unable to sign in"  # still at the IdP, nothing posted
    sign_in_at_idp(page, idp_server, "erin.walsh@acme.example")

    page.wait_for_url(live_server.url + "/")
    assert page.locator("h1").inner_text() == "Welcome, Erin Walsh"
    shown = facts(page)
    assert shown["Email"] == "erin.walsh@acme.example"
    assert shown["Department"] == "Marketing"
    assert shown["Job title"] == "Content lead"
    shoot(page, "home-after-sso")
    with app.app_context():  # created at the first sign-in (just-in-time), linked to the NameID
        erin = User.query.filter_by(user_name="erin.walsh@acme.example").one()
        assert erin.source == "saml" and erin.identities[0].identifier == "00u1erinwalsh"

    # Signed out of Lobby but still signed in at the IdP: the button brings her back without a form.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.get_by_role("link", name="Sign in with Acme Okta").click()
    page.wait_for_url(live_server.url + "/")
    assert page.locator("h1").inner_text() == "Welcome, Erin Walsh"
    # Two AuthnRequests, each answered once, and the second one with no login form shown.
    requests_seen = idp_server.seen.authn_requests
    assert len(requests_seen) == 2 and [r[0] for r in idp_server.seen.responses] == requests_seen


def test_okta_tile_restarts_as_sp_initiated(app, make_user, live_server, idp_server, page, shoot):
    make_admin(make_user)
    saml_set_up(app, idp_server)
    okta_user(idp_server, "ben.okafor@acme.example", name_id="00u1benokafor", first="Ben", last="Okafor",
              department="Sales", title="Account executive")

    # The employee starts at the Okta dashboard and clicks Lobby's tile.
    page.goto(idp_server.tile_url)
    shoot(page, "okta-login-from-tile")
    sign_in_at_idp(page, idp_server, "ben.okafor@acme.example")
    page.wait_for_url(live_server.url + "/")
    assert page.locator("h1").inner_text() == "Welcome, Ben Okafor"
    shoot(page, "home-after-tile")

    # The tile's unsolicited Response was not the login: Lobby sent an AuthnRequest, and the
    # Response that answered it (InResponseTo) signed Ben in.
    (tile_irt, tile_relay, _), (answer_irt, _, _) = idp_server.seen.responses
    assert tile_irt is None and tile_relay == "initiate-sp-login"
    assert idp_server.seen.authn_requests == [answer_irt]
    with app.app_context():
        log = {row.in_response_to: row for row in SamlResponseLog.query.all()}
        assert log[None].verdict == "rejected" and "fresh SP-initiated login" in log[None].reason
        assert log[answer_irt].verdict == "accepted" and log[answer_irt].name_id == "00u1benokafor"
