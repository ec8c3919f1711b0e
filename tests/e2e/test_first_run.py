"""Flow 1: a fresh install; the set-up code from the server's output makes the first admin."""
import pytest

from models import User

from .conftest import set_up_code

pytestmark = pytest.mark.browser


def test_fresh_install_first_admin(app, live_server, page, shoot):
    page.goto(live_server.url + "/")
    assert page.url.endswith("/setup")
    shoot(page, "setup-page")
    page.fill("#code", "WRONG-CODE1")
    page.fill("#email", "office.admin@example.com")
    page.fill("#given_name", "Olivia")
    page.fill("#family_name", "Office")
    page.fill("#password", "a long admin password")
    page.fill("#confirm", "a long admin password")
    page.click("button[type=submit]")
    assert "set-up code is not right" in page.content()
    shoot(page, "wrong-code")

    page.fill("#code", set_up_code(live_server))
    page.fill("#password", "a long admin password")
    page.fill("#confirm", "a long admin password")
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert "Olivia Office" in page.locator("header").inner_text()
    shoot(page, "dashboard")
    with app.app_context():
        admin = User.query.one()
        assert admin.is_admin and admin.user_name == "office.admin@example.com"

    page.click("text=Sign out")
    page.wait_for_url("**/login")
    page.fill("#login", "office.admin@example.com")
    page.fill("#password", "a long admin password")
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    assert "Welcome, Olivia Office" in page.content()
