from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

from models.user import fold

MIN_PASSWORD_LENGTH = 12


class FoldedLength:
    """Names are compared (and indexed) case-folded, and folding can lengthen them ("ß" is "ss"):
    the folded form must fit its column too."""

    def __init__(self, limit: int):
        self.limit = limit

    def __call__(self, _form, field):
        folded = len(fold(field.data)) if field.data else 0
        if folded > self.limit:
            raise ValidationError(f"This is {folded} characters long once case is folded (as Lobby "
                                  f"compares it); at most {self.limit}.")


class LoginForm(FlaskForm):
    login = StringField("Email or username", validators=[DataRequired(), Length(max=320)],
                        render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "current-password"})
    next = HiddenField()


class SetupForm(FlaskForm):
    code = StringField("Set-up code", validators=[DataRequired(), Length(max=64)],
                       description="Printed in the console where Lobby was started.",
                       render_kw={"autocomplete": "off", "autofocus": True})
    email = EmailField("Your email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=320)],
                       render_kw={"autocomplete": "username"})
    given_name = StringField("First name", validators=[DataRequired(), Length(max=255)],
                             render_kw={"autocomplete": "given-name"})
    family_name = StringField("Last name", validators=[DataRequired(), Length(max=255)],
                              render_kw={"autocomplete": "family-name"})
    password = PasswordField("Password", validators=[
                                 DataRequired(),
                                 Length(min=MIN_PASSWORD_LENGTH, max=1024,
                                        message=f"Use at least {MIN_PASSWORD_LENGTH} characters.")],
                             description=f"At least {MIN_PASSWORD_LENGTH} characters.",
                             render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("Password again", validators=[DataRequired(), EqualTo("password", "The passwords differ.")],
                            render_kw={"autocomplete": "new-password"})


class PostForm(FlaskForm):
    """A form with nothing but its CSRF token, for buttons that POST (logout, actions)."""
