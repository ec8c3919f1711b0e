"""Sign-in rules that do not depend on HTTP: first-run set-up, throttling, password checks."""
from __future__ import annotations

import base64
import hashlib
import hmac

from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from models import LoginFailure, Setting, User, db, record_event, utcnow
from models.user import fold

# Checked when no user matches, so a wrong login costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("lobby-dummy-password")


class AuthError(Exception):
    """A sign-in or set-up refused; ``public`` is safe to show, ``reason`` goes to the audit log."""

    def __init__(self, public: str, reason: str, status: int = 400):
        super().__init__(reason)
        self.public = public
        self.reason = reason
        self.status = status


def setup_code(secret_key: str) -> str:
    """The one-time code for the first-run page, the same in every process of one deployment."""
    digest = hmac.new(secret_key.encode(), b"lobby first-run set-up", hashlib.sha256).digest()
    text = base64.b32encode(digest).decode()[:10]
    return f"{text[:5]}-{text[5:]}"


def admin_exists() -> bool:
    return db.session.query(User.id).filter(User.is_admin.is_(True)).first() is not None


def create_first_admin(*, code: str, expected_code: str, email: str, given_name: str, family_name: str,
                       password: str) -> User:
    if not hmac.compare_digest(code.strip().upper().replace(" ", ""), expected_code):
        raise AuthError("That set-up code is not right. Copy it from the console where Lobby was started.",
                        "wrong set-up code", 403)
    if admin_exists():
        raise AuthError("Lobby is already set up. Sign in instead.", "set-up attempted after first admin", 409)
    # A unique settings row makes the first admin a one-time event even under concurrent requests.
    db.session.add(Setting(section="system", name="first_admin_created", value=utcnow().isoformat()))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise AuthError("Lobby is already set up. Sign in instead.", "concurrent set-up", 409) from None
    user = create_or_promote_admin(email=email, given_name=given_name, family_name=family_name, password=password)
    record_event("admin.create", actor=user.user_name, target=user.user_name, details={"via": "first-run set-up"})
    return user


def create_or_promote_admin(*, email: str, password: str | None, given_name: str | None = None,
                            family_name: str | None = None, display_name: str | None = None) -> User:
    """Make EMAIL's user an admin, creating it if needed.

    A first and last name are kept as the user's name parts (as an IdP's SCIM push fills them):
    Okta's SCIM spec test checks them on the first user listed, which on a fresh install is
    this admin. The display name defaults to "first last".
    """
    given_name, family_name = (given_name or "").strip() or None, (family_name or "").strip() or None
    display_name = (display_name or "").strip() or " ".join(p for p in (given_name, family_name) if p) or None
    user = User.find_by_login(email)
    if user is None:
        user = User(user_name=email.strip(), source="local")
        user.set_primary_email(email.strip())
        db.session.add(user)
    user.is_admin = True
    user.active = True
    if password:
        user.set_password(password)
    if given_name:
        user.given_name = given_name
    if family_name:
        user.family_name = family_name
    if display_name:
        user.display_name = display_name
    return user


def throttle_keys(login: str, address: str | None) -> tuple[str, str]:
    return f"account:{fold(login.strip())[:300]}", f"address:{address or 'unknown'}"


def check_password_login(login: str, password: str, address: str | None, *, max_account: int,
                         max_address: int, window: int) -> User:
    """The user these credentials belong to, or AuthError (never saying which part was wrong)."""
    account_key, address_key = throttle_keys(login, address)
    if (LoginFailure.count_recent(account_key, window) >= max_account
            or LoginFailure.count_recent(address_key, window) >= max_address):
        raise AuthError("Too many failed sign-ins. Wait 15 minutes and try again.",
                        "throttled after repeated failures", 429)
    user = User.find_by_login(login)
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        reason = "no such user"
    elif not user.check_password(password):
        reason = "wrong password" if user.password_hash else "user has no password (SSO only)"
    elif not user.active:
        reason = "user is deactivated"
    else:
        LoginFailure.clear(account_key)
        return user
    LoginFailure.add(account_key, address_key, keep_seconds=window)
    raise AuthError("That email or password is not right.", reason, 401)
