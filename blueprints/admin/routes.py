"""Dashboard, and the section pages until their own modules replace them."""
from __future__ import annotations

from flask import render_template
from sqlalchemy import func

from models import Group, User, db

from . import bp

# Navigation: (endpoint, label). Section modules replace the placeholders below.
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


def _placeholder(title: str, coming: str):
    return render_template("admin/placeholder.html", title=title, coming=coming)


@bp.route("/authentication")
def authentication():
    return _placeholder("Authentication", "SAML 2.0 single sign-on settings and the email + password switch.")


@bp.route("/provisioning")
def provisioning():
    return _placeholder("Provisioning", "SCIM 2.0: the base URL, tokens and recent requests.")


@bp.route("/users")
def users():
    return _placeholder("Users", "Search, filter and manage users.")


@bp.route("/groups")
def groups():
    return _placeholder("Groups", "Local and IdP groups with their members.")


@bp.route("/audit")
def audit():
    return _placeholder("Audit log", "Every sign-in, provisioning change and settings change.")
