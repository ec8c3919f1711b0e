"""Admin section: Audit log (placeholder until its issue fills it)."""
from flask import render_template

from . import bp


@bp.route("/audit")
def audit():
    return render_template("admin/placeholder.html", title="Audit log", coming="Every sign-in, provisioning change and settings change.")
