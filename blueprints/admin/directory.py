"""What an admin may do to users and groups, and the rules that keep it safe.

Plain functions over models, no Flask request inside: each one checks its
guards first (raising ``Refused`` before it changes anything), makes the
change, and adds its audit event to the same transaction. The caller commits.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from models import AuditEvent, Group, Identity, Membership, ScimRequestLog, User, db, record_event
from models.user import fold

# The attributes an admin may edit on a user the IdP does not own.
PROFILE_FIELDS = ("user_name", "given_name", "family_name", "display_name", "email", "title",
                  "department", "employee_number")


class Refused(Exception):
    """An admin action its guards do not allow; ``message`` is shown to the admin and audited."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- users --------------------------------------------------------------------------------

def scim_owned(user: User) -> bool:
    """The IdP provisions this user: its profile is the IdP's to change, not Lobby's."""
    return user.source == "scim"


def group_read_only(group: Group) -> bool:
    """Groups the IdP owns (pushed by SCIM, synced from SAML, or adopted) are not edited here."""
    return group.source != "local" or group.adopted_by_idp


def _other_active_admins(user: User) -> int:
    """How many active admins there are besides ``user``, with their rows locked.

    FOR UPDATE makes two admins demoting each other at the same moment take
    turns on PostgreSQL (SQLite already serialises writers with BEGIN IMMEDIATE),
    so the second one sees the first one's change and is refused.
    """
    rows = db.session.execute(
        select(User.id).where(User.is_admin.is_(True), User.active.is_(True)).with_for_update()
    ).scalars().all()
    return len([row for row in rows if row != user.id])


def _guard_last_admin(user: User, doing: str) -> None:
    if user.is_admin and user.active and _other_active_admins(user) == 0:
        raise Refused(f"{user.user_name} is the last active admin: make someone else an admin before you {doing}.")


def _guard_self(user: User, actor_id: str | None, doing: str) -> None:
    if actor_id is not None and user.id == actor_id:
        raise Refused(f"You cannot {doing} yourself. Ask another admin.")


def deactivate_user(user: User, *, actor_id: str | None) -> None:
    if not user.active:
        raise Refused(f"{user.user_name} is already deactivated.")
    _guard_self(user, actor_id, "deactivate")
    _guard_last_admin(user, "deactivate them")
    user.active = False
    user.end_sessions()  # signed out everywhere at once, not at their next page load
    user.touch()
    record_event("admin.user.deactivate", target=user.user_name,
                 details={"source": user.source, "sessions": "ended"})


def last_activity_change(user: User) -> AuditEvent | None:
    """The latest event that switched this user off or on: a Lobby admin's, or the IdP's."""
    return (AuditEvent.query
            .filter(AuditEvent.target == user.user_name, AuditEvent.outcome == "success",
                    db.or_(AuditEvent.action.in_(("admin.user.deactivate", "admin.user.reactivate")),
                           AuditEvent.actor.like("scim:%")))
            .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
            .first())


def can_reactivate(user: User) -> bool:
    """A provisioned user comes back only if a Lobby admin (not the IdP) switched them off.

    Otherwise reactivating here would undo the IdP's off-boarding behind its back.
    """
    if not scim_owned(user):
        return True
    latest = last_activity_change(user)
    return latest is not None and latest.action == "admin.user.deactivate"


def reactivate_user(user: User) -> None:
    if user.active:
        raise Refused(f"{user.user_name} is already active.")
    if not can_reactivate(user):
        raise Refused(f"Your identity provider deactivated {user.user_name}. Reactivate them there; "
                      "it will tell Lobby.")
    user.active = True
    user.touch()
    record_event("admin.user.reactivate", target=user.user_name, details={"source": user.source})


def grant_admin(user: User) -> None:
    if user.is_admin:
        raise Refused(f"{user.user_name} is already an admin.")
    if not user.active:
        raise Refused(f"{user.user_name} is deactivated: reactivate them first.")
    user.is_admin = True
    record_event("admin.user.grant_admin", target=user.user_name)


def revoke_admin(user: User, *, actor_id: str | None) -> None:
    if not user.is_admin:
        raise Refused(f"{user.user_name} is not an admin.")
    _guard_self(user, actor_id, "remove admin rights from")
    _guard_last_admin(user, "remove their admin rights")
    user.is_admin = False
    record_event("admin.user.revoke_admin", target=user.user_name)


def set_password(user: User, password: str, *, actor_id: str | None) -> None:
    if user.source != "local":
        raise Refused(f"{user.user_name} signs in through the identity provider; Lobby keeps no password for them.")
    had_password = bool(user.password_hash)
    user.set_password(password)
    if user.id != actor_id:
        # Whoever knew the old password is signed out; an admin changing their own keeps working.
        user.end_sessions()
    record_event("admin.user.set_password", target=user.user_name,
                 details={"replaced_existing": had_password, "sessions": "ended" if user.id != actor_id else "kept"})


def unlink_identity(user: User, identity_id: int) -> None:
    identity = db.session.get(Identity, identity_id)
    if identity is None or identity.user_id != user.id:
        raise Refused("That sign-in link no longer exists.")
    db.session.delete(identity)
    record_event("admin.user.unlink_identity", target=user.user_name,
                 details={"provider": identity.provider, "name_id": identity.identifier})


def delete_user(user: User, *, actor_id: str | None) -> None:
    _guard_self(user, actor_id, "delete")
    _guard_last_admin(user, "delete them")
    if scim_owned(user) and user.active:
        raise Refused(f"Your identity provider still provisions {user.user_name}. Unassign or deactivate them "
                      "there first; deleting here would only make it create them again.")
    snapshot = {"user_name": user.user_name, "email": user.email, "source": user.source,
                "external_id": user.external_id, "groups": [g.display_name for g in user.groups]}
    db.session.delete(user)
    record_event("admin.user.delete", target=snapshot["user_name"], details=snapshot)


def update_profile(user: User, values: dict) -> dict:
    """Apply edited profile fields; return the diff that was audited ({} when nothing changed)."""
    if scim_owned(user):
        raise Refused("Your identity provider owns this profile: change it there and it will update Lobby.")
    diff = {}
    for name in PROFILE_FIELDS:
        if name not in values:
            continue
        new = (values[name] or "").strip() or None
        old = user.email if name == "email" else getattr(user, name)
        if new == old:
            continue
        if name == "user_name":
            if user.source != "local":
                raise Refused("The user name of a single sign-on user comes from the identity provider.")
            if not new:
                raise Refused("A user name is required.")
            clash = User.query.filter(User.user_name_key == fold(new), User.id != user.id).first()
            if clash is not None:
                raise Refused(f"Another user already has the user name {new}.")
        diff[name] = {"old": old, "new": new}
    if not diff:
        return {}
    for name, change in diff.items():
        if name == "email":
            user.set_primary_email(change["new"])
        else:
            setattr(user, name, change["new"])
    user.touch()
    record_event("admin.user.update", target=user.user_name, details={"changes": diff})
    return diff


# --- groups -------------------------------------------------------------------------------

def _guard_editable(group: Group) -> None:
    if group_read_only(group):
        raise Refused(f"Your identity provider owns {group.display_name}: change it there.")


def _guard_name_free(name: str, group: Group | None = None) -> None:
    clash = Group.query.filter(Group.display_name_key == fold(name))
    if group is not None:
        clash = clash.filter(Group.id != group.id)
    existing = clash.first()
    if existing is not None:
        owner = "your identity provider" if group_read_only(existing) else "Lobby"
        raise Refused(f"A group named {existing.display_name} already exists (owned by {owner}).")


def create_group(name: str, description: str | None) -> Group:
    name = name.strip()
    _guard_name_free(name)
    group = Group(display_name=name, description=(description or "").strip() or None, source="local")
    db.session.add(group)
    record_event("admin.group.create", target=name, details={"description": group.description})
    return group


def rename_group(group: Group, name: str, description: str | None) -> dict:
    _guard_editable(group)
    name = name.strip()
    description = (description or "").strip() or None
    diff = {}
    if name != group.display_name:
        _guard_name_free(name, group)
        diff["display_name"] = {"old": group.display_name, "new": name}
    if description != group.description:
        diff["description"] = {"old": group.description, "new": description}
    if not diff:
        return {}
    old_name = group.display_name
    group.display_name = name
    group.description = description
    group.touch()
    record_event("admin.group.rename" if "display_name" in diff else "admin.group.update",
                 target=old_name, details={"changes": diff})
    return diff


def delete_group(group: Group) -> None:
    _guard_editable(group)
    members = group.memberships.count()
    name = group.display_name
    db.session.delete(group)
    record_event("admin.group.delete", target=name, details={"members": members})


def add_member(group: Group, login: str) -> User:
    _guard_editable(group)
    user = User.find_by_login(login or "")
    if user is None:
        raise Refused(f"No user has the user name or email {login}.")
    if db.session.get(Membership, (group.id, user.id)) is not None:
        raise Refused(f"{user.user_name} is already in {group.display_name}.")
    db.session.add(Membership(group_id=group.id, user_id=user.id, source="local"))
    group.touch()
    record_event("admin.group.add_member", target=group.display_name, details={"user": user.user_name})
    return user


def remove_member(group: Group, user_id: str) -> User:
    _guard_editable(group)
    membership = db.session.get(Membership, (group.id, user_id))
    if membership is None:
        raise Refused("That person is not in this group any more.")
    user = membership.user
    db.session.delete(membership)
    group.touch()
    record_event("admin.group.remove_member", target=group.display_name, details={"user": user.user_name})
    return user


# --- local groups whose names collide with the IdP's ------------------------------------------

# An audit event the SCIM API may write (target = the group name it was pushed with) when it
# answers 409 because a local group already has that name.
CONFLICT_ACTION = "scim.group.conflict"
CONFLICT_SCAN = 500


@dataclass
class Conflict:
    """The identity provider tried to push a group whose name a local group has, and was refused."""
    name: str
    when: datetime
    actor: str | None


def _pushed_group_name(body: str | None) -> str | None:
    """The displayName a refused SCIM POST, PUT or PATCH of a group carried."""
    try:
        doc = json.loads(body or "")
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("displayName"), str):
        return doc["displayName"]
    for operation in doc.get("Operations") or []:
        if not isinstance(operation, dict):
            continue
        value = operation.get("value")
        if str(operation.get("path", "")).lower() == "displayname" and isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("displayName"), str):
            return value["displayName"]
    return None


def conflicting_names() -> dict[str, Conflict]:
    """Folded group name -> the latest refused push of a group with that name.

    Read from the audit log (CONFLICT_ACTION) and from the SCIM flight
    recorder's 409 answers to group requests, so the warning shows whichever
    the SCIM side records.
    """
    found: dict[str, Conflict] = {}

    def keep(name: str, when: datetime, actor: str | None) -> None:
        key = fold(name)
        if key not in found or found[key].when < when:
            found[key] = Conflict(name=name, when=when, actor=actor)

    events = (AuditEvent.query.filter(AuditEvent.action == CONFLICT_ACTION)
              .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(CONFLICT_SCAN))
    for event in events:
        if event.target:
            keep(event.target, event.created_at, event.actor)
    refused = (ScimRequestLog.query
               .filter(ScimRequestLog.status == 409, ScimRequestLog.path.contains("/Groups"))
               .order_by(ScimRequestLog.created_at.desc(), ScimRequestLog.id.desc()).limit(CONFLICT_SCAN))
    for row in refused:
        name = _pushed_group_name(row.request_body)
        if name:
            keep(name, row.created_at, f"scim:{row.token_name}" if row.token_name else None)
    return found


def group_conflict(group: Group, conflicts: dict[str, Conflict] | None = None) -> Conflict | None:
    """The IdP's latest refused push of a group with this local group's name, if any."""
    if group_read_only(group):
        return None
    return (conflicts if conflicts is not None else conflicting_names()).get(group.display_name_key)


def adopt_group(group: Group) -> None:
    """Let the IdP take over a local group: its next push of that name links to this group."""
    if group_read_only(group):
        raise Refused(f"{group.display_name} already belongs to your identity provider.")
    group.adopted_by_idp = True
    group.touch()
    record_event("admin.group.adopt", target=group.display_name,
                 details={"members": group.memberships.count()})
