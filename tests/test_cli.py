from models import AuditEvent, User, db, settings


def test_create_admin_reads_the_password_from_a_file(app, runner, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("a very long password\n")
    result = runner.invoke(args=["create-admin", "ops@example.com", "--password-file", str(secret)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = User.query.one()
        assert user.is_admin and user.check_password("a very long password")
        assert AuditEvent.query.filter_by(action="admin.create", actor="cli").count() == 1


def test_create_admin_reads_the_password_from_the_environment(app, runner, monkeypatch):
    monkeypatch.setenv("LOBBY_ADMIN_PASSWORD", "another long password")
    assert runner.invoke(args=["create-admin", "ops@example.com"]).exit_code == 0
    with app.app_context():
        assert User.query.one().check_password("another long password")


def test_create_admin_without_a_password_fails_clearly(app, runner, monkeypatch):
    monkeypatch.delenv("LOBBY_ADMIN_PASSWORD", raising=False)
    result = runner.invoke(args=["create-admin", "ops@example.com"])
    assert result.exit_code != 0
    assert "--password-file" in result.output
    with app.app_context():
        assert User.query.count() == 0


def test_create_admin_refuses_a_short_password(app, runner, monkeypatch):
    monkeypatch.setenv("LOBBY_ADMIN_PASSWORD", "short")
    assert runner.invoke(args=["create-admin", "ops@example.com"]).exit_code != 0
    with app.app_context():
        assert User.query.count() == 0


def test_create_admin_promotes_an_existing_user(app, runner, make_user, monkeypatch):
    user = make_user("erin@example.com")
    monkeypatch.setenv("LOBBY_ADMIN_PASSWORD", "a brand new password")
    assert runner.invoke(args=["create-admin", "ERIN@example.com"]).exit_code == 0
    with app.app_context():
        assert User.query.count() == 1 and db.session.get(User, user.id).is_admin


def test_enable_password_login_recovers_from_sso_only(app, runner):
    with app.app_context():
        settings.set("auth", "password_login", False)
        from models import db
        db.session.commit()
    assert runner.invoke(args=["auth", "enable-password-login"]).exit_code == 0
    with app.app_context():
        assert settings.get("auth", "password_login") is True


def test_create_admin_keeps_a_first_and_last_name(app, runner, monkeypatch):
    monkeypatch.setenv("LOBBY_ADMIN_PASSWORD", "another long password")
    result = runner.invoke(args=["create-admin", "ops@example.com", "--first-name", "Ops", "--last-name", "Team"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = User.query.one()
        assert (user.given_name, user.family_name, user.display_name) == ("Ops", "Team", "Ops Team")


def test_create_admin_refuses_an_email_too_long_for_a_user_name(app, runner, monkeypatch):
    monkeypatch.setenv("LOBBY_ADMIN_PASSWORD", "a long enough password")
    result = runner.invoke(args=["create-admin", "ß" * 130 + "@example.com"])
    assert result.exit_code != 0 and "a user name holds at most 255" in result.output
    with app.app_context():
        assert User.query.count() == 0
