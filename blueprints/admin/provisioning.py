"""Admin section: Provisioning (placeholder until its issue fills it)."""
from flask import render_template

from . import bp


@bp.route("/provisioning")
def provisioning():
    return render_template("admin/placeholder.html", title="Provisioning", coming="SCIM 2.0: the base URL, tokens and recent requests.")
