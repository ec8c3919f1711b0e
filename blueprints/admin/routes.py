"""Admin navigation, the dashboard, and the template filters the admin pages share."""
from __future__ import annotations

import json
from datetime import datetime

from flask import render_template

from . import bp, health

# Navigation: (endpoint, label); each section lives in its own module of this package.
NAVIGATION = [
    ("admin.dashboard", "Dashboard"),
    ("admin.authentication", "Authentication"),
    ("admin.provisioning", "Provisioning"),
    ("admin.users", "Users"),
    ("admin.groups", "Groups"),
    ("admin.audit", "Audit log"),
    ("admin.flight", "Flight recorder"),
]


@bp.app_context_processor
def inject_navigation():
    return {"admin_navigation": NAVIGATION}


@bp.app_template_filter("when")
def format_when(value: datetime | None) -> str:
    """Stored times are naive UTC; say so, to the minute."""
    if value is None:
        return "—"
    return value.strftime("%d %b %Y, %H:%M UTC")


@bp.app_template_filter("when_short")
def format_when_short(value: datetime | None) -> str:
    """For table cells whose column heading already says UTC."""
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@bp.app_template_filter("pretty_json")
def format_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@bp.app_template_filter("skew")
def format_skew(seconds: float | None) -> str:
    return "—" if seconds is None else health.describe_skew(seconds)


@bp.app_template_filter("sign_in_method")
def format_sign_in_method(event) -> str:
    return health.sign_in_method(event)


@bp.route("/")
def dashboard():
    return render_template("admin/dashboard.html", **health.dashboard())
