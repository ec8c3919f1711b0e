"""SCIM 2.0 provisioning (RFC 7643/7644) at /api/scim/v2, driven by the company's IdP."""
from flask import Blueprint

from blueprints import csrf

PREFIX = "/api/scim/v2"

# cli_group: `flask scim create-token NAME` and friends (cli.py).
bp = Blueprint("scim", __name__, url_prefix=PREFIX, cli_group="scim")
# The IdP authenticates with a bearer token, not a browser session: no CSRF token to send.
csrf.exempt(bp)

from . import cli, routes  # noqa: E402,F401
