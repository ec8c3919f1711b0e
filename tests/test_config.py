import pytest

from app import create_app
from config import Config, ConfigError, TestConfig, normalise_database_url


def test_production_refuses_to_start_without_secret_key_and_base_url(tmp_path):
    with pytest.raises(ConfigError) as error:
        Config({"LOBBY_ENV": "production", "LOBBY_INSTANCE_PATH": str(tmp_path)})
    message = str(error.value)
    assert "SECRET_KEY" in message and "BASE_URL" in message
    assert "\n" not in message


def test_production_names_only_what_is_missing(tmp_path):
    with pytest.raises(ConfigError) as error:
        Config({"LOBBY_ENV": "production", "SECRET_KEY": "x" * 40, "LOBBY_INSTANCE_PATH": str(tmp_path)})
    assert "BASE_URL" in str(error.value) and "SECRET_KEY" not in str(error.value)


def test_production_starts_with_both(tmp_path):
    config = Config({"LOBBY_ENV": "production", "SECRET_KEY": "s" * 40, "BASE_URL": "https://lobby.example.com/",
                     "LOBBY_INSTANCE_PATH": str(tmp_path)})
    assert config.BASE_URL == "https://lobby.example.com"
    assert config.SESSION_COOKIE_SECURE is True
    app = create_app(config)
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    # Over https the cookie is host-only by its name's prefix: no sibling subdomain can plant one.
    with app.test_request_context("/", base_url="https://lobby.example.com"):
        from flask import session
        session["x"] = 1
        response = app.make_response("ok")
        app.session_interface.save_session(app, session, response)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-lobby_session=") and "Secure" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie


def test_development_secret_key_is_made_once_and_kept(tmp_path):
    first = Config({"LOBBY_INSTANCE_PATH": str(tmp_path)})
    second = Config({"LOBBY_INSTANCE_PATH": str(tmp_path)})
    assert len(first.SECRET_KEY) > 40
    assert first.SECRET_KEY == second.SECRET_KEY
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert first.SQLALCHEMY_DATABASE_URI == f"sqlite:///{tmp_path / 'lobby.db'}"
    assert first.SESSION_COOKIE_SECURE is False and first.SESSION_COOKIE_NAME == "lobby_session"


def test_base_url_must_be_http(tmp_path):
    with pytest.raises(ConfigError):
        Config({"BASE_URL": "lobby.example.com", "LOBBY_INSTANCE_PATH": str(tmp_path)})


@pytest.mark.parametrize("given, expected", [
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_database_urls_use_psycopg3(given, expected):
    assert normalise_database_url(given) == expected


def test_creating_the_app_touches_no_database(tmp_path):
    create_app(TestConfig(f"sqlite:///{tmp_path / 'never.db'}", str(tmp_path)))
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize("name, raw, words", [
    ("SCIM_LOG_BATCH", "abc", "must be a whole number"),
    ("MAX_CONTENT_LENGTH", "2MB", "must be a whole number"),
    ("SAML_MAX_REFUSALS_PER_ADDRESS", "1.5", "must be a whole number"),
    ("TRUSTED_PROXIES", "-1", "must be a whole number, 0 or more"),
    ("SCIM_LOG_FLUSH_SECONDS", "soon", "must be a number of seconds"),
    ("SQLITE_BUSY_TIMEOUT_SECONDS", "nan", "a number of seconds, 0 or more"),
    ("SQLITE_BUSY_TIMEOUT_SECONDS", "-5", "0 or more"),
    ("SQLITE_SYNCHRONOUS", "OFF", "must be FULL or NORMAL"),
])
def test_a_setting_that_is_not_a_valid_value_stops_lobby_with_its_name(tmp_path, name, raw, words):
    with pytest.raises(ConfigError) as error:
        Config({"LOBBY_INSTANCE_PATH": str(tmp_path), name: raw})
    assert name in str(error.value) and words in str(error.value) and repr(raw) in str(error.value)


def test_numeric_settings_are_read_and_blank_means_the_default(tmp_path):
    config = Config({"LOBBY_INSTANCE_PATH": str(tmp_path), "SCIM_LOG_BATCH": " 50 ", "SCIM_LOG_FLUSH_SECONDS": "0.25",
                     "TRUSTED_PROXIES": ""})
    assert (config.SCIM_LOG_BATCH, config.SCIM_LOG_FLUSH_SECONDS, config.TRUSTED_PROXIES) == (50, 0.25, 0)


@pytest.mark.parametrize("given, level, pragma", [(None, "FULL", 2), ("normal", "NORMAL", 1), ("FULL", "FULL", 2),
                                                  (" ", "FULL", 2)])
def test_sqlite_commits_reach_the_disk_at_every_commit_unless_told_otherwise(tmp_path, given, level, pragma):
    from sqlalchemy import text

    from models import db
    environ = {"LOBBY_INSTANCE_PATH": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'lobby.db'}"}
    if given is not None:
        environ["SQLITE_SYNCHRONOUS"] = given
    config = Config(environ)
    assert config.SQLITE_SYNCHRONOUS == level
    app = create_app(config)
    with app.app_context():
        # Every connection the pool opens, not only the first one.
        first, second = db.engine.raw_connection(), db.engine.raw_connection()
        try:
            assert [c.cursor().execute("PRAGMA synchronous").fetchone()[0] for c in (first, second)] == [pragma] * 2
            assert first.cursor().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.session.execute(text("PRAGMA synchronous")).scalar() == pragma
        finally:
            first.close()
            second.close()
            db.session.remove()
        db.engine.dispose()
