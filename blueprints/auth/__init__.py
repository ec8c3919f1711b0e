"""Sign-in page, password sign-in, logout, first-run set-up and the employee home page."""
from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import routes  # noqa: E402,F401
