"""Configuration read from the environment (and a `.env` file).

Development works with no settings at all: SQLite under ``instance/`` and a
secret key generated once and kept there.  Production (``LOBBY_ENV=production``)
refuses to start until ``SECRET_KEY`` and ``BASE_URL`` are set.
"""
from __future__ import annotations

import math
import os
import secrets
from pathlib import Path

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent
DEFAULT_INSTANCE = ROOT / "instance"

load_dotenv(ROOT / ".env")


class ConfigError(RuntimeError):
    """The environment does not describe a deployment Lobby can start with."""


def normalise_database_url(url: str) -> str:
    """Point plain ``postgres://`` URLs at the psycopg 3 driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _instance_secret_key(instance: Path) -> str:
    """A development key made once and reused, so sessions survive restarts."""
    instance.mkdir(parents=True, exist_ok=True)
    key_file = instance / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = secrets.token_urlsafe(48)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _number(env, name: str, default, whole: bool = True):
    """A numeric setting, 0 or more: a whole number, or (``whole=False``) seconds with fractions.
    Blank means the default; anything else stops Lobby with the setting's name."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    what = "a whole number" if whole else "a number of seconds"
    try:
        value = int(raw.strip()) if whole else float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be {what}, 0 or more, got {raw!r}")
    return value


class Config:
    """Settings for a running Lobby; built from ``os.environ`` at app creation."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.LOBBY_ENV = env.get("LOBBY_ENV", "development").strip().lower()
        production = self.LOBBY_ENV == "production"
        instance = Path(env.get("LOBBY_INSTANCE_PATH", str(DEFAULT_INSTANCE)))
        self.INSTANCE_PATH = str(instance)

        missing = [name for name in ("SECRET_KEY", "BASE_URL") if not env.get(name)]
        if production and missing:
            raise ConfigError(
                "Lobby refuses to start in production: set "
                + " and ".join(missing)
                + " in the environment (see README, Configuration)."
            )

        self.SECRET_KEY = env.get("SECRET_KEY") or _instance_secret_key(instance)
        self.BASE_URL = (env.get("BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
        if not self.BASE_URL.startswith(("http://", "https://")):
            raise ConfigError(f"BASE_URL must start with http:// or https://, got {self.BASE_URL!r}")

        database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'lobby.db'}"
        self.SQLALCHEMY_DATABASE_URI = normalise_database_url(database_url)
        # No pool_pre_ping: create_app installs a ping for connections that sat idle (models.install_idle_ping).
        self.SQLALCHEMY_ENGINE_OPTIONS = {}
        if self.SQLALCHEMY_DATABASE_URI.startswith("sqlite"):
            # How long a writer waits for SQLite's lock before giving up (then: 503, not a traceback).
            self.SQLALCHEMY_ENGINE_OPTIONS["connect_args"] = {
                "timeout": _number(env, "SQLITE_BUSY_TIMEOUT_SECONDS", 30.0, whole=False)}
        # When a SQLite commit reaches the disk. FULL: at every commit, so a change Lobby has answered
        # as done (a user an IdP created, say) survives a power cut. NORMAL: at checkpoints only; the
        # file never corrupts, but the last commits before a power cut or OS crash can be lost.
        raw_level = env.get("SQLITE_SYNCHRONOUS") or ""
        self.SQLITE_SYNCHRONOUS = raw_level.strip().upper() or "FULL"  # blank means the default
        if self.SQLITE_SYNCHRONOUS not in ("FULL", "NORMAL"):
            raise ConfigError(f"SQLITE_SYNCHRONOUS must be FULL or NORMAL, got {raw_level!r}")

        https = self.BASE_URL.startswith("https://")
        # Over https the "__Host-" prefix makes browsers refuse the cookie unless this host set it
        # (Secure, Path=/, no Domain): a sibling subdomain cannot plant its own session here, which
        # would defeat the SAML sign-in's browser binding (docs/saml.md).
        self.SESSION_COOKIE_NAME = "__Host-lobby_session" if https else "lobby_session"
        self.SESSION_COOKIE_PATH = "/"
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = https
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SECURE = https
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.PERMANENT_SESSION_LIFETIME = _number(env, "SESSION_LIFETIME_SECONDS", 12 * 3600)
        self.PREFERRED_URL_SCHEME = "https" if https else "http"

        self.WTF_CSRF_TIME_LIMIT = None  # tokens live as long as the session
        self.WTF_CSRF_SSL_STRICT = False  # the IdP's cross-site POST carries no Referer we control
        self.MAX_CONTENT_LENGTH = _number(env, "MAX_CONTENT_LENGTH", 2 * 1024 * 1024)

        # Password sign-in throttling: failures allowed per window, per account and per address.
        self.LOGIN_MAX_FAILURES_PER_ACCOUNT = _number(env, "LOGIN_MAX_FAILURES_PER_ACCOUNT", 5)
        self.LOGIN_MAX_FAILURES_PER_ADDRESS = _number(env, "LOGIN_MAX_FAILURES_PER_ADDRESS", 20)
        self.LOGIN_THROTTLE_WINDOW_SECONDS = _number(env, "LOGIN_THROTTLE_WINDOW_SECONDS", 900)
        # SAML Responses refused per client address per window before the ACS stops reading them (0: never).
        self.SAML_MAX_REFUSALS_PER_ADDRESS = _number(env, "SAML_MAX_REFUSALS_PER_ADDRESS", 30)
        self.SAML_REFUSAL_WINDOW_SECONDS = _number(env, "SAML_REFUSAL_WINDOW_SECONDS", 60)
        # Trust X-Forwarded-For from this many proxies (0: use the socket address).
        self.TRUSTED_PROXIES = _number(env, "TRUSTED_PROXIES", 0)

        self.SCIM_RATE_LIMIT_PER_MINUTE = _number(env, "SCIM_RATE_LIMIT_PER_MINUTE", 6000)
        # SCIM request-log rows are written in batches: at most this many seconds late (0: each at once) ...
        self.SCIM_LOG_FLUSH_SECONDS = _number(env, "SCIM_LOG_FLUSH_SECONDS", 1.0, whole=False)
        # ... or when this many are waiting. A failed request's row is written at once.
        self.SCIM_LOG_BATCH = _number(env, "SCIM_LOG_BATCH", 200)
        self.PASSWORD_HASH_METHOD = "scrypt"
        self.TESTING = _flag("LOBBY_TESTING")

    def as_dict(self) -> dict:
        return {key: getattr(self, key) for key in dir(self) if key.isupper()}


class TestConfig(Config):
    """Configuration for the test suite: an explicit database, fast hashing, no CSRF shortcuts."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, database_url: str, instance_path: str, **overrides):
        super().__init__(
            {
                "SECRET_KEY": "test-secret-key-not-for-production",
                "BASE_URL": overrides.pop("BASE_URL", "https://lobby.test"),
                "DATABASE_URL": database_url,
                "LOBBY_INSTANCE_PATH": instance_path,
            }
        )
        self.TESTING = True
        busy_timeout = overrides.pop("sqlite_busy_timeout", None)
        if busy_timeout is not None and "connect_args" in self.SQLALCHEMY_ENGINE_OPTIONS:
            self.SQLALCHEMY_ENGINE_OPTIONS["connect_args"]["timeout"] = busy_timeout
        # Tests create many users: a cheap hash keeps the suite fast (production keeps scrypt).
        self.PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
        # Each SCIM request's log row is written with it, so a test reads it straight after.
        self.SCIM_LOG_FLUSH_SECONDS = 0.0
        for key, value in overrides.items():
            setattr(self, key, value)
