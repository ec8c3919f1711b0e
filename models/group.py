"""Groups of users, from the IdP (SCIM or SAML) or made locally by an admin."""
from __future__ import annotations

from sqlalchemy import orm

from . import db, new_id, utcnow
from .user import fold

GROUP_SOURCES = ("local", "scim", "saml")


class Group(db.Model):
    __tablename__ = "groups"

    id = db.Column(db.String(36), primary_key=True, default=new_id)
    display_name = db.Column(db.String(255), nullable=False)
    display_name_key = db.Column(db.String(255), nullable=False, unique=True)
    external_id = db.Column(db.String(255), index=True)
    description = db.Column(db.Text)
    source = db.Column(db.String(16), nullable=False, default="local")
    # A local group an admin let the IdP take over (the guide's name-overlap case).
    adopted_by_idp = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)
    version = db.Column(db.Integer, nullable=False, default=1)

    memberships = db.relationship("Membership", back_populates="group", cascade="all, delete-orphan",
                                  passive_deletes=True, lazy="dynamic")

    @orm.validates("display_name")
    def _keep_key(self, _key, value):
        self.display_name_key = fold(value)
        return value

    def touch(self) -> None:
        """Record that the group or its members changed (new SCIM version / ETag)."""
        self.version = Group.version + 1
        self.updated_at = utcnow()

    @property
    def idp_managed(self) -> bool:
        return self.managed_by_idp(self.source, self.adopted_by_idp)

    @staticmethod
    def managed_by_idp(source: str, adopted_by_idp) -> bool:
        """Whether the IdP manages a group of this source and adoption (for rows read without the ORM)."""
        return source == "scim" or bool(adopted_by_idp)

    def __repr__(self) -> str:
        return f"<Group {self.display_name}>"


class Membership(db.Model):
    """One user in one group; the pair is the primary key, indexed both ways."""

    __tablename__ = "memberships"

    group_id = db.Column(db.String(36), db.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id = db.Column(db.String(36), db.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                        index=True)
    # Who put the user there: scim, saml (group sync) or local (an admin).
    source = db.Column(db.String(16), nullable=False, default="local")
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    group = db.relationship("Group", back_populates="memberships")
    user = db.relationship("User", back_populates="memberships")
