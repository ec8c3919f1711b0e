"""The admin Provisioning page: SCIM on/off, base URL, tokens shown once, rename, revoke,
recent requests with reasons, and the local-group policy."""
from __future__ import annotations

import re

import pytest

from models import AuditEvent, ScimToken, settings

from ..conftest import csrf_token
from .conftest import BASE, ScimClient, issue_token

PAGE = "/admin/provisioning"


@pytest.fixture
def signed_in(auth, admin):
    auth.login_as(admin)
    return auth.client


def test_only_admins(client, auth, employee):
    assert client.get(PAGE).status_code == 302  # to the sign-in page
    auth.login_as(employee)
    assert client.get(PAGE).status_code == 403


def test_page_shows_base_url_and_state(signed_in):
    html = signed_in.get(PAGE).get_data(as_text=True)
    assert "https://lobby.test/api/scim/v2" in html and 'data-copy="scim-base-url"' in html
    assert "SCIM is on" in html and "userName" in html


def test_generate_token_shown_once_with_bearer_string(app, signed_in, client):
    response = signed_in.post(f"{PAGE}/tokens", data={"name": "Okta", "csrf_token": csrf_token(signed_in, PAGE)})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    secret = re.search(r"Bearer (lobby_scim_[\w-]+)", html).group(1)
    assert 'data-copy="new-token-bearer"' in html and "HTTP Header" in html
    assert secret not in signed_in.get(PAGE).get_data(as_text=True)  # never again
    assert ScimClient(client, secret).get("Users").status_code == 200
    with app.app_context():
        row = ScimToken.query.one()
        assert row.name == "Okta" and row.created_by == "admin@example.com" and secret not in row.token_hash
        assert AuditEvent.query.filter_by(action="scim.token.create").one().actor == "admin@example.com"


def test_token_needs_a_name(signed_in, app):
    response = signed_in.post(f"{PAGE}/tokens", data={"name": "", "csrf_token": csrf_token(signed_in, PAGE)})
    assert response.status_code == 400
    with app.app_context():
        assert ScimToken.query.count() == 0


def test_rename_and_revoke(app, signed_in, client):
    secret = issue_token(app, "Old name")
    with app.app_context():
        token_id = ScimToken.query.one().id
    ScimClient(client, secret).get("Users")
    token = csrf_token(signed_in, PAGE)
    signed_in.post(f"{PAGE}/tokens/{token_id}/rename", data={"name": "Okta prod", "csrf_token": token})
    html = signed_in.get(PAGE).get_data(as_text=True)
    row = html.split("<td>Okta prod</td>")[1].split("</tr>")[0]
    assert "never" not in row and "UTC" in row  # last use is shown
    signed_in.post(f"{PAGE}/tokens/{token_id}/revoke", data={"csrf_token": token})
    assert ScimClient(client, secret).get("Users").status_code == 401
    assert "revoked" in signed_in.get(PAGE).get_data(as_text=True)
    assert signed_in.post(f"{PAGE}/tokens/999/revoke", data={"csrf_token": token}).status_code == 404
    # Without the CSRF token nothing happens.
    assert signed_in.post(f"{PAGE}/tokens/{token_id}/rename", data={"name": "x"}).status_code == 400


def test_switch_off_and_group_policy(app, signed_in, client):
    secret = issue_token(app)
    response = signed_in.post(f"{PAGE}/settings", data={"local_group_conflict": "adopt",
                                                        "csrf_token": csrf_token(signed_in, PAGE)})
    assert response.status_code == 302
    with app.app_context():
        assert settings.get("scim", "enabled") is False
        assert settings.get("scim", "local_group_conflict") == "adopt"
        event = AuditEvent.query.filter_by(action="settings.scim").one()
        assert event.details["enabled"] == {"old": True, "new": False}
    assert ScimClient(client, secret).get("Users").status_code == 403
    assert "SCIM is off" in signed_in.get(PAGE).get_data(as_text=True)


def test_recent_requests_show_status_and_reason(app, signed_in, client):
    client.get(f"{BASE}/Users", headers={"Authorization": "lobby_scim_pasted-without-bearer"})
    html = signed_in.get(PAGE).get_data(as_text=True)
    assert "GET /api/scim/v2/Users" in html and "401" in html
    assert "prefix it with &#34;Bearer &#34;" in html or 'prefix it with "Bearer "' in html
