"""Every admin page renders for an admin and is refused to everyone else."""
import pytest

from models import Group, Identity, db

from .conftest import add_saml_response, add_scim_request, post

PAGES = [
    "/admin/", "/admin/users", "/admin/users/{user}", "/admin/groups", "/admin/groups/{group}", "/admin/audit",
    "/admin/audit/export.csv", "/admin/flight/saml", "/admin/flight/saml/{saml}", "/admin/flight/scim",
    "/admin/flight/scim/{scim}",
]
ACTIONS = [
    "/admin/users/{user}/deactivate", "/admin/users/{user}/reactivate", "/admin/users/{user}/grant-admin",
    "/admin/users/{user}/revoke-admin", "/admin/users/{user}/password", "/admin/users/{user}/profile",
    "/admin/users/{user}/identities/{identity}/unlink", "/admin/users/{user}/delete",
    "/admin/groups/new", "/admin/groups/{group}/rename",
    "/admin/groups/{group}/delete", "/admin/groups/{group}/adopt", "/admin/groups/{group}/members",
    "/admin/groups/{group}/members/{user}/remove", "/admin/audit/retention",
]


@pytest.fixture
def ids(app, make_user, admin):
    user = make_user("anna@example.com", groups=("Office",))
    with app.app_context():
        db.session.add(Identity(provider="http://www.okta.com/exk1", identifier="00u1anna", user_id=user.id))
        db.session.commit()
        identity = Identity.query.one().id
        group = Group.query.one().id
    return {"user": user.id, "group": group, "identity": identity,
            "saml": add_saml_response(app), "scim": add_scim_request(app)}


@pytest.mark.parametrize("path", PAGES)
def test_admin_sees_each_page(client, auth, admin, ids, path):
    auth.login_as(admin)
    response = client.get(path.format(**ids))
    assert response.status_code == 200
    if not path.endswith(".csv"):
        html = response.get_data(as_text=True)
        assert "<h1>" in html
        assert 'style="' not in html and "<script>" not in html  # the CSP would block both


@pytest.mark.parametrize("path", PAGES)
def test_employee_is_refused_each_page(client, auth, employee, ids, path):
    auth.login_as(employee)
    assert client.get(path.format(**ids)).status_code == 403


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_is_sent_to_sign_in(client, ids, path):
    response = client.get(path.format(**ids))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ACTIONS)
def test_employee_cannot_act(app, client, auth, employee, ids, path):
    auth.login_as(employee)
    response = post(client, path.format(**ids), {"password": "x" * 20, "confirm": "x" * 20}, page="/")
    assert response.status_code == 403
    with app.app_context():
        assert db.session.get(Group, ids["group"]) is not None


@pytest.mark.parametrize("path", ACTIONS)
def test_actions_need_the_csrf_token(admin_client, ids, path):
    assert admin_client.post(path.format(**ids), data={}).status_code == 400


def test_navigation_links_the_flight_recorder(admin_client):
    html = admin_client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/flight/saml"' in html
    assert 'href="/admin/users" aria-current' not in html
    assert 'href="/admin/users" aria-current="page"' in admin_client.get("/admin/users").get_data(as_text=True)
