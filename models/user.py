"""People who can sign in to Lobby, however they got here (local, SCIM, SAML)."""
from __future__ import annotations

import unicodedata

from flask import current_app, has_app_context
from flask_login import UserMixin
from sqlalchemy import event, orm
from werkzeug.security import check_password_hash, generate_password_hash

from . import db, new_id, utcnow

SOURCES = ("local", "scim", "saml")


def fold(value: str | None) -> str | None:
    """The case-insensitive key we index names and emails under.

    Unicode's canonical caseless match: spellings that look alike because they are canonically
    equivalent (a precomposed "é" and "e" followed by a combining accent) fold to one key, so
    they cannot be two users or two groups. Migration keys01 brought stored keys to this form.
    """
    if value is None:
        return None
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", value).casefold())


class User(UserMixin, db.Model):
    __tablename__ = "users"
    # The admin list pages by (created_at, id) without sorting the whole table.
    __table_args__ = (db.Index("ix_users_created_at_id", "created_at", "id"),)

    id = db.Column(db.String(36), primary_key=True, default=new_id)
    user_name = db.Column(db.String(255), nullable=False)
    # userName is unique case-insensitively; the folded copy carries the index.
    user_name_key = db.Column(db.String(255), nullable=False, unique=True)
    external_id = db.Column(db.String(255), index=True)
    given_name = db.Column(db.String(255))
    family_name = db.Column(db.String(255))
    display_name = db.Column(db.String(255))
    title = db.Column(db.String(255))
    department = db.Column(db.String(255), index=True)
    employee_number = db.Column(db.String(255))
    manager_id = db.Column(db.String(255))
    manager_display = db.Column(db.String(255))
    # SCIM attributes Lobby keeps but does not model (phoneNumbers, locale, ...): never lost.
    extra = db.Column(db.JSON, nullable=False, default=dict)
    active = db.Column(db.Boolean, nullable=False, default=True)
    is_admin = db.Column(db.Boolean, nullable=False, default=False)
    password_hash = db.Column(db.String(255))
    source = db.Column(db.String(16), nullable=False, default="local")
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)
    last_login_at = db.Column(db.DateTime)
    # Bumped on every change; SCIM's meta.version / ETag.
    version = db.Column(db.Integer, nullable=False, default=1)
    # Bumped to end every session of this user at once.
    session_epoch = db.Column(db.Integer, nullable=False, default=0)
    # Folded user name, names, department and emails in one column, kept up to date on every
    # flush (below): the admin search is one LIKE over it instead of six over several tables.
    search_text = db.Column(db.Text, nullable=False, default="", server_default="")

    emails = db.relationship(
        "UserEmail", back_populates="user", cascade="all, delete-orphan",
        order_by="UserEmail.position", lazy="selectin",
    )
    identities = db.relationship("Identity", back_populates="user", cascade="all, delete-orphan")
    memberships = db.relationship("Membership", back_populates="user", cascade="all, delete-orphan",
                                  passive_deletes=True)

    @orm.validates("user_name")
    def _keep_key(self, _key, value):
        self.user_name_key = fold(value)
        return value

    # --- Flask-Login -----------------------------------------------------------------
    def get_id(self) -> str:
        # The epoch travels in the session: bumping it invalidates every session at once.
        return f"{self.id}:{self.session_epoch}"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return bool(self.active)

    def end_sessions(self) -> None:
        # A SQL expression, not a Python read-modify-write: concurrent bumps never collapse.
        self.session_epoch = User.session_epoch + 1

    def touch(self) -> None:
        """Record that the resource changed (new SCIM version / ETag)."""
        self.version = User.version + 1
        self.updated_at = utcnow()

    # --- passwords -------------------------------------------------------------------
    def set_password(self, password: str | None) -> None:
        if not password:
            self.password_hash = None
            return
        method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt") if has_app_context() else "scrypt"
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        if not self.password_hash or not password:
            return False
        return check_password_hash(self.password_hash, password)

    # --- derived values --------------------------------------------------------------
    @property
    def email(self) -> str | None:
        primary = next((e for e in self.emails if e.primary), None)
        chosen = primary or (self.emails[0] if self.emails else None)
        return chosen.value if chosen else None

    def set_primary_email(self, value: str | None, type_: str = "work") -> None:
        """Make ``value`` the primary email, keeping any others the user has."""
        if not value:
            self.emails = [e for e in self.emails if not e.primary]
            return
        for existing in self.emails:
            existing.primary = False
        match = next((e for e in self.emails if e.value_key == fold(value)), None)
        if match is None:
            match = UserEmail(value=value, type=type_)
            self.emails.append(match)
        match.value = value
        match.primary = True
        for position, item in enumerate(self.emails):
            item.position = position

    @property
    def name(self) -> str:
        """What to call this person on a page."""
        if self.display_name:
            return self.display_name
        full = " ".join(p for p in (self.given_name, self.family_name) if p)
        return full or self.user_name

    @property
    def groups(self):
        return sorted((m.group for m in self.memberships), key=lambda g: g.display_name_key)

    @classmethod
    def find_by_login(cls, login: str) -> "User | None":
        """userName first, then any email address, case-insensitively."""
        if not login:
            return None
        key = fold(login.strip())
        user = cls.query.filter_by(user_name_key=key).one_or_none()
        if user is not None:
            return user
        return (
            cls.query.join(UserEmail).filter(UserEmail.value_key == key)
            .order_by(UserEmail.primary.desc(), cls.created_at).first()
        )

    def __repr__(self) -> str:
        return f"<User {self.user_name}>"


def search_text_for(user: User) -> str:
    parts = [user.user_name, user.display_name, user.given_name, user.family_name, user.department]
    parts += [email.value for email in user.emails]
    return "\n".join(fold(part) for part in parts if part)


@event.listens_for(orm.Session, "before_flush")
def _refresh_search_text(session, _flush_context, _instances) -> None:
    changed = {obj for obj in session.new | session.dirty if isinstance(obj, User)}
    for obj in session.new | session.dirty | session.deleted:
        if isinstance(obj, UserEmail) and obj.user is not None:
            changed.add(obj.user)
    for user in changed:
        if user in session.deleted:
            continue
        text = search_text_for(user)
        if user.search_text != text:
            user.search_text = text


class UserEmail(db.Model):
    """One of a user's email addresses (SCIM ``emails`` is multi-valued)."""

    __tablename__ = "user_emails"

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.String(36), db.ForeignKey("users.id", ondelete="CASCADE"),
                        nullable=False, index=True)
    value = db.Column(db.String(320), nullable=False)
    value_key = db.Column(db.String(320), nullable=False, index=True)
    type = db.Column(db.String(32))
    display = db.Column(db.String(255))
    primary = db.Column(db.Boolean, nullable=False, default=False)
    position = db.Column(db.Integer, nullable=False, default=0)

    user = db.relationship("User", back_populates="emails")

    @orm.validates("value")
    def _keep_key(self, _key, value):
        self.value_key = fold(value)
        return value
