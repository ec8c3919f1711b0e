"""`flask saml import-metadata FILE [--label TEXT] [--activate]` and `flask saml show`."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from models import db, settings

from .metadata import describe_certificate
from .provider import ProviderError, resolve_idp, save_provider, sso_verified_since_change
from .service import IDP_INITIATED_RELAY_STATE, ServiceProvider, load_provider

saml_cli = AppGroup("saml", help="SAML 2.0 single sign-on: import the IdP's metadata, show the set-up.")


@saml_cli.command("import-metadata")
@click.argument("file", type=click.File("rb"))
@click.option("--label", default=None, help="SAML2 Label: the text of the sign-in button.")
@click.option("--activate", is_flag=True, help="Activate SAML2 SSO once the metadata is imported.")
@with_appcontext
def import_metadata(file, label: str | None, activate: bool):
    """Configure the IdP from a metadata XML FILE (the "Metadata File" method)."""
    current = settings.section("saml")
    try:
        idp, source = resolve_idp("metadata_file", metadata_bytes=file.read(1024 * 1024 + 1), current={})
        result = save_provider(
            actor="cli", active=activate or current["active"], method="metadata_file",
            label=label if label is not None else current["label"], group_attribute=current["group_attribute"],
            jit_create=current["jit_create"], clock_skew_seconds=current["clock_skew_seconds"],
            attribute_map=current["attribute_map"], idp=idp, source=source)
    except ProviderError as error:
        db.session.rollback()
        raise click.ClickException(error.message) from None
    db.session.commit()
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Imported the IdP {idp.entity_id}.")
    _show()


@saml_cli.command("show")
@with_appcontext
def show():
    """The configured IdP and the values to paste into it."""
    _show()


def _show():
    provider = load_provider()
    sp = ServiceProvider(current_app.config["BASE_URL"])
    values = settings.section("saml")
    click.echo("SAML2 SSO: " + ("active" if provider.active else "not active")
               + f" · label {provider.label!r} · method {values['method']}")
    click.echo("Identity provider:")
    if provider.idp is None:
        click.echo("  not configured (flask saml import-metadata FILE)")
    else:
        click.echo(f"  Entity ID:  {provider.idp.entity_id}")
        click.echo(f"  SSO URL:    {provider.idp.sso_url}")
        for pem in provider.idp.certificates:
            info = describe_certificate(pem)
            click.echo(f"  Certificate: {info.subject} · expires {info.expires} · SHA-256 {info.fingerprint_sha256}")
            for note in info.problems + info.warnings:
                click.echo(f"    ! {note}")
    click.echo("Paste into the IdP (Okta: Create App Integration > SAML 2.0):")
    click.echo(f"  Single sign on URL:         {sp.acs_url}")
    click.echo(f"  Audience URI (SP Entity ID): {sp.entity_id}")
    click.echo("  Name ID format:             Persistent")
    click.echo(f"  Default RelayState:         {IDP_INITIATED_RELAY_STATE}")
    click.echo("  Attribute statements:")
    for row in attribute_statements(values["attribute_map"]):
        click.echo(f"    {row['name']}  ({row['format']})  {row['value']}")
    click.echo("Email + password sign-in: " + ("on" if settings.get("auth", "password_login") else "off")
               + (" · an admin has signed in with SSO since the last provider change"
                  if sso_verified_since_change() else ""))


# The guide's attribute statements: Okta's value expression for each mapped field.
OKTA_VALUES = {
    "given_name": "user.firstName", "email": "user.email", "user_name": "user.login",
    "family_name": "user.lastName", "department": "user.department", "title": "user.title",
    "display_name": "user.displayName",
}
GUIDE_ORDER = ("given_name", "email", "user_name", "family_name", "department", "title", "display_name")


def attribute_statements(attribute_map: dict) -> list[dict]:
    rows = []
    for key in GUIDE_ORDER:
        name = attribute_map.get(key)
        if name:
            rows.append({"key": key, "name": name, "format": "URI Reference" if "://" in name else "Basic",
                         "value": OKTA_VALUES[key]})
    return rows
