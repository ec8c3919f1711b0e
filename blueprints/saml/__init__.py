"""SAML 2.0 single sign-on: Lobby as the service provider for the company's IdP."""
from flask import Blueprint

bp = Blueprint("saml", __name__)

from . import cli, routes  # noqa: E402


def _register(state):
    # The /login page shows one button per SSO integration that returns one.
    state.app.extensions.setdefault("lobby.sso_buttons", []).append(routes.sso_button)
    state.app.cli.add_command(cli.saml_cli)


bp.record_once(_register)
