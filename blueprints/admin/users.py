"""Admin section: Users (placeholder until its issue fills it)."""
from flask import render_template

from . import bp


@bp.route("/users")
def users():
    return render_template("admin/placeholder.html", title="Users", coming="Search, filter and manage users.")
