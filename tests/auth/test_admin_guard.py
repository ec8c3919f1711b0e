import pytest

ADMIN_PAGES = ["/admin/", "/admin/authentication", "/admin/provisioning", "/admin/users", "/admin/groups",
               "/admin/audit"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_anonymous_is_sent_to_login(client, admin, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_employee_is_refused(client, auth, employee, path):
    auth.login_as(employee)
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_is_let_in(client, auth, admin, path):
    auth.login_as(admin)
    assert client.get(path).status_code == 200


def test_dashboard_shows_counts(client, auth, admin, make_user):
    make_user("a@example.com")
    make_user("b@example.com", active=False, source="scim")
    auth.login_as(admin)
    page = client.get("/admin/").get_data(as_text=True)
    assert "Dashboard" in page
    assert ">2<" in page  # two active users (admin + a)
