import pytest
from flask import Blueprint


def test_security_headers_on_pages(client, admin):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_not_found_is_html_for_pages_and_json_for_api(client, admin):
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.mimetype == "text/html"
    api = client.get("/internal-api/nothing-here")
    assert api.status_code == 404 and api.is_json and api.get_json()["status"] == 404


def test_unexpected_error_shows_no_traceback(make_app, admin):
    app = make_app(fresh=True)
    boom = Blueprint("boom", __name__)

    @boom.route("/boom")
    def explode():
        raise RuntimeError("secret internals /etc/passwd")

    app.register_blueprint(boom)
    response = app.test_client().get("/boom")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "secret internals" not in body and "Traceback" not in body
    assert "Something went wrong" in body


@pytest.mark.parametrize("accept, mimetype", [("application/json", "application/json"), ("text/html", "text/html")])
def test_forbidden_follows_accept(client, auth, employee, accept, mimetype):
    auth.login_as(employee)
    response = client.get("/admin/", headers={"Accept": accept})
    assert response.status_code == 403 and response.mimetype == mimetype


def test_the_scim_api_neither_reads_nor_sets_the_session_cookie(client, auth, admin):
    auth.login_as(admin)
    reply = client.get("/api/scim/v2/Users")
    # A signed-in admin's cookie is no credential for SCIM, and SCIM never sets one.
    assert reply.status_code == 401 and reply.mimetype == "application/scim+json"
    assert "Set-Cookie" not in reply.headers
    for name in ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Cache-Control"):
        assert name in reply.headers
    assert client.get("/admin/").status_code == 200  # the browser session itself is untouched
