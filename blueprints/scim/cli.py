"""`flask scim create-token NAME`, `flask scim list-tokens`, `flask scim revoke-token ID`."""
from __future__ import annotations

import click

from models import ScimToken, db, record_event, utcnow

from . import bp


@bp.cli.command("create-token")
@click.argument("name")
def create_token(name: str):
    """Make a SCIM bearer token called NAME; it is printed once and stored only as a hash."""
    name = name.strip()
    if not name or len(name) > 255:
        raise click.ClickException("give the token a name of 1 to 255 characters, e.g. \"Okta\"")
    row, secret = ScimToken.issue(name, created_by="cli")
    db.session.flush()
    record_event("scim.token.create", actor="cli", target=name, details={"id": row.id, "prefix": row.prefix})
    db.session.commit()
    click.echo(f"Token {name!r} (id {row.id}). It is shown only now; store it in the IdP:")
    click.echo(secret)
    click.echo(f"Okta SCIM 2.0 Test App (Header Auth), API Token:  Bearer {secret}")


@bp.cli.command("list-tokens")
def list_tokens():
    """List SCIM tokens with their last use."""
    rows = ScimToken.query.order_by(ScimToken.id).all()
    if not rows:
        click.echo("No SCIM tokens.")
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked else "active"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M} UTC" if row.last_used_at else "never"
        click.echo(f"{row.id}\t{row.name}\t{row.prefix}…\t{state}\tlast used {used}")


@bp.cli.command("revoke-token")
@click.argument("token_id", type=int)
def revoke_token(token_id: int):
    """Revoke the SCIM token TOKEN_ID (see list-tokens); the IdP's next call gets 401."""
    row = db.session.get(ScimToken, token_id)
    if row is None:
        raise click.ClickException(f"no SCIM token with id {token_id}")
    if not row.revoked:
        row.revoked_at = utcnow()
        record_event("scim.token.revoke", actor="cli", target=row.name, details={"id": row.id})
        db.session.commit()
    click.echo(f"Token {row.name!r} is revoked.")
