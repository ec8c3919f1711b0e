"""The admin area. One module per section, all on this blueprint, all admin-only."""
from flask import Blueprint, abort
from flask_login import current_user

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_admin():
    from blueprints import login_manager
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    return None


from . import audit, authentication, flight, groups, provisioning, routes, users  # noqa: E402,F401
