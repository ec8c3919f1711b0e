from __future__ import annotations

import secrets

from flask import (abort, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_required, login_user, logout_user

from blueprints import login_manager
from blueprints.security import client_address, safe_next_path
from models import EndedSession, User, db, record_event, settings, utcnow

from . import bp
from .forms import LoginForm, PostForm, SetupForm
from .service import AuthError, admin_exists, check_password_login, create_first_admin, setup_code

login_manager.login_view = "auth.login"
login_manager.login_message = None


@login_manager.user_loader
def load_user(session_id: str):
    """Sessions carry "<user id>:<epoch>"; a bumped epoch or a deactivation ends them."""
    user_id, _, epoch = session_id.partition(":")
    user = db.session.get(User, user_id)
    if user is None or not user.active or str(user.session_epoch) != epoch:
        return None
    sid = session.get("sid")
    if isinstance(sid, str) and EndedSession.has_ended(sid):
        return None  # signed out: a copy of the cookie does not bring the session back
    return user


def sso_providers() -> list[dict]:
    """Buttons for /login: each SSO blueprint registers a callable returning {label, url} or None."""
    buttons = []
    for provider in current_app.extensions.get("lobby.sso_buttons", []):
        button = provider()
        if button:
            buttons.append(button)
    return buttons


@bp.app_context_processor
def inject_helpers():
    return {"post_form": PostForm}


def process_cache() -> dict:
    """Facts this process may remember between requests (only ever ones that cannot become false)."""
    return current_app.extensions.setdefault("lobby.process_cache", {})


# --- first run ---------------------------------------------------------------------------

# /login stays reachable (it says set-up is pending) so that a health check on it answers 200.
_SETUP_EXEMPT_PREFIXES = ("/setup", "/login", "/static/", "/api/", "/internal-api/", "/auth/saml2")


@bp.before_app_request
def require_first_admin():
    """Until an admin exists, every page leads to the set-up page."""
    if request.path.startswith(_SETUP_EXEMPT_PREFIXES) or setup_done():
        return None
    return redirect(url_for("auth.setup"))


def setup_done() -> bool:
    """Whether an admin exists; once true it stays true, so each process asks only until then."""
    cache = process_cache()
    if not cache.get("setup_done") and admin_exists():
        cache["setup_done"] = True
    return bool(cache.get("setup_done"))


def announce_setup_code() -> str:
    code = setup_code(current_app.config["SECRET_KEY"])
    cache = process_cache()
    if not cache.get("setup_code_announced"):
        current_app.logger.warning("Lobby is not set up yet. Open %s/setup and enter the set-up code: %s",
                                   current_app.config["BASE_URL"], code)
        cache["setup_code_announced"] = True
    return code


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    if setup_done():
        return redirect(url_for("auth.login"))
    expected = announce_setup_code()
    form = SetupForm()
    if form.validate_on_submit():
        try:
            user = create_first_admin(code=form.code.data, expected_code=expected, email=form.email.data,
                                      given_name=form.given_name.data, family_name=form.family_name.data,
                                      password=form.password.data)
        except AuthError as error:
            db.session.rollback()
            record_event("admin.setup", outcome="failure", reason=error.reason)
            db.session.commit()
            flash(error.public, "error")
            return render_template("auth/setup.html", form=form), error.status
        db.session.commit()
        process_cache()["setup_done"] = True
        _start_session(user)
        flash("Welcome to Lobby. Next: connect your identity provider.", "success")
        return redirect(url_for("admin.dashboard"))
    return render_template("auth/setup.html", form=form), 400 if form.errors else 200


# --- sign in and out ---------------------------------------------------------------------

def _start_session(user: User) -> None:
    """A fresh session for a fresh sign-in: nothing from before it survives."""
    session.clear()
    login_user(user)
    session.permanent = True
    session["sid"] = secrets.token_urlsafe(24)  # what signing out records as ended
    user.last_login_at = utcnow()
    db.session.commit()


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_path = safe_next_path(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_path)
    password_allowed = settings.get("auth", "password_login")
    providers = sso_providers()
    # With SSO the only way in, go straight to the IdP, but not right after an SSO failure.
    if (request.method == "GET" and not password_allowed and len(providers) == 1
            and not request.args.get("sso_error") and not session.get("sso_failed")):
        return redirect(providers[0]["url"])
    form = LoginForm(next=next_path)
    status = 200
    if request.method == "POST":
        if not password_allowed:
            abort(403)
        if form.validate_on_submit():
            cfg = current_app.config
            try:
                user = check_password_login(
                    form.login.data, form.password.data, client_address(),
                    max_account=cfg["LOGIN_MAX_FAILURES_PER_ACCOUNT"],
                    max_address=cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"],
                    window=cfg["LOGIN_THROTTLE_WINDOW_SECONDS"])
            except AuthError as error:
                record_event("auth.login", actor="anonymous", target=form.login.data[:255], outcome="failure",
                             reason=error.reason, details={"method": "password"})
                db.session.commit()
                flash(error.public, "error")
                status = error.status
            else:
                record_event("auth.login", actor=user.user_name, target=user.user_name,
                             details={"method": "password"})
                _start_session(user)
                return redirect(safe_next_path(form.next.data))
        else:
            status = 400
    setup_pending = not setup_done()
    return render_template("auth/login.html", form=form, providers=providers, setup_pending=setup_pending,
                           password_allowed=password_allowed, next_path=next_path), status


@bp.route("/logout", methods=["POST"])
def logout():
    form = PostForm()
    if not form.validate_on_submit():
        abort(400)
    if current_user.is_authenticated:
        record_event("auth.logout", target=current_user.user_name)
        if isinstance(session.get("sid"), str):
            EndedSession.end(session["sid"], int(current_app.permanent_session_lifetime.total_seconds()))
        db.session.commit()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/")
@login_required
def home():
    return render_template("auth/home.html", user=current_user)
