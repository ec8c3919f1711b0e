"""Admin section: Groups — local groups made here, IdP groups shown read-only."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from blueprints.auth.forms import PostForm
from models import Group, Membership, User, db, record_event, settings
from models.user import fold

from . import bp
from .directory import (Refused, add_member, adopt_group, conflicting_names, create_group, delete_group,
                        group_conflict, group_read_only, remove_member, rename_group)
from .forms import AddMemberForm, GroupFilterForm, GroupForm
from .paging import capped_count, keyset_page


def _member_counts(group_ids: list[str]) -> dict[str, int]:
    """Members per group for one page of groups: one grouped query, not one count per row."""
    if not group_ids:
        return {}
    rows = db.session.execute(select(Membership.group_id, func.count()).where(Membership.group_id.in_(group_ids))
                              .group_by(Membership.group_id))
    return dict(rows.all())


def _list_page(create_form=None, status=200):
    filters = GroupFilterForm(request.args)
    query = Group.query
    if filters.q.data:
        query = query.filter(Group.display_name_key.contains(fold(filters.q.data.strip()), autoescape=True))
    if filters.source.data:
        query = query.filter(Group.source == filters.source.data)
    page = keyset_page(query, key=Group.display_name_key, id_column=Group.id, descending=False,
                       after=request.args.get("after") or None, before=request.args.get("before") or None)
    page.total, page.total_capped = capped_count(query, Group.id)
    counts = _member_counts([group.id for group in page.items])
    conflicts = conflicting_names()
    kept = {name: value for name, value in request.args.items() if name not in ("after", "before") and value}
    policy = settings.get("scim", "local_group_conflict")
    return render_template("admin/groups/list.html", filters=filters, page=page, counts=counts, kept=kept,
                           conflicts=conflicts, read_only=group_read_only,
                           create_form=create_form or GroupForm(formdata=None), policy=policy), status


@bp.route("/groups")
def groups():
    return _list_page()


def _refusal(action: str, target: str, refusal: Refused) -> None:
    db.session.rollback()
    record_event(action, target=target, outcome="failure", reason=refusal.message)
    db.session.commit()
    flash(refusal.message, "error")


@bp.route("/groups/new", methods=["POST"])
def groups_create():
    form = GroupForm()
    if not form.validate_on_submit():
        return _list_page(create_form=form, status=400)
    try:
        group = create_group(form.display_name.data, form.description.data)
        db.session.flush()
    except Refused as refusal:
        _refusal("admin.group.create", form.display_name.data.strip(), refusal)
        return _list_page(create_form=form, status=409)
    db.session.commit()
    flash(f"Group {group.display_name} is created.", "success")
    return redirect(url_for("admin.groups_show", group_id=group.id))


def _load(group_id: str) -> Group:
    group = db.session.get(Group, group_id)
    if group is None:
        abort(404)
    return group


def _render_group(group: Group, rename_form=None, member_form=None, status=200):
    members_query = User.query.join(Membership, Membership.user_id == User.id).filter(Membership.group_id == group.id)
    page = keyset_page(members_query, key=User.user_name_key, id_column=User.id, descending=False,
                       after=request.args.get("after") or None, before=request.args.get("before") or None)
    page.total, page.total_capped = capped_count(members_query, User.id)
    return render_template(
        "admin/groups/show.html", group=group, page=page, read_only=group_read_only(group),
        conflict=group_conflict(group), kept={"group_id": group.id},
        rename_form=rename_form or GroupForm(formdata=None, obj=group),
        member_form=member_form or AddMemberForm(formdata=None)), status


@bp.route("/groups/<group_id>")
def groups_show(group_id):
    return _render_group(_load(group_id))


@bp.route("/groups/<group_id>/rename", methods=["POST"])
def groups_rename(group_id):
    group = _load(group_id)
    form = GroupForm()
    if not form.validate_on_submit():
        return _render_group(group, rename_form=form, status=400)
    name = group.display_name
    try:
        diff = rename_group(group, form.display_name.data, form.description.data)
    except Refused as refusal:
        _refusal("admin.group.rename", name, refusal)
        return redirect(url_for("admin.groups_show", group_id=group_id))
    db.session.commit()
    flash("Saved." if diff else "Nothing changed.", "success" if diff else "info")
    return redirect(url_for("admin.groups_show", group_id=group_id))


def _button(group_id: str, action: str, change, done: str, after=None):
    form = PostForm()
    if not form.validate_on_submit():
        abort(400)
    group = _load(group_id)
    name = group.display_name
    try:
        change(group)
    except Refused as refusal:
        _refusal(action, name, refusal)
        return redirect(url_for("admin.groups_show", group_id=group_id))
    db.session.commit()
    flash(done.format(name=name), "success")
    return redirect(after or url_for("admin.groups_show", group_id=group_id))


@bp.route("/groups/<group_id>/delete", methods=["POST"])
def groups_delete(group_id):
    return _button(group_id, "admin.group.delete", delete_group, "Group {name} is deleted.",
                   after=url_for("admin.groups"))


@bp.route("/groups/<group_id>/adopt", methods=["POST"])
def groups_adopt(group_id):
    return _button(group_id, "admin.group.adopt", adopt_group,
                   "Your identity provider now owns {name}: its next push of that group links to it.")


@bp.route("/groups/<group_id>/members/<user_id>/remove", methods=["POST"])
def groups_remove_member(group_id, user_id):
    return _button(group_id, "admin.group.remove_member", lambda group: remove_member(group, user_id),
                   "Removed from {name}.")


@bp.route("/groups/<group_id>/members", methods=["POST"])
def groups_add_member(group_id):
    group = _load(group_id)
    form = AddMemberForm()
    if not form.validate_on_submit():
        return _render_group(group, member_form=form, status=400)
    name = group.display_name
    try:
        user = add_member(group, form.login.data)
    except Refused as refusal:
        _refusal("admin.group.add_member", name, refusal)
        return redirect(url_for("admin.groups_show", group_id=group_id))
    db.session.commit()
    flash(f"{user.name} is now in {name}.", "success")
    return redirect(url_for("admin.groups_show", group_id=group_id))
