import pytest

from models import AuditEvent, EndedSession, User, db

from ..conftest import AuthActions, csrf_token


def test_login_page_answers(client, admin):
    response = client.get("/login")
    assert response.status_code == 200
    assert "Sign in to Lobby" in response.get_data(as_text=True)


def test_password_login_succeeds_and_records_it(app, client, auth, employee):
    response = auth.login(employee.user_name.upper(), employee.password)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/").get_data(as_text=True)
    assert "Erin Employee" in home and "Sales" in home and "Account manager" in home
    with app.app_context():
        event = AuditEvent.query.filter_by(action="auth.login", outcome="success").one()
        assert event.actor == employee.user_name
        assert db.session.get(User, employee.id).last_login_at is not None


def test_login_by_email_when_user_name_differs(client, auth, make_user, admin):
    user = make_user("jdoe", email="jane@example.com")
    assert auth.login("Jane@Example.com", user.password).status_code == 302


@pytest.mark.parametrize("login, password", [
    ("employee@example.com", "wrong password!"),
    ("nobody@example.com", "correct horse battery"),
])
def test_failed_login_says_the_same_whatever_was_wrong(app, auth, employee, login, password):
    response = auth.login(login, password)
    assert response.status_code == 401
    assert "That email or password is not right." in response.get_data(as_text=True)
    with app.app_context():
        event = AuditEvent.query.filter_by(action="auth.login", outcome="failure").one()
        assert event.reason in {"wrong password", "no such user"}


def test_deactivated_user_cannot_sign_in(app, auth, make_user, admin):
    user = make_user("gone@example.com", active=False)
    response = auth.login(user.user_name, user.password)
    assert response.status_code == 401
    with app.app_context():
        assert AuditEvent.query.filter_by(outcome="failure").one().reason == "user is deactivated"


def test_repeated_failures_are_throttled_per_account(app, auth, employee):
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    for _ in range(limit):
        assert auth.login(employee.user_name, "nope nope nope").status_code == 401
    # Even the right password is refused until the window passes.
    response = auth.login(employee.user_name, employee.password)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.get_data(as_text=True)


def test_repeated_failures_are_throttled_per_address(make_app, admin):
    app = make_app(LOGIN_MAX_FAILURES_PER_ADDRESS=3, LOGIN_MAX_FAILURES_PER_ACCOUNT=100)
    client = app.test_client()
    from ..conftest import AuthActions
    auth = AuthActions(client)
    for n in range(3):
        assert auth.login(f"guess{n}@example.com", "whatever-password").status_code == 401
    assert auth.login(admin.user_name, admin.password).status_code == 429


def test_failure_counts_older_than_the_window_are_deleted(app, auth, employee):
    """Each failure deletes its keys' rows from before the window, so they never pile up."""
    from datetime import timedelta

    from models import LoginFailure
    window = app.config["LOGIN_THROTTLE_WINDOW_SECONDS"]
    for _ in range(2):
        assert auth.login(employee.user_name, "nope nope nope").status_code == 401
    with app.app_context():
        for row in LoginFailure.query.all():
            row.created_at -= timedelta(seconds=window + 1)
        LoginFailure.add("address:192.0.2.9")  # another key's row, also old, must stay
        db.session.flush()
        LoginFailure.query.filter_by(key="address:192.0.2.9").one().created_at -= timedelta(seconds=window + 1)
        db.session.commit()
    assert auth.login(employee.user_name, "nope nope nope").status_code == 401
    with app.app_context():
        keys = sorted(row.key for row in LoginFailure.query.all())
    assert keys == ["account:employee@example.com", "address:127.0.0.1", "address:192.0.2.9"]


def test_login_without_csrf_token_is_rejected(client, employee):
    response = client.post("/login", data={"login": employee.user_name, "password": employee.password})
    assert response.status_code == 400
    assert client.get("/").status_code == 302  # still signed out


@pytest.mark.parametrize("unsafe", [
    "https://evil.example/", "//evil.example/", "/\\evil.example", "http:/evil.example",
    "javascript:alert(1)", "/ok\r\nLocation: https://evil.example", "evil.example",
])
def test_unsafe_next_is_ignored(auth, employee, unsafe):
    response = auth.login(employee.user_name, employee.password, next_path=unsafe)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_same_site_next_is_followed(auth, admin):
    response = auth.login(admin.user_name, admin.password, next_path="/admin/users?q=a")
    assert response.headers["Location"] == "/admin/users?q=a"


def test_logout_is_post_only_and_ends_the_session(client, auth, employee):
    auth.login_as(employee)
    assert client.get("/logout").status_code == 405
    assert client.get("/").status_code == 200
    assert auth.logout().status_code == 302
    assert client.get("/").status_code == 302


def test_a_copy_of_the_cookie_taken_before_signing_out_no_longer_works(app, client, auth, employee):
    """Signing out ends that session on the server too, not only in the browser; the person's
    other sessions (another browser) go on."""
    auth.login_as(employee)
    other = app.test_client()
    AuthActions(other).login_as(employee)
    stolen = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    assert auth.logout().status_code == 302
    thief = app.test_client()
    thief.set_cookie(app.config["SESSION_COOKIE_NAME"], stolen)
    response = thief.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert other.get("/").status_code == 200
    with app.app_context():
        assert EndedSession.query.count() == 1
    # Signing in again starts a new session, which works.
    auth.login_as(employee)
    assert client.get("/").status_code == 200


def test_session_epoch_bump_signs_the_user_out_on_next_request(app, client, auth, employee):
    auth.login_as(employee)
    assert client.get("/").status_code == 200
    with app.app_context():
        db.session.get(User, employee.id).end_sessions()
        db.session.commit()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_deactivation_ends_an_open_session(app, client, auth, employee):
    auth.login_as(employee)
    with app.app_context():
        db.session.get(User, employee.id).active = False
        db.session.commit()
    assert client.get("/").status_code == 302


def test_session_is_new_after_sign_in(client, auth, employee):
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    auth.login_as(employee)
    with client.session_transaction() as session:
        assert "planted" not in session


def test_session_cookie_flags(make_app, admin):
    client = make_app().test_client()
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"login": admin.user_name, "password": admin.password,
                                           "csrf_token": token})
    cookie = response.headers.get("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie  # BASE_URL is https in tests


@pytest.mark.parametrize("forwarded, recorded", [
    ("203.0.113.9", "203.0.113.9"),
    ("198.51.100.1, 203.0.113.9", "203.0.113.9"),
    ("not-an-address" + "x" * 500, "127.0.0.1"),  # not believed: the socket's address
    ("", "127.0.0.1"),
])
def test_client_address_from_a_trusted_proxy_must_be_an_ip(make_app, admin, forwarded, recorded):
    app = make_app(TRUSTED_PROXIES=1)
    client = app.test_client()
    token = csrf_token(client, "/login")
    client.post("/login", data={"login": "nobody@example.com", "password": "wrong password!", "csrf_token": token},
                headers={"X-Forwarded-For": forwarded} if forwarded else {})
    with app.app_context():
        event = AuditEvent.query.filter_by(action="auth.login", outcome="failure").one()
        assert event.ip_address == recorded
