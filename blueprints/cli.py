"""Command-line tools: `flask create-admin`, `flask setup-code`, `flask auth ...`."""
from __future__ import annotations

import os
import sys

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from models import db, record_event, settings
from models.user import fold

from .auth.forms import MIN_PASSWORD_LENGTH
from .auth.service import admin_exists, create_or_promote_admin, setup_code

auth_cli = AppGroup("auth", help="Sign-in settings (recovery from the command line).")


def _read_password(password_file: str | None) -> str:
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                return handle.readline().rstrip("\r\n")
        except OSError as error:
            raise click.ClickException(f"cannot read --password-file: {error.strerror}") from None
    from_env = os.environ.get("LOBBY_ADMIN_PASSWORD")
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise click.ClickException(
            "no password given: use --password-file PATH or set LOBBY_ADMIN_PASSWORD (no terminal to prompt on)")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.command("create-admin")
@click.argument("email")
@click.option("--password-file", type=click.Path(dir_okay=False), help="Read the password from this file.")
@click.option("--first-name", "given_name", default=None, help="First name.")
@click.option("--last-name", "family_name", default=None, help="Last name.")
@click.option("--name", "display_name", default=None, help="Display name (default: first and last name).")
@with_appcontext
def create_admin_command(email: str, password_file: str | None, given_name: str | None, family_name: str | None,
                         display_name: str | None):
    """Create an admin EMAIL, or make the existing user EMAIL an admin.

    The password comes from --password-file, the LOBBY_ADMIN_PASSWORD
    environment variable, or a prompt; never from the command line.
    """
    if "@" not in email or len(email) > 320:
        raise click.ClickException(f"{email!r} is not an email address")
    folded = len(fold(email.strip()))
    if folded > 255:  # it becomes the user name, compared case-folded
        raise click.ClickException(f"the email is {folded} characters long (case-folded); "
                                   "a user name holds at most 255")
    password = _read_password(password_file)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    user = create_or_promote_admin(email=email, password=password, given_name=given_name, family_name=family_name,
                                   display_name=display_name)
    record_event("admin.create", actor="cli", target=user.user_name, details={"via": "flask create-admin"})
    db.session.commit()
    click.echo(f"{user.user_name} is an admin.")


@click.command("setup-code")
@with_appcontext
def setup_code_command():
    """Print the first-run set-up code (only while no admin exists)."""
    if admin_exists():
        click.echo("Lobby is set up: an admin exists. Sign in at /login.")
        return
    click.echo(f"Set-up code: {setup_code(current_app.config['SECRET_KEY'])}  "
               f"(open {current_app.config['BASE_URL']}/setup)")


@auth_cli.command("enable-password-login")
@with_appcontext
def enable_password_login():
    """Turn the email + password form back on (if SSO is broken and nobody can sign in)."""
    before = settings.get("auth", "password_login")
    settings.set("auth", "password_login", True)
    record_event("settings.update", actor="cli", target="auth",
                 details={"password_login": {"old": before, "new": True}})
    db.session.commit()
    click.echo("Email + password sign-in is on.")


def init_app(app):
    app.cli.add_command(create_admin_command)
    app.cli.add_command(setup_code_command)
    app.cli.add_command(auth_cli)
