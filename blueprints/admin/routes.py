"""Admin navigation and the dashboard."""
from __future__ import annotations

from flask import render_template
from sqlalchemy import func

from models import Group, User, db

from . import bp

# Navigation: (endpoint, label); each section lives in its own module of this package.
NAVIGATION = [
    ("admin.dashboard", "Dashboard"),
    ("admin.authentication", "Authentication"),
    ("admin.provisioning", "Provisioning"),
    ("admin.users", "Users"),
    ("admin.groups", "Groups"),
    ("admin.audit", "Audit log"),
]


@bp.app_context_processor
def inject_navigation():
    return {"admin_navigation": NAVIGATION}


@bp.route("/")
def dashboard():
    users_by_state = dict(db.session.query(User.active, func.count()).group_by(User.active).all())
    users_by_source = dict(db.session.query(User.source, func.count()).group_by(User.source).all())
    counts = {
        "active_users": users_by_state.get(True, 0),
        "inactive_users": users_by_state.get(False, 0),
        "users_by_source": users_by_source,
        "groups": db.session.query(func.count(Group.id)).scalar(),
    }
    return render_template("admin/dashboard.html", counts=counts)
