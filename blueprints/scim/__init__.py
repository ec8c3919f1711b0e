from flask import Blueprint

bp = Blueprint("scim", __name__)

from . import routes  # noqa: E402,F401
