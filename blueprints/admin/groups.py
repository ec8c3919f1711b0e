"""Admin section: Groups (placeholder until its issue fills it)."""
from flask import render_template

from . import bp


@bp.route("/groups")
def groups():
    return render_template("admin/placeholder.html", title="Groups", coming="Local and IdP groups with their members.")
