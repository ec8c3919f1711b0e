from flask import Blueprint

bp = Blueprint("saml", __name__)

from . import routes  # noqa: E402,F401
