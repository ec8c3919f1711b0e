"""Dashboard: each status card warns when, and only when, something needs the admin."""
import re
from datetime import timedelta

import pytest

from blueprints.admin import health
from models import ScimToken, db, settings, utcnow

from ..saml_idp import make_key_pair
from .conftest import add_event, add_saml_response, add_scim_request


def dashboard(client):
    response = client.get("/admin/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def attention(html):
    """The "needs your attention" summary at the top of the page."""
    return html.split('id="attention-heading"')[1].split("</section>")[0]


def sso_on(app, *certificates, **values):
    with app.app_context():
        settings.update("saml", {"active": True, "idp_entity_id": "http://www.okta.com/exk1",
                                 "idp_certificates": [c.cert_pem for c in certificates], **values})
        settings.set("auth", "password_login", False)
        db.session.commit()


def test_all_good_by_default(admin_client):
    html = dashboard(admin_client)
    assert "All good" in attention(html)
    assert "SAML SSO is off" in html


@pytest.mark.parametrize("days, expected", [
    (400, None), (31, None), (29, "expires in"), (6, "expires in"), (1, "expires within a day"),
    (-2, "expired on"),
])
def test_certificate_expiry_warnings(app, admin_client, days, expected):
    sso_on(app, make_key_pair(f"cert-{days}", days=days, not_before_days=-400))
    summary = attention(dashboard(admin_client))
    if expected is None:
        assert "All good" in summary
    else:
        assert expected in summary and 'href="/admin/authentication"' in summary


def test_rollover_warns_only_about_the_newest_certificate(app, admin_client):
    sso_on(app, make_key_pair("old", days=3, not_before_days=-400), make_key_pair("new", days=700))
    html = dashboard(admin_client)
    assert "All good" in attention(html)
    assert "3 days left" in html or "2 days left" in html  # still listed on the card


@pytest.mark.parametrize("days, level", [(45, "ok"), (29, "warn"), (8, "warn"), (6, "bad"), (1, "bad"),
                                         (-1, "bad")])
def test_certificate_levels(days, level):
    cert = make_key_pair(f"level-{days}", days=days, not_before_days=-400)
    assert health.read_certificate(cert.cert_pem, utcnow() + timedelta(minutes=1)).level == level


def test_bare_base64_certificate_is_read_and_junk_is_reported():
    cert = make_key_pair("bare", days=100)
    assert health.read_certificate(cert.cert_body, utcnow()).days_left in (99, 100)
    assert health.read_certificate("not a certificate", utcnow()).problem


def test_sign_in_results_with_reasons(app, admin_client):
    sso_on(app, make_key_pair("ok", days=300))
    add_event(app, "auth.login", actor="anna@example.com", target="anna@example.com", details={"method": "saml"},
              age=timedelta(hours=2))
    add_event(app, "auth.login", actor="anonymous", target="ben@example.com", outcome="failure",
              reason="user is deactivated", reference="BEN23456", details={"method": "saml"})
    html = dashboard(admin_client)
    card = html.split('id="sso-heading"')[1].split("</section>")[0]
    # The admin's own password sign-in is not the last SSO sign-in.
    assert "anna@example.com" in card and "admin@example.com" not in card
    assert "ben@example.com" in card and "user is deactivated" in card and "(SSO)" in card
    assert 'href="/admin/flight/saml?reference=BEN23456"' in card


@pytest.mark.parametrize("skews, expected", [
    ([1.5, -2.0], None),
    ([80.0, 2.0], "were up to 80 s apart (the IdP is behind)"),
    ([-150.0], "2.5 min apart (the IdP is ahead)"),
])
def test_clock_drift(app, admin_client, skews, expected):
    sso_on(app, make_key_pair("ok", days=300))
    for skew in reversed(skews):  # the first one is the latest
        add_saml_response(app, issue_instant_skew_seconds=skew)
    summary = attention(dashboard(admin_client))
    if expected is None:
        assert "All good" in summary
    else:
        assert expected in summary


def test_password_sign_in_while_sso_is_active(app, admin_client):
    sso_on(app, make_key_pair("ok", days=300))
    with app.app_context():
        settings.set("auth", "password_login", True)
        db.session.commit()
    assert "Email + password sign-in is still allowed although SSO is on" in attention(dashboard(admin_client))


def test_provisioning_errors_and_stale_tokens(app, admin_client):
    with app.app_context():
        fresh, _ = ScimToken.issue("Okta")
        fresh.last_used_at = utcnow() - timedelta(days=1)
        old, _ = ScimToken.issue("Old Entra token")
        old.created_at = utcnow() - timedelta(days=200)
        old.last_used_at = utcnow() - timedelta(days=120)
        revoked, _ = ScimToken.issue("Revoked long ago")
        revoked.created_at = utcnow() - timedelta(days=300)
        revoked.revoked_at = utcnow() - timedelta(days=100)
        db.session.commit()
    add_scim_request(app, status=409)
    add_scim_request(app, status=500)
    add_scim_request(app, status=200, error=None)
    add_scim_request(app, status=400, created_at=utcnow() - timedelta(hours=30))
    html = dashboard(admin_client)
    summary = attention(html)
    assert "2 SCIM requests failed in the last 24 hours" in summary
    assert 'href="/admin/flight/scim?outcome=errors"' in summary
    assert "1 SCIM token unused for 90 days (Old Entra token)" in summary
    assert "Revoked long ago" not in html


def test_scim_on_without_any_token_is_a_hint_not_a_warning(app, admin_client):
    html = dashboard(admin_client)
    assert "All good" in attention(html) and "No token yet" in html
    with app.app_context():
        settings.set("scim", "enabled", False)
        db.session.commit()
    assert "No token yet" not in dashboard(admin_client)


def test_counts_link_to_filtered_lists(admin_client, make_user):
    make_user("a@example.com", source="scim")
    make_user("b@example.com", source="scim", active=False)
    make_user("c@example.com", groups=("Office",))
    html = dashboard(admin_client)
    assert re.search(r'<p class="big">3</p>', html)  # admin, a, c
    assert 'href="/admin/users?source=scim">SCIM: 2</a>' in html
    assert 'href="/admin/users?status=inactive">1 deactivated</a>' in html
    assert 'href="/admin/groups?source=local">Local: 1</a>' in html
