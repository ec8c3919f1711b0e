"""Admin section: Provisioning — SCIM on/off, the base URL and tokens to paste into the IdP,
the policy for IdP groups that meet local groups, and the IdP's recent requests."""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectChoice, StringField
from wtforms.validators import InputRequired, Length

from blueprints.auth.forms import PostForm
from blueprints.scim import PREFIX
from models import ScimRequestLog, ScimToken, db, record_event, settings, utcnow

from . import bp

GROUP_POLICIES = [
    SelectChoice("reject", "Keep them apart: the IdP gets a 409 error naming the local group (rename one of them)"),
    SelectChoice("adopt", "Let the IdP adopt the local group of the same name (it then manages its members)"),
]


class ScimSettingsForm(FlaskForm):
    enabled = BooleanField("Accept SCIM provisioning from the IdP")
    local_group_conflict = RadioField("When the IdP pushes a group whose name a local group already has",
                                      choices=GROUP_POLICIES, validators=[InputRequired()])


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[InputRequired(), Length(max=255)],
                       description="Who uses it, e.g. \"Okta\" or \"Entra ID\".")


class RenameForm(FlaskForm):
    name = StringField("New name", validators=[InputRequired(), Length(max=255)])


def _page(token_form=None, new_token=None, status=200):
    values = settings.section("scim")
    # formdata=None: this page is also the answer to the token POST, whose form has no "enabled"
    # box; read from it, the box would show SCIM off (and a Save would turn it off).
    settings_form = ScimSettingsForm(formdata=None, data={"enabled": values["enabled"],
                                                          "local_group_conflict": values["local_group_conflict"]})
    tokens = ScimToken.query.order_by(ScimToken.revoked_at.isnot(None), ScimToken.created_at.desc()).all()
    requests = (ScimRequestLog.query.order_by(ScimRequestLog.id.desc())
                .limit(values["flight_recorder_size"]).all())
    return render_template(
        "admin/provisioning/index.html",
        base_url=current_app.config["BASE_URL"] + PREFIX,
        enabled=values["enabled"],
        settings_form=settings_form,
        token_form=token_form or TokenForm(),
        rename_form=RenameForm(),
        action_form=PostForm(),
        tokens=tokens,
        new_token=new_token,
        requests=requests,
        rate_limit=current_app.config.get("SCIM_RATE_LIMIT_PER_MINUTE"),
    ), status


@bp.route("/provisioning")
def provisioning():
    return _page()


@bp.post("/provisioning/settings")
def provisioning_settings():
    form = ScimSettingsForm()
    if not form.validate_on_submit():
        flash("The settings were not saved: choose a group policy.", "error")
        return redirect(url_for("admin.provisioning"))
    diff = settings.update("scim", {"enabled": form.enabled.data,
                                    "local_group_conflict": form.local_group_conflict.data})
    if diff:
        record_event("settings.scim", target="scim", details=settings.redact("scim", diff))
        db.session.commit()
        flash("Provisioning settings saved.", "success")
    else:
        flash("Nothing changed.", "info")
    return redirect(url_for("admin.provisioning"))


@bp.post("/provisioning/tokens")
def provisioning_token_create():
    form = TokenForm()
    if not form.validate_on_submit():
        return _page(token_form=form, status=400)
    row, secret = ScimToken.issue(form.name.data.strip(), created_by=current_user.user_name)
    db.session.flush()
    record_event("scim.token.create", target=row.name, details={"id": row.id, "prefix": row.prefix})
    db.session.commit()
    # Rendered, not redirected: the secret must not travel through the session or a flash message.
    return _page(new_token={"name": row.name, "secret": secret})


def _token(token_id: int) -> ScimToken:
    row = db.session.get(ScimToken, token_id)
    if row is None:
        abort(404)
    return row


@bp.post("/provisioning/tokens/<int:token_id>/rename")
def provisioning_token_rename(token_id: int):
    row = _token(token_id)
    form = RenameForm()
    if not form.validate_on_submit():
        flash("Give the token a name of 1 to 255 characters.", "error")
        return redirect(url_for("admin.provisioning"))
    old, new = row.name, form.name.data.strip()
    if old != new:
        row.name = new
        record_event("scim.token.rename", target=new, details={"id": row.id, "name": {"old": old, "new": new}})
        db.session.commit()
        flash(f"Token renamed to {new}.", "success")
    return redirect(url_for("admin.provisioning"))


@bp.post("/provisioning/tokens/<int:token_id>/revoke")
def provisioning_token_revoke(token_id: int):
    row = _token(token_id)
    if PostForm().validate_on_submit() and not row.revoked:
        row.revoked_at = utcnow()
        record_event("scim.token.revoke", target=row.name, details={"id": row.id})
        db.session.commit()
        flash(f"Token {row.name} is revoked: the IdP's next request with it gets 401.", "success")
    return redirect(url_for("admin.provisioning"))
