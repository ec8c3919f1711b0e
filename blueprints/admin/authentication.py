"""Admin section: Authentication — the SAML2 SSO provider, the values to paste into the IdP,
a test sign-in, and the email + password switch."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, IntegerField, RadioField, SelectChoice, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from blueprints.auth.forms import PostForm
from blueprints.saml.cli import attribute_statements
from blueprints.saml.metadata import MetadataError, describe_certificate
from blueprints.saml.routes import browser_binding
from blueprints.saml.provider import (METHODS, ProviderError, refresh_metadata, resolve_idp, save_provider,
                                      set_password_login, sso_verified_since_change)
from blueprints.saml.service import (IDP_INITIATED_RELAY_STATE, SamlError, ServiceProvider, load_provider,
                                     start_login)
from blueprints.security import CSP
from models import SamlResponseLog, db, settings
from models.setting import DEFAULT_ATTRIBUTE_MAP

from . import bp

ATTRIBUTE_LABELS = {
    "given_name": "First name", "family_name": "Last name", "email": "Email", "user_name": "Login (userName)",
    "display_name": "Display name", "department": "Department (optional)", "title": "Job title (optional)",
}
MAX_UPLOAD_BYTES = 1024 * 1024
_ORIGIN_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$")


class SamlProviderForm(FlaskForm):
    active = BooleanField("Activate the SAML2 SSO")
    method = RadioField("Configuration method", choices=[SelectChoice(value, label) for value, label in METHODS.items()], default="metadata_file",
                        validators=[InputRequired()])
    metadata_file = FileField("Metadata XML file",
                              description="Okta: paste the box \"Provide the following IDP metadata to your SP "
                                          "provider\" into an empty .xml file and upload it here.")
    metadata_url = StringField("Metadata URL", validators=[Optional(), Length(max=2048)],
                               description="Fetched when you save; use Refresh to fetch it again.")
    idp_entity_id = StringField("IdP entity ID", validators=[Optional(), Length(max=1024)],
                                description="Okta: \"Identity Provider Issuer\".")
    idp_sso_url = StringField("IdP single sign-on URL", validators=[Optional(), Length(max=2048)],
                              description="Okta: \"Identity Provider Single Sign-On URL\".")
    idp_certificates = TextAreaField("Signing certificates (PEM)", validators=[Optional(), Length(max=100_000)],
                                     description="One or more, each from -----BEGIN CERTIFICATE----- to "
                                                 "-----END CERTIFICATE----- (several during a rollover).")
    label = StringField("SAML2 Label", validators=[InputRequired(), Length(max=100)],
                        description="The text on the sign-in button, e.g. SSO Login.")
    group_attribute = StringField("Synchronize Groups", validators=[Optional(), Length(max=255)],
                                  description="Optional: the name of a SAML attribute whose values become the "
                                              "user's groups. Leave it empty when the IdP provisions groups over "
                                              "SCIM (Okta does).")
    jit_create = BooleanField("Create users at their first sign-in (just-in-time)")
    clock_skew_seconds = IntegerField("Clock skew tolerance (seconds)", default=120,
                                      validators=[InputRequired(), NumberRange(min=0, max=600)])
    attr_given_name = StringField(ATTRIBUTE_LABELS["given_name"], validators=[Optional(), Length(max=512)])
    attr_family_name = StringField(ATTRIBUTE_LABELS["family_name"], validators=[Optional(), Length(max=512)])
    attr_email = StringField(ATTRIBUTE_LABELS["email"], validators=[Optional(), Length(max=512)])
    attr_user_name = StringField(ATTRIBUTE_LABELS["user_name"], validators=[Optional(), Length(max=512)])
    attr_display_name = StringField(ATTRIBUTE_LABELS["display_name"], validators=[Optional(), Length(max=512)])
    attr_department = StringField(ATTRIBUTE_LABELS["department"], validators=[Optional(), Length(max=512)])
    attr_title = StringField(ATTRIBUTE_LABELS["title"], validators=[Optional(), Length(max=512)])

    def attribute_fields(self):
        return [getattr(self, f"attr_{key}") for key in DEFAULT_ATTRIBUTE_MAP]


class PasswordLoginForm(FlaskForm):
    password_login = BooleanField("Allow email + password sign-in")


def _actor() -> str:
    return current_user.user_name


def _service_provider() -> ServiceProvider:
    return ServiceProvider(current_app.config["BASE_URL"])


def _certificates(pems):
    infos = []
    for pem in pems:
        try:
            infos.append(describe_certificate(pem))
        except MetadataError:
            continue
    return infos


@bp.route("/authentication")
def authentication():
    values = settings.section("saml")
    provider = load_provider()
    test_result = None
    reference = request.args.get("test", "")
    if reference:
        test_result = SamlResponseLog.query.filter_by(reference=reference[:16]).order_by(
            SamlResponseLog.id.desc()).first()
    recent = SamlResponseLog.query.order_by(SamlResponseLog.id.desc()).limit(10).all()
    page = render_template(
        "admin/authentication/index.html", values=values, provider=provider, sp=_service_provider(),
        certificates=_certificates(values["idp_certificates"]), methods=METHODS,
        statements=attribute_statements(values["attribute_map"]), relay_state=IDP_INITIATED_RELAY_STATE,
        password_form=PasswordLoginForm(password_login=settings.get("auth", "password_login")),
        sso_verified=sso_verified_since_change(), test_reference=reference, test_result=test_result,
        recent=recent, post_form=PostForm)
    return page, {"Content-Security-Policy": _csp_allowing_idp(values["idp_sso_url"])}


def _csp_allowing_idp(sso_url: str) -> str:
    """The page CSP, with the IdP's origin added to form-action.

    "Test sign-in" is a form POST answered by a redirect to the IdP; Chromium applies
    form-action to that redirect too, so with 'self' alone the button silently does nothing.
    """
    parts = urlsplit(sso_url or "")
    if parts.scheme not in ("http", "https") or not _ORIGIN_HOST_RE.match(parts.netloc or ""):
        return CSP  # nothing usable (or something that could smuggle another directive in)
    return CSP.replace("form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}")


@bp.route("/authentication/saml2", methods=["GET", "POST"])
def authentication_saml():
    """Add provider > SAML2 SSO: the guide's fields, validated on save."""
    values = settings.section("saml")
    form = SamlProviderForm(data=None if request.method == "POST" else _form_data(values))
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                result = _save(form, values)
            except ProviderError as error:
                db.session.rollback()
                target = getattr(form, error.field_name, None) if error.field_name else None
                if target is not None and error.field_name != "password_login":
                    target.errors = list(target.errors) + [error.message]
                flash(error.message, "error")
                status = 400
            else:
                db.session.commit()
                for warning in result.warnings:
                    flash(warning, "warning")
                flash("SAML2 SSO settings saved." if result.diff else "Nothing changed.", "success")
                return redirect(url_for("admin.authentication"))
        else:
            status = 400
    return render_template("admin/authentication/saml.html", form=form, values=values,
                           certificates=_certificates(values["idp_certificates"])), status


def _form_data(values: dict) -> dict:
    data = {
        "active": values["active"], "method": values["method"], "metadata_url": values["metadata_url"],
        "idp_entity_id": values["idp_entity_id"], "idp_sso_url": values["idp_sso_url"],
        "idp_certificates": "".join(values["idp_certificates"]), "label": values["label"],
        "group_attribute": values["group_attribute"], "jit_create": values["jit_create"],
        "clock_skew_seconds": values["clock_skew_seconds"],
    }
    if not values["idp_entity_id"] and not values["active"]:
        data["active"] = True  # adding a provider: the guide's first step is "Activate the SAML2 SSO"
    for key in DEFAULT_ATTRIBUTE_MAP:
        data[f"attr_{key}"] = values["attribute_map"].get(key, "")
    return data


def _save(form: SamlProviderForm, current: dict):
    upload = form.metadata_file.data
    metadata_bytes = None
    if upload is not None and getattr(upload, "filename", ""):
        metadata_bytes = upload.stream.read(MAX_UPLOAD_BYTES + 1)
        if len(metadata_bytes) > MAX_UPLOAD_BYTES:
            raise ProviderError("The metadata file is larger than 1 MB; that is not IdP metadata.", "metadata_file")
    idp, source = resolve_idp(
        form.method.data, metadata_bytes=metadata_bytes, metadata_url=form.metadata_url.data or "",
        entity_id=form.idp_entity_id.data or "", sso_url=form.idp_sso_url.data or "",
        certificates_pem=form.idp_certificates.data or "", current=current)
    attribute_map = {key: getattr(form, f"attr_{key}").data or "" for key in DEFAULT_ATTRIBUTE_MAP}
    return save_provider(
        actor=_actor(), active=form.active.data, method=form.method.data, label=form.label.data,
        group_attribute=form.group_attribute.data or "", jit_create=form.jit_create.data,
        clock_skew_seconds=form.clock_skew_seconds.data, attribute_map=attribute_map, idp=idp, source=source)


@bp.route("/authentication/saml2/refresh", methods=["POST"])
def authentication_saml_refresh():
    if not PostForm().validate_on_submit():
        flash("The form expired. Try again.", "error")
        return redirect(url_for("admin.authentication"))
    try:
        result = refresh_metadata(_actor())
    except ProviderError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("admin.authentication"))
    db.session.commit()
    for warning in result.warnings:
        flash(warning, "warning")
    flash("Metadata fetched again: " + ("settings updated." if result.diff else "nothing changed."), "success")
    return redirect(url_for("admin.authentication"))


@bp.route("/authentication/saml2/test", methods=["POST"])
def authentication_saml_test():
    """Start an SP-initiated login whose outcome is reported back on the Authentication page."""
    if not PostForm().validate_on_submit():
        flash("The form expired. Try again.", "error")
        return redirect(url_for("admin.authentication"))
    try:
        location = start_login(_service_provider(), binding=browser_binding(), next_path=url_for("admin.authentication"),
                               purpose="test")
    except SamlError:
        db.session.rollback()
        flash("Activate SAML2 SSO and configure the identity provider before testing.", "error")
        return redirect(url_for("admin.authentication"))
    db.session.commit()
    return redirect(location)


@bp.route("/authentication/password", methods=["POST"])
def authentication_password():
    form = PasswordLoginForm()
    if not form.validate_on_submit():
        flash("The form expired. Try again.", "error")
        return redirect(url_for("admin.authentication"))
    try:
        changed = set_password_login(bool(form.password_login.data), _actor())
    except ProviderError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("admin.authentication"))
    db.session.commit()
    if changed:
        flash("Email + password sign-in is " + ("on." if form.password_login.data else
                                               "off: SSO is the only way in. Recovery: flask auth "
                                               "enable-password-login"), "success")
    return redirect(url_for("admin.authentication"))
