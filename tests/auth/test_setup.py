from blueprints.auth.service import setup_code
from models import AuditEvent, User

from ..conftest import csrf_token


def _setup_form(client, code, **overrides):
    data = {"code": code, "email": "boss@example.com", "given_name": "Bo", "family_name": "Boss",
            "password": "a long enough password", "confirm": "a long enough password",
            "csrf_token": csrf_token(client, "/setup")}
    data.update(overrides)
    return client.post("/setup", data=data)


def test_fresh_install_sends_every_page_to_setup(client):
    for path in ("/", "/admin", "/admin/users"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/setup")


def test_fresh_install_login_page_answers_and_points_to_setup(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert "Lobby is not set up yet" in response.get_data(as_text=True)
    assert 'href="/setup"' in response.get_data(as_text=True)


def test_login_page_drops_the_set_up_notice_once_an_admin_exists(client, admin):
    assert "not set up yet" not in client.get("/login").get_data(as_text=True)


def test_setup_with_the_right_code_creates_the_first_admin(app, client, caplog):
    code = setup_code(app.config["SECRET_KEY"])
    client.get("/setup")
    assert code in caplog.text  # announced on the server's console
    response = _setup_form(client, code.lower())
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/")
    with app.app_context():
        user = User.query.one()
        assert user.is_admin and user.user_name == "boss@example.com" and user.password_hash
        # First and last name are kept as name parts, as an IdP's push fills them.
        assert (user.given_name, user.family_name, user.display_name) == ("Bo", "Boss", "Bo Boss")
        assert AuditEvent.query.filter_by(action="admin.create").count() == 1
    assert client.get("/admin/").status_code == 200
    # Set-up is over: the page now leads to the login page.
    assert client.get("/setup").headers["Location"].endswith("/login")


def test_setup_with_a_wrong_code_creates_nothing(app, client):
    response = _setup_form(client, "AAAAA-BBBBB")
    assert response.status_code == 403
    assert "set-up code is not right" in response.get_data(as_text=True)
    with app.app_context():
        assert User.query.count() == 0
        assert AuditEvent.query.filter_by(action="admin.setup", outcome="failure").one().reason == "wrong set-up code"


def test_setup_refuses_a_short_password(app, client):
    code = setup_code(app.config["SECRET_KEY"])
    response = _setup_form(client, code, password="short", confirm="short")
    assert response.status_code == 400
    assert "Use at least 12 characters." in response.get_data(as_text=True)
    with app.app_context():
        assert User.query.count() == 0


def test_setup_is_closed_once_an_admin_exists(app, client, admin):
    code = setup_code(app.config["SECRET_KEY"])
    assert client.get("/setup").headers["Location"].endswith("/login")
    response = client.post("/setup", data={"code": code, "email": "intruder@example.com",
                                           "given_name": "X", "family_name": "Y",
                                           "password": "intruder password", "confirm": "intruder password",
                                           "csrf_token": csrf_token(client, "/login")})
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    with app.app_context():
        assert User.query.count() == 1


def test_setup_code_command(app, runner):
    result = runner.invoke(args=["setup-code"])
    assert setup_code(app.config["SECRET_KEY"]) in result.output


def test_setup_needs_a_first_and_a_last_name(app, client):
    code = setup_code(app.config["SECRET_KEY"])
    response = _setup_form(client, code, family_name="  ")
    assert response.status_code == 400 and "This field is required" in response.get_data(as_text=True)
    with app.app_context():
        assert User.query.count() == 0
