"""Forms of the admin area's users, groups, audit and flight-recorder pages.

Filter forms read the query string and carry no CSRF token (they change
nothing); every form that changes something is a FlaskForm (CSRF-checked).
"""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (DateField, EmailField, Form, IntegerField, PasswordField, SelectChoice,
                     SelectField, StringField, TextAreaField)
from wtforms.validators import (DataRequired, Email, EqualTo, InputRequired, Length, NumberRange, Optional)

from blueprints.auth.forms import MIN_PASSWORD_LENGTH, FoldedLength


def options(*pairs: tuple[str, str]) -> list[SelectChoice]:
    """(value, label) pairs as the choices WTForms wants."""
    return [SelectChoice(value, label) for value, label in pairs]


class FilterForm(Form):
    """A GET form: bad values fall back to "no filter" instead of an error page."""

    def __init__(self, args, **kwargs):
        super().__init__(args, **kwargs)
        self.validate()
        for field in self:
            if field.errors:
                field.data = field.default
                field.errors = []


class UserFilterForm(FilterForm):
    q = StringField("Search", validators=[Optional(), Length(max=200)],
                    description="Name, user name, email or department.")
    status = SelectField("Status", choices=options(("", "Any status"), ("active", "Active"), ("inactive", "Deactivated")),
                         default="")
    source = SelectField("Source", choices=options(("", "Any source"), ("local", "Local"), ("scim", "SCIM"),
                                            ("saml", "SAML")), default="")
    role = SelectField("Role", choices=options(("", "Anyone"), ("admin", "Admins"), ("member", "Not admins")), default="")
    sort = SelectField("Sort by", default="user_name", choices=options(
        ("user_name", "User name (A–Z)"), ("-user_name", "User name (Z–A)"),
        ("-created", "Newest first"), ("created", "Oldest first"),
        ("-last_login", "Signed in most recently"), ("last_login", "Signed in least recently"),
        ("department", "Department (A–Z)"),
    ))


class GroupFilterForm(FilterForm):
    q = StringField("Search", validators=[Optional(), Length(max=200)])
    source = SelectField("Source", choices=options(("", "Any source"), ("local", "Local"), ("scim", "SCIM"),
                                            ("saml", "SAML")), default="")


class AuditFilterForm(FilterForm):
    since = DateField("From (UTC)", validators=[Optional()])
    until = DateField("To (UTC, inclusive)", validators=[Optional()])
    actor = StringField("Actor", validators=[Optional(), Length(max=255)],
                        description="Who did it, e.g. an admin's user name or scim:token name.")
    action = StringField("Action", validators=[Optional(), Length(max=64)],
                         description="Exact, or a prefix such as saml. or admin.user.",
                         render_kw={"list": "known-actions"})
    target = StringField("Target", validators=[Optional(), Length(max=512)])
    outcome = SelectField("Outcome", choices=options(("", "Any outcome"), ("success", "Success"), ("failure", "Failure")),
                          default="")
    reference = StringField("Reference code", validators=[Optional(), Length(max=16)])


class SamlFlightFilterForm(FilterForm):
    reference = StringField("Reference code", validators=[Optional(), Length(max=16)])
    verdict = SelectField("Verdict", choices=options(("", "Any verdict"), ("accepted", "Accepted"),
                                              ("rejected", "Rejected")), default="")


class ScimFlightFilterForm(FilterForm):
    outcome = SelectField("Status", choices=options(("", "Any status"), ("errors", "Errors only (4xx, 5xx)")), default="")


class ProfileForm(FlaskForm):
    user_name = StringField("User name", validators=[DataRequired(), Length(max=255), FoldedLength(255)])
    given_name = StringField("First name", validators=[Optional(), Length(max=255)])
    family_name = StringField("Last name", validators=[Optional(), Length(max=255)])
    display_name = StringField("Display name", validators=[Optional(), Length(max=255)])
    email = EmailField("Email", validators=[Optional(), Email(check_deliverability=False), Length(max=320),
                                            FoldedLength(320)])
    title = StringField("Job title", validators=[Optional(), Length(max=255)])
    department = StringField("Department", validators=[Optional(), Length(max=255)])
    employee_number = StringField("Employee number", validators=[Optional(), Length(max=255)])


class PasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[
        DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=1024,
                               message=f"Use at least {MIN_PASSWORD_LENGTH} characters.")],
        description=f"At least {MIN_PASSWORD_LENGTH} characters. Tell the person yourself; Lobby sends no email.",
        render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("New password again", validators=[DataRequired(), EqualTo("password", "The passwords differ.")],
                            render_kw={"autocomplete": "new-password"})


class GroupForm(FlaskForm):
    display_name = StringField("Name", validators=[DataRequired(), Length(max=255), FoldedLength(255)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=2000)])


class AddMemberForm(FlaskForm):
    login = StringField("User name or email", validators=[DataRequired(), Length(max=320)],
                        render_kw={"autocomplete": "off"})


class RetentionForm(FlaskForm):
    retention_days = IntegerField("Keep audit events for (days)",
                                  validators=[InputRequired(), NumberRange(min=7, max=3650)],
                                  description="Older events are deleted when you save and by `flask audit purge` "
                                              "(run it daily from cron). Between 7 and 3650 days.")

