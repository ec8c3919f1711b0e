"""Lobby: sign in with your company's IdP (SAML 2.0), provisioned by it (SCIM 2.0)."""
from __future__ import annotations

import logging

from flask import Flask

from config import Config


class Lobby(Flask):
    """Flask, asking once per view or hook whether it is a coroutine function.

    Flask asks on every call of every hook (about ten per request here), and the question
    costs about a microsecond each time; the answer never changes for a registered function."""

    def ensure_sync(self, func):
        ready = self._synced.get(func)
        if ready is None:
            ready = super().ensure_sync(func)
            if len(self._synced) < 1024:  # registered functions are few; a caller's fresh ones are not kept
                self._synced[func] = ready
        return ready

    def __init__(self, *args, **kwargs):
        self._synced: dict = {}
        super().__init__(*args, **kwargs)


def create_app(config: Config | None = None) -> Flask:
    """Build the application. Binds extensions and blueprints; touches no database."""
    config = config or Config()
    app = Lobby(__name__, instance_path=config.INSTANCE_PATH, instance_relative_config=False)
    app.config.from_mapping(config.as_dict())
    if not app.logger.handlers or app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)

    from blueprints import csrf, login_manager, migrate
    from models import db, direct, install_idle_ping, install_sqlite_synchronous

    db.init_app(app)
    direct.init_app(app)
    with app.app_context():  # the engine object only: no connection is made here
        install_idle_ping(db.engine)
        install_sqlite_synchronous(db.engine, app.config.get("SQLITE_SYNCHRONOUS", "FULL"))
    migrate.init_app(app, db, directory=str(_migrations_dir()), render_as_batch=True, compare_type=True)
    from blueprints.security import refuse_nul_characters, refuse_undecodable_query
    app.before_request(refuse_undecodable_query)  # first of all hooks: before anything reads the query
    app.before_request(refuse_nul_characters)
    csrf.init_app(app)
    login_manager.init_app(app)

    from blueprints import errors
    from blueprints.admin import bp as admin_bp
    from blueprints.auth import bp as auth_bp
    from blueprints.saml import bp as saml_bp
    from blueprints.scim import bp as scim_bp
    from blueprints.security import CookieSessions, add_security_headers

    app.register_blueprint(auth_bp)
    app.register_blueprint(saml_bp)
    app.register_blueprint(scim_bp)
    app.register_blueprint(admin_bp)
    errors.init_app(app)
    app.after_request(add_security_headers)
    app.session_interface = CookieSessions()

    from blueprints import cli
    cli.init_app(app)
    return app


def _migrations_dir():
    from pathlib import Path
    return Path(__file__).resolve().parent / "migrations"
