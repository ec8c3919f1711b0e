"""Admin section: Authentication (placeholder until its issue fills it)."""
from flask import render_template

from . import bp


@bp.route("/authentication")
def authentication():
    return render_template("admin/placeholder.html", title="Authentication", coming="SAML 2.0 single sign-on settings and the email + password switch.")
