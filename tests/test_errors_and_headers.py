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


def test_security_headers_keep_what_a_view_set_and_follow_the_settings(make_app, admin):
    from flask import Response
    app = make_app(fresh=True, SESSION_COOKIE_SECURE=True)
    own = Blueprint("own", __name__)

    @own.route("/own")
    def with_its_own():
        return Response("x", headers={"cache-control": "max-age=60", "X-Frame-Options": "SAMEORIGIN"})

    @own.route("/plain")
    def plain():
        return "x"

    app.register_blueprint(own)
    client = app.test_client()
    mine = client.get("/own")
    assert mine.headers.getlist("Cache-Control") == ["max-age=60"]  # matched whatever its case
    assert mine.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert mine.headers["Strict-Transport-Security"] == "max-age=31536000"
    default = client.get("/plain")
    assert default.headers["Cache-Control"] == "no-store" and default.headers["X-Frame-Options"] == "DENY"
    static = make_app(fresh=True, SESSION_COOKIE_SECURE=False).test_client().get("/static/css/lobby.css")
    static.close()
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")
    assert "Strict-Transport-Security" not in static.headers


def test_the_remembered_sync_check_still_tells_async_views_apart(make_app, admin):
    """Lobby's app remembers, per function, whether a view or hook needs wrapping; a plain
    function comes back as it is, every time, and a coroutine function is never passed as one."""
    app = make_app(fresh=True)

    def plain():
        return "plain"

    async def awaited():
        return "awaited"

    assert app.ensure_sync(plain) is plain and app.ensure_sync(plain) is plain
    for _ in range(2):
        try:
            wrapped = app.ensure_sync(awaited)
        except RuntimeError as error:  # Flask runs async views only with its "async" extra (asgiref)
            assert "async" in str(error)
        else:
            assert wrapped is not awaited
    extra = Blueprint("extra", __name__)
    extra.add_url_rule("/plain-view", view_func=plain)
    app.register_blueprint(extra)
    client = app.test_client()
    assert [client.get("/plain-view").get_data(as_text=True) for _ in range(2)] == ["plain", "plain"]


@pytest.mark.parametrize("path", ["/login", "/admin/users", "/internal-api/nothing-here"])
def test_a_query_string_that_is_not_utf8_is_a_400_page_that_says_so(client, admin, path):
    response = client.get(path, environ_overrides={"QUERY_STRING": "next=\xff&q=\xc3("})
    assert response.status_code == 400
    assert "not valid UTF-8" in response.get_data(as_text=True) and "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/login?next=/x%00y", "/admin/users?before=%00", "/admin/groups?q=a%00",
                                  "/admin/users/abc%00def", "/setup?x=%00"])
def test_a_nul_character_in_the_address_is_a_400_page_that_says_so(client, auth, admin, path):
    """PostgreSQL refuses NUL in text: such an id or filter reached the database and ended as a 500."""
    auth.login_as(admin)
    response = client.get(path)
    assert response.status_code == 400, path
    assert "NUL character (%00)" in response.get_data(as_text=True)


def test_a_nul_character_in_a_form_is_refused_and_nothing_changes(app, client, auth, admin, make_user):
    from models import User, db
    from tests.conftest import csrf_token
    erin = make_user("erin@example.com", given_name="Erin")
    auth.login_as(admin)
    token = csrf_token(client, f"/admin/users/{erin.id}")
    response = client.post(f"/admin/users/{erin.id}/profile", data={
        "user_name": "erin@example.com", "given_name": "Er\x00in", "csrf_token": token})
    assert response.status_code == 400 and "NUL character" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, erin.id).given_name == "Erin"


@pytest.mark.parametrize("cursor", ["9" * 30, "²", "-1", "abc"])
def test_audit_page_cursor_that_is_no_id_is_ignored(client, auth, admin, cursor):
    auth.login_as(admin)
    assert client.get(f"/admin/audit?after={cursor}").status_code == 200
    assert client.get(f"/admin/audit?before={cursor}").status_code == 200
