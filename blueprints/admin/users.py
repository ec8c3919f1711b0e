"""Admin section: Users — search, filter, and look after one person's account."""
from __future__ import annotations

from datetime import datetime

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_
from sqlalchemy.orm import defer

from blueprints.auth.forms import PostForm
from models import AuditEvent, SamlResponseLog, User, db, record_event, settings
from models.user import fold

from . import bp
from .directory import (PROFILE_FIELDS, Refused, can_reactivate, deactivate_user, delete_user, grant_admin,
                        reactivate_user, revoke_admin, scim_owned, set_password, unlink_identity,
                        update_profile)
from .forms import PasswordForm, ProfileForm, UserFilterForm
from .paging import capped_count, keyset_page

NEVER = datetime(1970, 1, 1)

# sort choice -> (key expression, descending). Keys are never NULL (see keyset_page).
SORTS = {
    "user_name": (User.user_name_key, False),
    "-user_name": (User.user_name_key, True),
    "created": (User.created_at, False),
    "-created": (User.created_at, True),
    "last_login": (func.coalesce(User.last_login_at, NEVER), False),
    "-last_login": (func.coalesce(User.last_login_at, NEVER), True),
    "department": (func.lower(func.coalesce(User.department, "")), False),
}


def search_users(filters: UserFilterForm):
    """The users matching the filter form, unordered (the pager orders them)."""
    query = User.query
    terms = (filters.q.data or "").split()
    # Every word must match somewhere, so "anna smith" finds given name Anna + family name Smith.
    for term in terms[:6]:
        query = query.filter(User.search_text.contains(fold(term), autoescape=True))
    if filters.status.data == "active":
        query = query.filter(User.active.is_(True))
    elif filters.status.data == "inactive":
        query = query.filter(User.active.is_(False))
    if filters.source.data:
        query = query.filter(User.source == filters.source.data)
    if filters.role.data == "admin":
        query = query.filter(User.is_admin.is_(True))
    elif filters.role.data == "member":
        query = query.filter(User.is_admin.is_(False))
    return query


@bp.route("/users")
def users():
    filters = UserFilterForm(request.args)
    key, descending = SORTS.get(filters.sort.data, SORTS["user_name"])
    query = search_users(filters)
    page = keyset_page(query, key=key, id_column=User.id, descending=descending,
                       after=request.args.get("after") or None, before=request.args.get("before") or None)
    page.total, page.total_capped = capped_count(query, User.id)
    kept = {name: value for name, value in request.args.items() if name not in ("after", "before") and value}
    return render_template("admin/users/list.html", filters=filters, page=page, kept=kept)


def _load(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def recent_saml_responses(user: User, limit: int = 10) -> list[SamlResponseLog]:
    """Flight-recorder entries about this person, newest first.

    A Response refused before it was matched to anyone still names them: by a
    NameID they are linked to, or by their user name or email in an attribute.
    The recorder keeps only the last few dozen rows, so reading them all is cheap.
    """
    keys = {user.user_name_key} | {email.value_key for email in user.emails}
    name_ids = {identity.identifier for identity in user.identities}

    def mentions(row: SamlResponseLog) -> bool:
        if row.user_id == user.id or (row.name_id and row.name_id in name_ids):
            return True
        values = []
        for value in list((row.attributes or {}).values()) + list((row.mapped or {}).values()):
            values.extend(value if isinstance(value, list) else [value])
        return any(isinstance(value, str) and fold(value) in keys for value in values)

    rows = (SamlResponseLog.query.options(defer(SamlResponseLog.response_xml))
            .order_by(SamlResponseLog.created_at.desc(), SamlResponseLog.id.desc())
            .limit(settings.get("saml", "flight_recorder_size")).all())
    return [row for row in rows if mentions(row)][:limit]


def recent_events(user: User, saml_responses: list[SamlResponseLog], limit: int = 25) -> list[AuditEvent]:
    """Audit events about this person: by user name, an email, a NameID, or a Response that named them."""
    names = {user.user_name, user.user_name_key}
    for email in user.emails:
        names.update((email.value, email.value_key))
    for identity in user.identities:
        names.add(identity.identifier)
    references = {row.reference for row in saml_responses if row.reference}
    about = or_(AuditEvent.target.in_(names), AuditEvent.actor == user.user_name)
    if references:
        about = or_(about, AuditEvent.reference.in_(references))
    return (AuditEvent.query.filter(about)
            .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
            .limit(limit).all())


def _render_user(user: User, profile_form=None, password_form=None, status: int = 200):
    if profile_form is None:
        profile_form = ProfileForm(formdata=None, data={
            name: (user.email if name == "email" else getattr(user, name)) for name in PROFILE_FIELDS})
    saml_responses = recent_saml_responses(user)
    if user.source != "local":
        # The IdP chose this user name; it is shown, not edited.
        profile_form.user_name.render_kw = {"readonly": True}
        profile_form.user_name.description = "Set by your identity provider."
    return render_template(
        "admin/users/show.html", user=user, scim_owned=scim_owned(user),
        profile_form=profile_form, password_form=password_form or PasswordForm(formdata=None),
        events=recent_events(user, saml_responses), saml_responses=saml_responses,
        can_reactivate=can_reactivate(user), is_self=user.id == current_user.id,
    ), status


@bp.route("/users/<user_id>")
def users_show(user_id):
    return _render_user(_load(user_id))


def _perform(user: User, action: str, change, done: str) -> bool:
    """Run one guarded change: commit it, or audit the refusal and tell the admin why."""
    user_name = user.user_name
    try:
        change()
    except Refused as refusal:
        db.session.rollback()
        record_event(action, target=user_name, outcome="failure", reason=refusal.message)
        db.session.commit()
        flash(refusal.message, "error")
        return False
    db.session.commit()
    flash(done, "success")
    return True


def _button_action(user_id: str, action: str, change, done: str):
    form = PostForm()
    if not form.validate_on_submit():
        abort(400)
    user = _load(user_id)
    _perform(user, action, lambda: change(user), done.format(name=user.name))
    return redirect(url_for("admin.users_show", user_id=user_id))


@bp.route("/users/<user_id>/deactivate", methods=["POST"])
def users_deactivate(user_id):
    return _button_action(user_id, "admin.user.deactivate",
                          lambda user: deactivate_user(user, actor_id=current_user.id),
                          "{name} is deactivated and signed out everywhere.")


@bp.route("/users/<user_id>/reactivate", methods=["POST"])
def users_reactivate(user_id):
    return _button_action(user_id, "admin.user.reactivate", reactivate_user, "{name} can sign in again.")


@bp.route("/users/<user_id>/grant-admin", methods=["POST"])
def users_grant_admin(user_id):
    return _button_action(user_id, "admin.user.grant_admin", grant_admin, "{name} is now an admin.")


@bp.route("/users/<user_id>/revoke-admin", methods=["POST"])
def users_revoke_admin(user_id):
    return _button_action(user_id, "admin.user.revoke_admin",
                          lambda user: revoke_admin(user, actor_id=current_user.id),
                          "{name} is no longer an admin.")


@bp.route("/users/<user_id>/identities/<int:identity_id>/unlink", methods=["POST"])
def users_unlink_identity(user_id, identity_id):
    return _button_action(user_id, "admin.user.unlink_identity",
                          lambda user: unlink_identity(user, identity_id),
                          "The sign-in link is removed. {name}'s next SSO sign-in matches them by "
                          "user name or email again.")


@bp.route("/users/<user_id>/password", methods=["POST"])
def users_password(user_id):
    user = _load(user_id)
    form = PasswordForm()
    if not form.validate_on_submit():
        return _render_user(user, password_form=form, status=400)
    _perform(user, "admin.user.set_password",
             lambda: set_password(user, form.password.data, actor_id=current_user.id),
             f"{user.name}'s password is set." + ("" if user.id == current_user.id else " Their sessions ended."))
    return redirect(url_for("admin.users_show", user_id=user_id))


@bp.route("/users/<user_id>/profile", methods=["POST"])
def users_profile(user_id):
    user = _load(user_id)
    form = ProfileForm()
    if not scim_owned(user) and not form.validate_on_submit():
        return _render_user(user, profile_form=form, status=400)
    values = {name: form[name].data for name in PROFILE_FIELDS}
    user_name = user.user_name
    try:
        diff = update_profile(user, values)
    except Refused as refusal:
        db.session.rollback()
        record_event("admin.user.update", target=user_name, outcome="failure", reason=refusal.message)
        db.session.commit()
        flash(refusal.message, "error")
        return redirect(url_for("admin.users_show", user_id=user_id))
    db.session.commit()
    flash(f"{user.name}'s profile is saved." if diff else "Nothing changed.", "success" if diff else "info")
    return redirect(url_for("admin.users_show", user_id=user_id))


@bp.route("/users/<user_id>/delete", methods=["POST"])
def users_delete(user_id):
    form = PostForm()
    if not form.validate_on_submit():
        abort(400)
    user = _load(user_id)
    name = user.name
    if _perform(user, "admin.user.delete", lambda: delete_user(user, actor_id=current_user.id),
                f"{name} is deleted."):
        return redirect(url_for("admin.users"))
    return redirect(url_for("admin.users_show", user_id=user_id))

