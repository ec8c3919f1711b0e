"""SCIM Users and Groups on Lobby's models: plain values in, plain values out, ScimError raised.

No Flask request in here: routes pass the base URL, the actor (``scim:<token name>``),
the parsed query options and the body.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, bindparam, exists, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from models import (SQLITE_LOWER, Group, Membership, User, UserEmail, db, direct, new_id, reads_only, settings,
                    utcnow, write_new)
from models.audit import new_event
from models.user import fold, search_text_for

from . import filters as F
from .errors import (InvalidFilter, InvalidSyntax, InvalidValue, NotFound, PreconditionFailed, ScimError,
                     TooMany, Uniqueness)
from .resources import UNKNOWN, DocumentSchema, diff, operation_fields
from .schemas import (DEFAULT_COUNT, ENTERPRISE, ENTERPRISE_SCHEMA, GROUP, GROUP_SCHEMA, MAX_COUNT,
                      MAX_PATCH_OPERATIONS, PATCH_SCHEMA, USER, USER_SCHEMA)

USER_DOC = DocumentSchema(USER, (ENTERPRISE,))
GROUP_DOC = DocumentSchema(GROUP)

# Core User attributes Lobby keeps in ``User.extra`` rather than in columns of their own.
EXTRA_CORE = ("nickName", "profileUrl", "userType", "preferredLanguage", "locale", "timezone",
              "phoneNumbers", "addresses")
EXTRA_NAME = ("formatted", "middleName", "honorificPrefix", "honorificSuffix")
EXTRA_ENTERPRISE = ("costCenter", "organization", "division")


def etag(version: int) -> str:
    return f'W/"{version}"'


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


# --- query options -----------------------------------------------------------------------

@dataclass
class Query:
    filter: str | None = None
    start_index: int = 1
    count: int = DEFAULT_COUNT
    sort_by: str | None = None
    sort_order: str = "ascending"
    attributes: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def parse_int(raw, name: str, default: int) -> int:
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidValue(f"{name} must be an integer, got {raw!r}.") from None


def split_list(raw) -> list[str]:
    if not raw:
        return []
    return [part.strip() for part in str(raw).split(",") if part.strip()]


def build_query(args) -> Query:
    if hasattr(args, "to_dict"):
        # A plain dict of first values: MultiDict.get raises and catches an exception per absent key.
        args = args.to_dict()
    start = parse_int(args.get("startIndex"), "startIndex", 1)
    count = parse_int(args.get("count"), "count", DEFAULT_COUNT)
    order = (args.get("sortOrder") or "ascending").strip().lower()
    if order not in ("ascending", "descending"):
        raise InvalidValue("sortOrder must be ascending or descending.")
    return Query(
        filter=args.get("filter") or None,
        # RFC 7644 §3.4.2.4: below 1 means 1. Above 2**31 no set reaches: capped, since a 64-bit
        # overflow reached the driver as a 500 (found by tests/security/test_scim_fuzz.py).
        start_index=min(max(start, 1), 2**31),
        count=min(max(count, 0), MAX_COUNT),  # negative means 0; above the maximum means the maximum
        sort_by=(args.get("sortBy") or None),
        sort_order=order,
        attributes=split_list(args.get("attributes")),
        excluded=split_list(args.get("excludedAttributes")),
    )


# --- attributes / excludedAttributes -----------------------------------------------------

def _selector(text: str, schema: DocumentSchema) -> tuple[str | None, str, str | None]:
    """``urn:...:User:name.givenName`` → (schema id or None for core, "name", "givenName")."""
    lowered = text.lower()
    for ext in schema.extensions:
        if lowered == ext.id.lower():
            return ext.id, "", None
    try:
        ref = F.split_attr_path(text, for_filter=False)
    except Exception:
        return None, text, None
    urn = ref.urn
    if urn is not None and urn.lower() == schema.core.id.lower():
        urn = None
    elif urn is not None:
        ext = schema.extension(urn)
        urn = ext.id if ext else urn
    elif schema.core.attr(ref.attr) is None:
        for ext in schema.extensions:
            if ext.attr(ref.attr):
                urn = ext.id
    return urn, ref.attr, ref.sub


def _find_key(container: dict, name: str) -> str | None:
    lowered = name.lower()
    return next((k for k in container if k.lower() == lowered), None)


ALWAYS = ("schemas", "id")


def project(resource: dict, schema: DocumentSchema, attributes: list[str], excluded: list[str]) -> dict:
    """Apply RFC 7644 §3.4.2.5 to a full resource representation."""
    if attributes:
        out = {key: resource[key] for key in ALWAYS if key in resource}
        for text in attributes:
            urn, name, sub = _selector(text, schema)
            source = resource if urn is None else resource.get(urn)
            if not isinstance(source, dict):
                continue
            target = out if urn is None else out.setdefault(urn, {})
            if not name:
                target.update(source)
                continue
            key = _find_key(source, name)
            if key is None:
                continue
            if sub is None:
                target[key] = source[key]
            elif isinstance(source[key], dict):
                sub_key = _find_key(source[key], sub)
                if sub_key is not None:
                    target.setdefault(key, {})[sub_key] = source[key][sub_key]
            elif isinstance(source[key], list):
                if target.get(key) is source[key]:
                    continue  # the whole attribute is already selected
                chosen = target.get(key) or [{} for _ in source[key]]
                for item, picked in zip(source[key], chosen):
                    sub_key = _find_key(item, sub)
                    if sub_key is not None:
                        picked[sub_key] = item[sub_key]
                if any(chosen):
                    target[key] = chosen
        for ext in schema.extensions:
            if ext.id in out and not out[ext.id]:
                out.pop(ext.id)
        return _schemas_present(out, schema)
    out = dict(resource)
    for text in excluded:
        urn, name, sub = _selector(text, schema)
        if urn is None and name.lower() in ALWAYS:
            continue
        container = out if urn is None else out.get(urn)
        if not isinstance(container, dict):
            continue
        if urn is not None:
            container = dict(container)
            out[urn] = container
        if not name:
            out.pop(urn, None)
            continue
        key = _find_key(container, name)
        if key is None:
            continue
        if sub is None:
            container.pop(key)
        elif isinstance(container[key], dict):
            inner = dict(container[key])
            sub_key = _find_key(inner, sub)
            if sub_key:
                inner.pop(sub_key)
            container[key] = inner
        elif isinstance(container[key], list):  # emails.type: that sub-attribute of every item
            items = [{k: v for k, v in item.items() if k.lower() != sub.lower()} if isinstance(item, dict) else item
                     for item in container[key]]
            container[key] = [item for item in items if item != {}]
            if not container[key]:
                container.pop(key)
        if urn is not None and not container:
            out.pop(urn, None)
    return _schemas_present(out, schema)


def _schemas_present(out: dict, schema: DocumentSchema) -> dict:
    """RFC 7643 §3: ``schemas`` names the schemas whose attributes are present, so an extension
    projected away leaves the list too."""
    if "schemas" in out:
        out["schemas"] = [urn for urn in out["schemas"]
                          if urn == schema.core.id or urn in out or urn not in {e.id for e in schema.extensions}]
    return out


def requested(path: str, attributes: list[str]) -> bool:
    """Is a ``returned: request`` sub-attribute (``members.display``) named in ``attributes``?"""
    lowered = path.lower()
    return any(item.split(":")[-1].lower() == lowered for item in attributes)


def wants(attribute: str, attributes: list[str], excluded: list[str]) -> bool:
    """Will ``attribute`` (a top-level core name) appear in the response? Decides what to load."""
    lowered = attribute.lower()

    def names(items):
        return {item.split(":")[-1].split(".")[0].lower() for item in items}

    if attributes:
        return lowered in names(attributes)
    return lowered not in names(excluded)


# --- SQL filters -----------------------------------------------------------------------

class _Column:
    """How one filterable attribute is stored: expression, type, case rule."""

    def __init__(self, expr, kind="string", case_exact=False, folded=False):
        self.expr, self.kind, self.case_exact, self.folded = expr, kind, case_exact, folded


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def sql_lower(expr, dialect: str):
    """lower() that folds every letter, as PostgreSQL's does; SQLite's own folds only A-Z."""
    return getattr(func, SQLITE_LOWER)(expr) if dialect == "sqlite" else func.lower(expr)


def compare_column(column: _Column, op: str, value, name: str, dialect: str):
    expr = column.expr
    if column.kind == "boolean":
        if op not in ("eq", "ne") or not isinstance(value, bool):
            raise InvalidFilter(f"{name} is a boolean: use eq or ne with true or false.")
        matched = and_(expr.isnot(None), expr == value)
        return matched if op == "eq" else ~matched
    if value is None:
        if op == "eq":
            return or_(expr.is_(None), expr == "") if column.kind == "string" else expr.is_(None)
        if op == "ne":
            return and_(expr.isnot(None), expr != "") if column.kind == "string" else expr.isnot(None)
        raise InvalidFilter(f"null can only be compared with eq or ne ({name}).")
    if column.kind == "dateTime":
        if op in ("co", "sw", "ew"):
            raise InvalidFilter(f"{name} is a dateTime: {op} does not apply.")
        start, end = F.parse_datetime(value, name)
        if op == "ne":
            return or_(expr.is_(None), expr < start, expr >= end)
        comparison = {"eq": and_(expr >= start, expr < end), "gt": expr >= end, "ge": expr >= start,
                      "lt": expr < start, "le": expr < end}[op]
        return and_(expr.isnot(None), comparison)
    if isinstance(value, bool):
        raise InvalidFilter(f"{name} is a string: compare it with a quoted string.")
    value = str(value)
    if column.folded:
        value = fold(value)
    elif not column.case_exact:
        expr = sql_lower(expr, dialect)
        value = value.lower()
    if op == "ne":
        return or_(expr.is_(None), expr != value)
    if op in ("co", "sw", "ew"):
        escaped = _like_escape(value)
        pattern = {"co": f"%{escaped}%", "sw": f"{escaped}%", "ew": f"%{escaped}"}[op]
        condition = expr.like(pattern, escape="\\")
        if column.case_exact and dialect == "sqlite" and value:
            # SQLite's LIKE ignores ASCII case; caseExact attributes need an exact check too.
            condition = and_(condition, {
                "co": func.instr(expr, value) > 0,
                "sw": func.substr(expr, 1, len(value)) == value,
                "ew": func.substr(expr, -len(value)) == value,
            }[op])
        return and_(expr.isnot(None), condition)
    comparison = {"eq": expr == value, "gt": expr > value, "ge": expr >= value,
                  "lt": expr < value, "le": expr <= value}[op]
    # NOT over a NULL stays NULL in SQL; spell out "has a value" so `not (...)` matches it.
    return and_(column.expr.isnot(None), comparison)


def present_column(column: _Column):
    if column.kind == "string":
        return and_(column.expr.isnot(None), column.expr != "")
    return column.expr.isnot(None)


class _BaseResolver(F.Resolver):
    schema: DocumentSchema

    def __init__(self, dialect: str):
        self.dialect = dialect

    def key(self, path: F.AttrRef) -> str:
        resolved = self.schema.resolve(path.urn, path.attr) if path.attr.lower() not in (
            "id", "externalid", "meta") else None
        if path.urn is not None and resolved is None and path.urn.lower() != self.schema.core.id.lower():
            raise InvalidFilter(f"Unknown schema in {path}.")
        prefix = ""
        if resolved is not None and resolved[0] is not self.schema.core:
            prefix = "ext:"
        name = resolved[1].name if resolved else path.attr
        return (prefix + name + (f".{path.sub}" if path.sub else "")).lower()

    def scalar(self, key: str) -> _Column | None:  # pragma: no cover - interface
        raise NotImplementedError

    def multi(self, key: str):
        return None

    def compare(self, path, op, value):
        key = self.key(path)
        column = self.scalar(key)
        if column is not None:
            return compare_column(column, op, value, str(path), self.dialect)
        handler = self.multi(key)
        if handler is not None:
            return handler(lambda col: compare_column(col, op, value, str(path), self.dialect))
        raise InvalidFilter(f"Lobby cannot filter on {path}.")

    def present(self, path):
        key = self.key(path)
        column = self.scalar(key)
        if column is not None:
            return present_column(column)
        handler = self.multi(key)
        if handler is not None:
            return handler(present_column)
        raise InvalidFilter(f"Lobby cannot filter on {path}.")


class _ItemResolver(F.Resolver):
    """Sub-attributes inside ``emails[...]`` / ``members[...]``: columns of the child row."""

    def __init__(self, parent: str, columns: dict[str, _Column], dialect: str):
        self.parent, self.columns, self.dialect = parent, columns, dialect

    def _column(self, path: F.AttrRef) -> _Column:
        name = (path.sub or path.attr).lower()
        column = self.columns.get(name)
        if column is None:
            raise InvalidFilter(f"Lobby cannot filter {self.parent} on {path}.")
        return column

    def compare(self, path, op, value):
        return compare_column(self._column(path), op, value, f"{self.parent}.{path}", self.dialect)

    def present(self, path):
        return present_column(self._column(path))

    def value_path(self, path, node):
        raise InvalidFilter("Value filters cannot be nested.")


def _json_string(*keys):
    expr = User.extra[keys[0]] if len(keys) == 1 else User.extra[tuple(keys)]
    return expr.as_string()


class UserResolver(_BaseResolver):
    schema = USER_DOC

    def scalar(self, key):
        columns = {
            "id": _Column(User.id, case_exact=True),
            "externalid": _Column(User.external_id, case_exact=True),
            "username": _Column(User.user_name_key, folded=True),
            "displayname": _Column(User.display_name),
            "title": _Column(User.title),
            "name.givenname": _Column(User.given_name),
            "name.familyname": _Column(User.family_name),
            "active": _Column(User.active, "boolean"),
            "meta.created": _Column(User.created_at, "dateTime"),
            "meta.lastmodified": _Column(User.updated_at, "dateTime"),
            "ext:department": _Column(User.department),
            "ext:employeenumber": _Column(User.employee_number),
            "ext:manager.value": _Column(User.manager_id, case_exact=True),
            "ext:manager": _Column(User.manager_id, case_exact=True),
            "ext:manager.displayname": _Column(User.manager_display),
        }
        if key in columns:
            return columns[key]
        for name in ("nickName", "userType", "preferredLanguage", "locale", "timezone", "profileUrl"):
            if key == name.lower():
                return _Column(_json_string(name))
        for name in EXTRA_NAME:
            if key == f"name.{name.lower()}":
                return _Column(_json_string("name", name))
        for name in EXTRA_ENTERPRISE:
            if key == f"ext:{name.lower()}":
                return _Column(_json_string(ENTERPRISE_SCHEMA, name))
        return None

    def _email_columns(self):
        return {
            "value": _Column(UserEmail.value_key, folded=True),
            "type": _Column(UserEmail.type),
            "primary": _Column(UserEmail.primary, "boolean"),
            "display": _Column(UserEmail.display),
        }

    def _group_columns(self):
        return {
            "value": _Column(Membership.group_id, case_exact=True),
            "display": _Column(Group.display_name),
        }

    def _emails(self, condition):
        return exists(select(UserEmail.id).where(UserEmail.user_id == User.id, condition))

    def _groups(self, condition):
        return exists(select(Membership.group_id).join(Group, Group.id == Membership.group_id).where(
            Membership.user_id == User.id, idp_visible(), condition))

    def multi(self, key):
        head, _, sub = key.partition(".")
        if head == "emails":
            column = self._email_columns().get(sub or "value")
            if column is not None:
                return lambda build: self._emails(build(column))
        if head == "groups":
            column = self._group_columns().get(sub or "value")
            if column is not None:
                return lambda build: self._groups(build(column))
        return None

    def value_path(self, path, node):
        key = self.key(path)
        if key == "emails":
            inner = F.compile_sql(node, _ItemResolver("emails", self._email_columns(), self.dialect))
            return self._emails(inner)
        if key == "groups":
            inner = F.compile_sql(node, _ItemResolver("groups", self._group_columns(), self.dialect))
            return self._groups(inner)
        raise InvalidFilter(f"Lobby cannot filter on {path}[...].")


class GroupResolver(_BaseResolver):
    schema = GROUP_DOC

    def scalar(self, key):
        return {
            "id": _Column(Group.id, case_exact=True),
            "externalid": _Column(Group.external_id, case_exact=True),
            "displayname": _Column(Group.display_name_key, folded=True),
            "meta.created": _Column(Group.created_at, "dateTime"),
            "meta.lastmodified": _Column(Group.updated_at, "dateTime"),
        }.get(key)

    def _member_columns(self):
        return {
            "value": _Column(Membership.user_id, case_exact=True),
            "display": _Column(User.display_name),
        }

    def _members(self, condition):
        return exists(select(Membership.user_id).join(User, User.id == Membership.user_id).where(
            Membership.group_id == Group.id, condition))

    def multi(self, key):
        head, _, sub = key.partition(".")
        if head == "members":
            column = self._member_columns().get(sub or "value")
            if column is not None:
                return lambda build: self._members(build(column))
        return None

    def value_path(self, path, node):
        if self.key(path) == "members":
            return self._members(F.compile_sql(node, _ItemResolver("members", self._member_columns(), self.dialect)))
        raise InvalidFilter(f"Lobby cannot filter on {path}[...].")


def compile_filter(text: str, resolver: _BaseResolver):
    return F.compile_sql(F.parse_filter(text), resolver)


def _sort_expression(sort_by: str, resolver: _BaseResolver):
    try:
        ref = F.split_attr_path(sort_by)
    except InvalidFilter:
        raise InvalidValue(f"sortBy {sort_by!r} is not an attribute path.") from None
    key = resolver.key(ref)
    if isinstance(resolver, UserResolver) and key in ("emails", "emails.value"):
        # Multi-valued: sort by the primary value (RFC 7644 §3.4.2.3).
        return (select(UserEmail.value_key).where(UserEmail.user_id == User.id)
                .order_by(UserEmail.primary.desc(), UserEmail.position).limit(1).scalar_subquery())
    column = resolver.scalar(key)
    if column is None:
        raise InvalidValue(f"Lobby cannot sort by {sort_by}.")
    if column.kind == "string" and not column.case_exact and not column.folded:
        return sql_lower(column.expr, resolver.dialect)
    return column.expr


def dialect_name() -> str:
    return db.session.get_bind().dialect.name


# --- context --------------------------------------------------------------------------

@dataclass
class Context:
    base_url: str  # https://lobby.example/api/scim/v2
    actor: str  # scim:<token name>
    ip_address: str | None = None

    def audit(self, action: str, target: str, details: dict, outcome: str = "success", reason=None):
        """Add the audit event to the session (it commits with the change it records)."""
        db.session.add(self.event(action, target, details, outcome, reason))

    def event(self, action: str, target: str, details: dict, outcome: str = "success", reason=None):
        """The audit event, not added: for a caller that writes it itself (``insert_new``)."""
        return new_event(action, actor=self.actor, target=target, details=details, outcome=outcome,
                         reason=reason, ip_address=self.ip_address)


def check_if_match(if_match: str | None, version: int) -> None:
    if not if_match:
        return
    tags = [t.strip() for t in if_match.split(",")]
    current = etag(version)
    if "*" in tags:
        return
    strong = current[2:]  # clients may send the tag without W/
    if current not in tags and strong not in tags:
        raise PreconditionFailed(f"If-Match {if_match} does not match the current version {current}.",
                                 scim_type=None)


# --- users ------------------------------------------------------------------------------

def user_document(user: User) -> dict:
    extra = user.extra or {}
    doc: dict = {"userName": user.user_name}
    if user.external_id:
        doc["externalId"] = user.external_id
    name = {k: extra["name"][k] for k in EXTRA_NAME if isinstance(extra.get("name"), dict) and extra["name"].get(k)}
    if user.given_name:
        name["givenName"] = user.given_name
    if user.family_name:
        name["familyName"] = user.family_name
    if name:
        doc["name"] = name
    for attr, value in (("displayName", user.display_name), ("title", user.title)):
        if value:
            doc[attr] = value
    for attr in EXTRA_CORE:
        if extra.get(attr) not in (None, "", []):
            doc[attr] = extra[attr]
    doc["active"] = bool(user.active)
    emails = []
    for email in user.emails:
        item = {"value": email.value}
        if email.type:
            item["type"] = email.type
        if email.display:
            item["display"] = email.display
        item["primary"] = bool(email.primary)
        emails.append(item)
    if emails:
        doc["emails"] = emails
    enterprise = {k: v for k, v in (extra.get(ENTERPRISE_SCHEMA) or {}).items() if k in EXTRA_ENTERPRISE and v}
    if user.department:
        enterprise["department"] = user.department
    if user.employee_number:
        enterprise["employeeNumber"] = user.employee_number
    if user.manager_id:
        enterprise["manager"] = {"value": user.manager_id}
    if enterprise:
        doc[ENTERPRISE_SCHEMA] = enterprise
    if extra.get(UNKNOWN):
        doc[UNKNOWN] = extra[UNKNOWN]
    return doc


def _write_user(user: User, doc: dict, *, keep_active_if_absent: bool) -> None:
    """Write a whole document onto the user (PUT semantics; PATCH produces a whole document)."""
    user.user_name = doc["userName"]
    user.external_id = doc.get("externalId")
    name = doc.get("name") or {}
    user.given_name = name.get("givenName")
    user.family_name = name.get("familyName")
    display = doc.get("displayName")
    if not display:
        # The guide's Okta expression: displayName, else "first last".
        display = " ".join(p for p in (user.given_name, user.family_name) if p) or None
    user.display_name = display
    user.title = doc.get("title")
    if "active" in doc:
        user.active = doc["active"]
    elif not keep_active_if_absent:
        user.active = True
    _write_emails(user, doc.get("emails") or [])
    enterprise = doc.get(ENTERPRISE_SCHEMA) or {}
    user.department = enterprise.get("department")
    user.employee_number = enterprise.get("employeeNumber")
    manager = enterprise.get("manager") or {}
    manager_id = manager.get("value") or None
    if manager_id != user.manager_id or (manager_id and not user.manager_display):
        user.manager_id = manager_id
        user.manager_display = _display_of(manager_id)
    extra = {}
    for attr in EXTRA_CORE:
        if doc.get(attr) not in (None, "", []):
            extra[attr] = doc[attr]
    name_extra = {k: name[k] for k in EXTRA_NAME if name.get(k)}
    if name_extra:
        extra["name"] = name_extra
    enterprise_extra = {k: enterprise[k] for k in EXTRA_ENTERPRISE if enterprise.get(k)}
    if enterprise_extra:
        extra[ENTERPRISE_SCHEMA] = enterprise_extra
    if doc.get(UNKNOWN):
        extra[UNKNOWN] = doc[UNKNOWN]
    if extra != (user.extra or {}):
        user.extra = extra


_DISPLAY_OF = direct.Statement(select(User.__table__.c.display_name, User.__table__.c.given_name,
                                      User.__table__.c.family_name, User.__table__.c.user_name)
                               .where(User.__table__.c.id == bindparam("id")))


def _display_of(user_id: str | None) -> str | None:
    if not user_id:
        return None
    # On the driver: a create that names a manager still writes its rows without the session.
    row = _DISPLAY_OF.first(id=user_id)
    if row is None:
        return None
    return row.display_name or " ".join(p for p in (row.given_name, row.family_name) if p) or row.user_name


def _write_emails(user: User, items: list[dict]) -> None:
    wanted = [(i.get("value"), i.get("type"), i.get("display"), bool(i.get("primary"))) for i in items
              if i.get("value")]
    current = [(e.value, e.type, e.display, bool(e.primary)) for e in user.emails]
    if wanted == current:
        return
    user.emails = [UserEmail(value=v, type=t, display=d, primary=p, position=n)
                   for n, (v, t, d, p) in enumerate(wanted)]


def user_resource(user: User, ctx: Context, groups: list[dict] | None, manager_display: bool = False) -> dict:
    doc = user_document(user)
    doc.pop(UNKNOWN, None)
    enterprise = doc.get(ENTERPRISE_SCHEMA)
    if enterprise and "manager" in enterprise:
        manager = {"value": user.manager_id, "$ref": f"{ctx.base_url}/Users/{user.manager_id}"}
        if manager_display and user.manager_display:
            manager["displayName"] = user.manager_display
        enterprise["manager"] = manager
    resource = {"schemas": [USER_SCHEMA] + ([ENTERPRISE_SCHEMA] if enterprise else []), "id": user.id}
    resource.update(doc)
    if groups:
        resource["groups"] = groups
    resource["meta"] = {
        "resourceType": "User",
        "created": iso(user.created_at),
        "lastModified": iso(user.updated_at),
        "location": f"{ctx.base_url}/Users/{user.id}",
        "version": etag(user.version),
    }
    return resource


def idp_visible():
    """Groups the IdP may see: those it created and local ones an admin let it adopt.

    On table columns, so that it serves Core statements as well as ORM queries.
    """
    groups = Group.__table__.c
    return or_(groups.source == "scim", groups.adopted_by_idp == true())


def groups_of(user_ids: list[str], ctx: Context) -> dict[str, list[dict]]:
    if not user_ids:
        return {}
    if len(user_ids) == 1:  # a lookup, or one user's read: no list to expand into the SQL
        rows = db.session.connection().execute(_GROUPS_OF_ONE, {"id": user_ids[0]}).all()
    else:
        rows = db.session.connection().execute(_GROUPS_OF, {"ids": user_ids}).all()
    out: dict[str, list[dict]] = {}
    for user_id, group_id, display in rows:
        out.setdefault(user_id, []).append(_group_ref(group_id, display, ctx))
    return out


def _group_ref(group_id: str, display: str, ctx: Context) -> dict:
    return {"value": group_id, "$ref": f"{ctx.base_url}/Groups/{group_id}", "display": display, "type": "direct"}


# Built once (composing statements costs more Python time than running them): the groups
# of a page of users, and the lookup IdPs make before every push, userName eq "...".
# Table columns, not ORM attributes: an ORM-enabled select sets up ORM state on every execution,
# and loading a User through the session costs more than the query.
_MEMBERS_T, _GROUPS_T, _USERS_T, _EMAILS_T = (Membership.__table__.c, Group.__table__.c, User.__table__.c,
                                              UserEmail.__table__.c)


def _groups_of_statement(which_users):
    return (select(_MEMBERS_T.user_id, _GROUPS_T.id, _GROUPS_T.display_name)
            .select_from(Membership.__table__.join(Group.__table__, _GROUPS_T.id == _MEMBERS_T.group_id))
            .where(which_users, idp_visible())
            .order_by(_GROUPS_T.display_name_key))


_GROUPS_OF = _groups_of_statement(_MEMBERS_T.user_id.in_(bindparam("ids", expanding=True)))
_GROUPS_OF_ONE = _groups_of_statement(_MEMBERS_T.user_id == bindparam("id"))
_USER_COLUMNS = ("id", "user_name", "external_id", "given_name", "family_name", "display_name", "title",
                 "department", "employee_number", "manager_id", "manager_display", "extra", "active",
                 "created_at", "updated_at", "version")
_EMAIL_COLUMNS = (_EMAILS_T.value.label("email_value"), _EMAILS_T.type.label("email_type"),
                  _EMAILS_T.display.label("email_display"), _EMAILS_T.primary.label("email_primary"),
                  _EMAILS_T.position.label("email_position"))
_USER_AND_EMAILS = User.__table__.outerjoin(UserEmail.__table__, _EMAILS_T.user_id == _USERS_T.id)
# The lookup, run on the driver (models.direct): the user, its e-mails and, in the same round
# trip when they are wanted, the groups the IdP may see (one row per e-mail and group; a user
# has few of either). A membership in a group the IdP may not see comes with no group columns.
# No ORDER BY: the rows are put in order here, so the statement also works as a subquery
# (recorder.check_gate runs it in the token check's round trip).
_BY_USER_NAME = direct.Statement(
    select(*[_USERS_T[name] for name in _USER_COLUMNS], *_EMAIL_COLUMNS)
    .select_from(_USER_AND_EMAILS)
    .where(_USERS_T.user_name_key == bindparam("key"))
)
_BY_USER_NAME_WITH_GROUPS = direct.Statement(
    select(*[_USERS_T[name] for name in _USER_COLUMNS], *_EMAIL_COLUMNS,
           _GROUPS_T.id.label("group_id"), _GROUPS_T.display_name.label("group_display"),
           _GROUPS_T.display_name_key.label("group_key"))
    .select_from(_USER_AND_EMAILS
                 .outerjoin(Membership.__table__, _MEMBERS_T.user_id == _USERS_T.id)
                 .outerjoin(Group.__table__, and_(_GROUPS_T.id == _MEMBERS_T.group_id, idp_visible())))
    .where(_USERS_T.user_name_key == bindparam("key"))
)


class UserRow:
    """A user read as plain columns: what rendering reads of a User, without the ORM."""

    __slots__ = _USER_COLUMNS + ("emails",)

    def __init__(self, row):
        for name in _USER_COLUMNS:
            setattr(self, name, getattr(row, name))
        self.emails = []


class EmailRow:
    __slots__ = ("value", "type", "display", "primary", "position")

    def __init__(self, row):
        self.value, self.type, self.display, self.primary, self.position = (
            row.email_value, row.email_type, row.email_display, row.email_primary, row.email_position)
_USER_NAME_EQ = re.compile(r'\s*username\s+eq\s+("(?:[^"\\]|\\.)*")\s*', re.IGNORECASE)


def user_name_lookup_plan(query: Query) -> tuple[direct.Statement, dict] | None:
    """The statement and parameters that answer ``query`` when it is ``userName eq "x"``
    (what IdPs send before every push); None for every other query."""
    match = _USER_NAME_EQ.fullmatch(query.filter or "")
    if match is None or query.sort_by or query.start_index != 1 or query.count < 1:
        return None
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return None
    if "\x00" in value or F.has_lone_surrogate(value):
        return None  # the full parser refuses it with a clear invalidFilter (no database can store either)
    statement = _BY_USER_NAME_WITH_GROUPS if wants("groups", query.attributes, query.excluded) else _BY_USER_NAME
    return statement, {"key": fold(value)}


def _user_name_lookup(query: Query, ctx: Context, rows: list | None = None) -> list[dict] | None:
    """The page for ``userName eq "x"`` in one round trip, or None for other queries.

    ``rows``: the plan's rows when they were read already (in the token check's round trip).
    """
    plan = user_name_lookup_plan(query)
    if plan is None:
        return None
    statement, params = plan
    if rows is None:
        rows = statement.all(**params)
    with_groups = statement is _BY_USER_NAME_WITH_GROUPS
    users: dict[str, UserRow] = {}
    groups: dict[str, dict[str, tuple]] = {}
    seen_emails: set[tuple] = set()
    for row in rows:
        user = users.get(row.id)
        if user is None:
            user = users[row.id] = UserRow(row)
        if row.email_value is not None and (row.id, row.email_position) not in seen_emails:
            seen_emails.add((row.id, row.email_position))
            user.emails.append(EmailRow(row))
        if with_groups and row.group_id is not None:
            groups.setdefault(row.id, {})[row.group_id] = (row.group_key, row.group_id, row.group_display)
    manager_display = requested("manager.displayName", query.attributes)
    page = []
    for user in users.values():  # at most one: userName is unique
        user.emails.sort(key=lambda email: email.position)
        refs = [_group_ref(group_id, display, ctx) for _key, group_id, display in sorted(groups.get(user.id, {}).values())]
        page.append(project(user_resource(user, ctx, refs, manager_display), USER_DOC, query.attributes,
                            query.excluded))
    return page


def get_user(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def render_user(user: User, ctx: Context, query: Query, *, new: bool = False) -> dict:
    # A user created a moment ago belongs to no group yet: no query needed.
    wanted = not new and wants("groups", query.attributes, query.excluded)
    groups = groups_of([user.id], ctx).get(user.id) if wanted else None
    return project(user_resource(user, ctx, groups, requested("manager.displayName", query.attributes)),
                   USER_DOC, query.attributes, query.excluded)


def _check_user_name_free(user_name: str, user_id: str | None) -> None:
    clash = db.session.execute(select(User.id).where(User.user_name_key == fold(user_name))).scalar()
    if clash is not None and clash != user_id:
        raise Uniqueness(f"userName {user_name!r} is already taken by another user (id {clash}).")


def _commit_unique(what: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Uniqueness(f"{what} is already taken (another request took it at the same moment).") from None
    # What follows (reloading and rendering the resource) only reads: on SQLite it must not
    # take the write lock again, and queue behind every other writer, to do so.
    reads_only()


def create_user(payload, ctx: Context, query: Query) -> tuple[User, dict, int]:
    """Create a user; return it with its SCIM representation (shaped by ``query``).

    The new rows (user, e-mails, audit event) are written by ``write_new`` on the database
    driver, not by the ORM's flush: an IdP's initial push is thousands of these, and the flush
    was two thirds of each (docs/performance.md).
    """
    doc = USER_DOC.normalise(payload)
    user = User(id=new_id(), source="scim", extra={})
    _write_user(user, doc, keep_active_if_absent=False)
    user.search_text = search_text_for(user)  # kept by a flush-time event on the ORM's path
    for email in user.emails:
        email.user_id = user.id
    event = ctx.event("scim.user.create", user.user_name, {"id": user.id, "diff": diff({}, _audit_doc(doc))})
    try:
        # The unique index decides (no look-before-insert query): a clash rolls back, then is named.
        write_new(user, *user.emails, event)
    except IntegrityError:
        db.session.rollback()
        _check_user_name_free(doc["userName"], None)
        raise Uniqueness(f"userName {doc['userName']!r} is already taken.") from None
    # Rendered from what was just written: no reload afterwards.
    return user, render_user(user, ctx, query, new=True), user.version


def _audit_doc(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != UNKNOWN}


def _save_user_change(user: User, before: dict, after: dict, action: str, ctx: Context) -> None:
    was_active = bool(user.active)
    _write_user(user, after, keep_active_if_absent=True)
    changes = diff(_audit_doc(before), _audit_doc(user_document(user)))
    if changes or (before.get(UNKNOWN) or {}) != (after.get(UNKNOWN) or {}):
        user.touch()
    if was_active and not user.active:
        # Deactivation takes effect now: every session of this user ends.
        user.end_sessions()
        ctx.audit("scim.user.deactivate", user.user_name, {"id": user.id})
    elif not was_active and user.active:
        ctx.audit("scim.user.reactivate", user.user_name, {"id": user.id})
    ctx.audit(action, user.user_name, {"id": user.id, "diff": changes})
    _commit_unique(f"userName {after.get('userName')!r}")
    db.session.refresh(user)


def _lock_user(user_id: str) -> User:
    user = db.session.execute(select(User).where(User.id == user_id).with_for_update()).scalar()
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def replace_user(user_id: str, payload, ctx: Context, if_match: str | None) -> User:
    doc = USER_DOC.normalise(payload)  # a malformed body is a 400 whatever If-Match says
    user = _lock_user(user_id)
    check_if_match(if_match, user.version)
    _check_user_name_free(doc["userName"], user.id)
    before = user_document(user)
    _save_user_change(user, before, doc, "scim.user.replace", ctx)
    return user


def patch_operations(payload) -> list:
    if not isinstance(payload, dict):
        raise InvalidSyntax("The request body must be a JSON object.")
    schemas = payload.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or PATCH_SCHEMA.lower() not in
                                [str(s).lower() for s in schemas]):
        raise InvalidSyntax(f"A PATCH body lists the schema {PATCH_SCHEMA}.")
    operations = next((v for k, v in payload.items() if k.lower() == "operations"), None)
    if not isinstance(operations, list) or not operations:
        raise InvalidSyntax("Operations must be a non-empty list of add, replace or remove operations.")
    if len(operations) > MAX_PATCH_OPERATIONS:
        raise TooMany(f"At most {MAX_PATCH_OPERATIONS} operations per PATCH.", status=400)
    for index, operation in enumerate(operations, start=1):
        operation_fields(index, operation)  # a malformed operation is a 400 whatever If-Match says
    return operations


def patch_user(user_id: str, payload, ctx: Context, if_match: str | None) -> User:
    operations = patch_operations(payload)
    user = _lock_user(user_id)
    before = user_document(user)
    after = USER_DOC.patch(before, operations, resource_id=user.id)
    if not after.get("userName"):
        raise InvalidValue("userName is required; it cannot be removed.", scim_type="mutability")
    if "active" not in after:
        raise InvalidValue("active cannot be removed; replace it with false to deactivate the user.",
                           scim_type="mutability")
    check_if_match(if_match, user.version)  # after validation: a malformed PATCH is a 400 whatever If-Match says
    if after["userName"] != before["userName"]:
        _check_user_name_free(after["userName"], user.id)
    _save_user_change(user, before, after, "scim.user.patch", ctx)
    return user


def delete_user(user_id: str, ctx: Context, if_match: str | None) -> None:
    user = _lock_user(user_id)
    check_if_match(if_match, user.version)
    group_ids = db.session.execute(select(Membership.group_id).where(Membership.user_id == user.id)).scalars().all()
    if group_ids:
        _touch_groups(group_ids)
    ctx.audit("scim.user.delete", user.user_name, {"id": user.id, "groups": len(group_ids)})
    db.session.delete(user)
    db.session.commit()


def list_users(query: Query, ctx: Context, found: list | None = None) -> dict:
    """One page of users; ``found``: the rows of ``user_name_lookup_plan(query)`` if already read."""
    from .schemas import LIST_SCHEMA

    resources = _user_name_lookup(query, ctx, found)
    if resources is not None:
        return {"schemas": [LIST_SCHEMA], "totalResults": len(resources), "startIndex": 1,
                "itemsPerPage": len(resources), "Resources": resources}
    resolver = UserResolver(dialect_name())
    condition = compile_filter(query.filter, resolver) if query.filter else true()
    order = [User.created_at, User.id]
    if query.sort_by:
        expression = _sort_expression(query.sort_by, resolver)
        order = [expression.desc() if query.sort_order == "descending" else expression.asc(), User.id]
    # Emails come in the same query (a page is small; a lookup is one row).
    statement = select(User).options(joinedload(User.emails)).where(condition).order_by(*order)
    return _list(statement, select(func.count(User.id)).where(condition), query,
                 lambda rows: _render_users(rows, ctx, query))


def _render_users(users: list[User], ctx: Context, query: Query) -> list[dict]:
    groups = groups_of([u.id for u in users], ctx) if wants("groups", query.attributes, query.excluded) else {}
    manager_display = requested("manager.displayName", query.attributes)
    return [project(user_resource(u, ctx, groups.get(u.id), manager_display), USER_DOC, query.attributes,
                    query.excluded) for u in users]


def _list(statement, count_statement, query: Query, render) -> dict:
    from .schemas import LIST_SCHEMA

    resources: list[dict] = []
    if query.count == 0:
        total = db.session.execute(count_statement).scalar()
    else:
        rows = db.session.execute(statement.offset(query.start_index - 1).limit(query.count)).unique().scalars().all()
        if query.start_index == 1 and len(rows) < query.count:
            total = len(rows)  # the page holds everything: no second query
        else:
            total = db.session.execute(count_statement).scalar()
        resources = render(rows)
    return {"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": query.start_index,
            "itemsPerPage": len(resources), "Resources": resources}


# --- groups -----------------------------------------------------------------------------

def group_document(group: Group) -> dict:
    doc = {"displayName": group.display_name}
    if group.external_id:
        doc["externalId"] = group.external_id
    return doc


_MEMBER_IDS = (
    select(Membership.group_id, Membership.user_id)
    .where(Membership.group_id.in_(bindparam("ids", expanding=True)))
    .order_by(Membership.group_id, Membership.user_id)
)


def members_of(group_ids: list[str], ctx: Context, display: bool = False) -> dict[str, list[dict]]:
    if not group_ids:
        return {}
    if not display:
        # Ids only: read from the membership primary key alone, no join with users.
        base = f"{ctx.base_url}/Users/"
        if len(group_ids) == 1:  # one group's read or write: a fixed statement, on the driver
            rows = [(group_ids[0], row.user_id) for row in _MEMBERS_OF_ONE.all(id=group_ids[0])]
        else:
            rows = db.session.connection().execute(_MEMBER_IDS, {"ids": group_ids})
        out: dict[str, list[dict]] = {gid: [] for gid in group_ids}
        for group_id, user_id in rows:
            out[group_id].append({"value": user_id, "$ref": base + user_id, "type": "User"})
        return out
    rows = db.session.execute(
        select(Membership.group_id, User.id, User.display_name, User.given_name, User.family_name, User.user_name)
        .join(User, User.id == Membership.user_id).where(Membership.group_id.in_(group_ids))
        .order_by(Membership.group_id, User.user_name_key)
    ).all()
    out: dict[str, list[dict]] = {gid: [] for gid in group_ids}
    for row in rows:
        item = {"value": row.id, "$ref": f"{ctx.base_url}/Users/{row.id}", "type": "User"}
        if display:
            item["display"] = (row.display_name or " ".join(p for p in (row.given_name, row.family_name) if p)
                               or row.user_name)
        out[row.group_id].append(item)
    return out


def group_resource(group: Group, ctx: Context, members: list[dict] | None) -> dict:
    resource = {"schemas": [GROUP_SCHEMA], "id": group.id}
    resource.update(group_document(group))
    if members is not None:
        resource["members"] = members
    resource["meta"] = {
        "resourceType": "Group",
        "created": iso(group.created_at),
        "lastModified": iso(group.updated_at),
        "location": f"{ctx.base_url}/Groups/{group.id}",
        "version": etag(group.version),
    }
    return resource


def render_group(group: Group, ctx: Context, query: Query) -> dict:
    members = None
    if wants("members", query.attributes, query.excluded):
        members = members_of([group.id], ctx, requested("members.display", query.attributes))[group.id]
    return project(group_resource(group, ctx, members), GROUP_DOC, query.attributes, query.excluded)


def get_group(group_id: str, *, lock: bool = False, local_too: bool = False) -> Group:
    """A group the IdP may see (``local_too``: any group, for adopting a local one)."""
    statement = select(Group).where(Group.id == group_id, true() if local_too else idp_visible())
    if lock:
        statement = statement.with_for_update()
    group = db.session.execute(statement).scalar()
    if group is None:
        raise NotFound(f"No group with id {group_id}.")
    return group


def list_groups(query: Query, ctx: Context) -> dict:
    resolver = GroupResolver(dialect_name())
    condition = and_(idp_visible(), compile_filter(query.filter, resolver) if query.filter else true())
    order = [Group.created_at, Group.id]
    if query.sort_by:
        expression = _sort_expression(query.sort_by, resolver)
        order = [expression.desc() if query.sort_order == "descending" else expression.asc(), Group.id]

    def render(groups):
        members = (members_of([g.id for g in groups], ctx, requested("members.display", query.attributes))
                   if wants("members", query.attributes, query.excluded) else {})
        return [project(group_resource(g, ctx, members.get(g.id) if members else None), GROUP_DOC,
                        query.attributes, query.excluded) for g in groups]

    return _list(select(Group).where(condition).order_by(*order), select(func.count(Group.id)).where(condition),
                 query, render)


def _member_ids(value, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        if isinstance(item, dict):
            member = next((v for k, v in item.items() if k.lower() == "value"), None)
        else:
            member = item
        if not isinstance(member, str) or not member:
            raise InvalidValue(f"{where}: each member needs a value (a user id).")
        ids.append(member)
    return list(dict.fromkeys(ids))


def _known_users(ids: list[str]) -> tuple[list[str], list[str]]:
    """The ids naming users Lobby has, and the others.

    A member the IdP still lists but Lobby no longer has (deleted here, say) is left out and
    named in the audit event, not refused: refusing would fail every later push to the group
    as a whole (both vendors send a group's member changes in batches), and Microsoft's
    documented answer to adding an unknown member is a success.
    """
    if not ids:
        return [], []
    found = {row.id for row in _KNOWN_USERS.all(ids=direct.id_list(ids))}
    return [i for i in ids if i in found], [i for i in ids if i not in found]


def _insert_members(group_id: str, user_ids: list[str]) -> list[str]:
    """Add rows, never rewriting the group: a member someone else just added is left alone.

    Returns the users who were not members yet. Adding a member already there changes nothing
    (RFC 7644 §3.5.2.1: not even the group's version).
    """
    if not user_ids:
        return []
    present = {row.user_id for row in _PRESENT_MEMBERS.all(group_id=group_id, ids=direct.id_list(user_ids))}
    new = [uid for uid in dict.fromkeys(user_ids) if uid not in present]
    if not new:
        return []
    now = utcnow()
    # One statement for any batch, run as an executemany: a VALUES list spelled out per batch
    # size would be compiled afresh for every PATCH (a third of a member add's time).
    _ADD_MEMBERS.run_many([{"group_id": group_id, "user_id": uid, "source": "scim", "created_at": now}
                           for uid in new])
    return new


def _delete_members(group_id: str, user_ids: list[str] | None) -> list[str]:
    """Delete these members (all when ``user_ids`` is None); return the users who were members."""
    if user_ids is None:
        gone = [row.user_id for row in _MEMBERS_OF_ONE.all(id=group_id)]
        if gone:
            db.session.execute(Membership.__table__.delete().where(Membership.group_id == group_id))
        return gone
    if not user_ids:
        return []
    ids = direct.id_list(user_ids)
    gone = [row.user_id for row in _PRESENT_MEMBERS.all(group_id=group_id, ids=ids)]
    if gone:
        _REMOVE_MEMBERS.run(group_id=group_id, ids=ids)
    return gone


def _add_membership(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(Membership.__table__).on_conflict_do_nothing(index_elements=["group_id", "user_id"])


# Built once per database: the member changes an IdP's group push is made of. A list of ids is
# one parameter (``direct.in_list``), so a batch of any size reuses the compiled statement; each
# runs on the session's connection when the session holds one, else on the driver.
_KNOWN_USERS = direct.PerDialect(lambda d: select(_USERS_T.id).where(direct.in_list(_USERS_T.id, "ids", d)))
_PRESENT_MEMBERS = direct.PerDialect(lambda d: select(_MEMBERS_T.user_id).where(
    _MEMBERS_T.group_id == bindparam("group_id"), direct.in_list(_MEMBERS_T.user_id, "ids", d)))
_REMOVE_MEMBERS = direct.PerDialect(lambda d: Membership.__table__.delete().where(
    _MEMBERS_T.group_id == bindparam("group_id"), direct.in_list(_MEMBERS_T.user_id, "ids", d)))
_ADD_MEMBERS = direct.PerDialect(_add_membership, column_keys=["group_id", "user_id", "source", "created_at"])
_MEMBERS_OF_ONE = direct.Statement(
    select(_MEMBERS_T.user_id).where(_MEMBERS_T.group_id == bindparam("id")).order_by(_MEMBERS_T.user_id))
_GROUP_FOR_WRITE = direct.Statement(
    select(_GROUPS_T.id, _GROUPS_T.display_name, _GROUPS_T.external_id, _GROUPS_T.created_at,
           _GROUPS_T.updated_at, _GROUPS_T.version)
    .where(_GROUPS_T.id == bindparam("id"), idp_visible()).with_for_update())
_TOUCH_GROUP = direct.Statement(update(Group.__table__).where(_GROUPS_T.id == bindparam("id"))
                                .values(version=_GROUPS_T.version + 1, updated_at=bindparam("now")))


def _set_members(group_id: str, user_ids: list[str]) -> tuple[list[str], list[str]]:
    current = set(db.session.execute(select(Membership.user_id).where(Membership.group_id == group_id)).scalars())
    wanted = set(user_ids)
    return sorted(_insert_members(group_id, sorted(wanted - current))), sorted(
        _delete_members(group_id, sorted(current - wanted)))


def _touch_groups(group_ids: list[str]) -> None:
    db.session.execute(update(Group).where(Group.id.in_(group_ids))
                       .values(version=Group.version + 1, updated_at=utcnow()))


_CLASHING_GROUP = direct.Statement(select(_GROUPS_T.id, _GROUPS_T.source, _GROUPS_T.adopted_by_idp)
                                   .where(_GROUPS_T.display_name_key == bindparam("key")))


def _conflicting_group(display_name: str, group_id: str | None):
    """The other group holding this name (its row: id, source, adopted_by_idp), if any."""
    group = _CLASHING_GROUP.first(key=fold(display_name))
    return group if group is not None and group.id != group_id else None


def _reject_name_clash(display_name: str, group_id: str | None) -> None:
    clash = _conflicting_group(display_name, group_id)
    if clash is None:
        return
    if Group.managed_by_idp(clash.source, clash.adopted_by_idp):
        raise Uniqueness(f"displayName {display_name!r} is already taken by group {clash.id}.")
    raise Uniqueness(
        f"displayName {display_name!r} is taken by a group an admin made in Lobby. Lobby keeps its local "
        f"groups apart from the IdP's: rename one of them, or let the IdP adopt local groups of the same "
        f"name (Lobby Admin > Provisioning).")


def _create_group_directly(doc: dict, member_ids: list[str], ctx: Context) -> Group | None:
    """A new group, its members and the audit event in one transaction on the driver (no ORM
    flush: an IdP's group push creates many). None, with nothing written, when the name belongs
    to a local group: ``create_group`` adopts it or refuses, as the admin chose."""
    name = doc["displayName"]
    try:
        with direct.transaction():
            clash = _conflicting_group(name, None)
            if clash is not None:
                if not Group.managed_by_idp(clash.source, clash.adopted_by_idp):
                    return None  # adopted or refused by the policy setting, in create_group
                _reject_name_clash(name, None)
            member_ids, unknown = _known_users(member_ids)
            group = Group(display_name=name, external_id=doc.get("externalId"), source="scim")
            direct.insert(group)
            added = _insert_members(group.id, member_ids)
            direct.insert(ctx.event("scim.group.create", name, _unknown_noted(
                {"id": group.id, "diff": diff({}, doc), "members_added": added}, unknown)))
    except IntegrityError:
        raise Uniqueness(f"displayName {name!r} is already taken (another request took it at the same "
                         "moment).") from None
    reads_only()  # rendering the answer only reads
    return group


def create_group(payload, ctx: Context) -> tuple[Group, bool]:
    """Create a group (or adopt a local one when the admin allows); True when created."""
    doc = GROUP_DOC.normalise(payload)
    member_ids = _member_ids(_members_in(payload), "members") if _members_in(payload) else []
    if direct.session_free():
        group = _create_group_directly(doc, member_ids, ctx)
        if group is not None:
            return group, True
    clash = _conflicting_group(doc["displayName"], None)
    created = True
    if (clash is not None and not Group.managed_by_idp(clash.source, clash.adopted_by_idp)
            and settings.get("scim", "local_group_conflict") == "adopt"):
        group, created = get_group(clash.id, lock=True, local_too=True), False
        member_ids, unknown = _known_users(member_ids)
        group.adopted_by_idp = True
        group.external_id = doc.get("externalId")
        group.touch()
        db.session.flush()
        added, removed = _set_members(group.id, member_ids)
        ctx.audit("scim.group.adopt", group.display_name,
                  _unknown_noted({"id": group.id, "members_added": added, "members_removed": removed}, unknown))
    else:
        _reject_name_clash(doc["displayName"], None)
        member_ids, unknown = _known_users(member_ids)
        group = Group(display_name=doc["displayName"], external_id=doc.get("externalId"), source="scim")
        db.session.add(group)
        db.session.flush()
        added = _insert_members(group.id, member_ids)
        ctx.audit("scim.group.create", group.display_name,
                  _unknown_noted({"id": group.id, "diff": diff({}, doc), "members_added": added}, unknown))
    _commit_unique(f"displayName {doc['displayName']!r}")
    db.session.refresh(group)
    return group, created


def _unknown_noted(details: dict, unknown: list[str]) -> dict:
    if unknown:
        details["members_unknown"] = unknown
    return details


def _members_in(payload) -> list | None:
    if not isinstance(payload, dict):
        return None
    members = next((v for k, v in payload.items() if k.lower() == "members"), None)
    if members is not None and not isinstance(members, list):
        raise InvalidValue("members is multi-valued: send an array of {\"value\": \"<user id>\"}.")
    return members


def replace_group(group_id: str, payload, ctx: Context, if_match: str | None) -> Group:
    doc = GROUP_DOC.normalise(payload)  # a malformed body is a 400 whatever If-Match says
    members = _members_in(payload)
    member_ids = _member_ids(members, "members") if members else []
    group = get_group(group_id, lock=True)
    check_if_match(if_match, group.version)
    member_ids, unknown = _known_users(member_ids)
    before = group_document(group)
    if fold(doc["displayName"]) != group.display_name_key:
        _reject_name_clash(doc["displayName"], group.id)
    group.display_name = doc["displayName"]
    group.external_id = doc.get("externalId")
    added, removed = _set_members(group.id, member_ids)
    changes = diff(before, group_document(group))
    if changes or added or removed:
        group.touch()
    ctx.audit("scim.group.replace", group.display_name,
              _unknown_noted({"id": group.id, "diff": changes, "members_added": added, "members_removed": removed},
                             unknown))
    _commit_unique(f"displayName {doc['displayName']!r}")
    db.session.refresh(group)
    return group


def _member_filter_ids(group_id: str, node) -> list[str]:
    resolver = GroupResolver(dialect_name())
    condition = F.compile_sql(node, _ItemResolver("members", resolver._member_columns(), resolver.dialect))
    return list(db.session.execute(
        select(Membership.user_id).join(User, User.id == Membership.user_id)
        .where(Membership.group_id == group_id, condition)).scalars())


def _member_plan(operations: list) -> list[tuple[str, list[str]]] | None:
    """The operations as (add or remove, user ids) when every one adds or removes listed members
    (path ``members`` with a non-empty value, or a removal of ``members[value eq "<id>"]``): what
    Okta's and Entra's group pushes send.
    None for anything else, which ``patch_group`` handles in full (and refuses when malformed)."""
    plan = []
    for operation in operations:
        if not isinstance(operation, dict):
            return None
        fields = {str(k).lower(): v for k, v in operation.items()}
        op, path, value = fields.get("op"), fields.get("path"), fields.get("value")
        if isinstance(op, str) and op.lower() == "remove" and isinstance(path, str) and "value" not in fields:
            named = _one_member_named(path)  # Okta's removal: members[value eq "<id>"]
            if named is None:
                return None
            plan.append(("remove", named))
            continue
        if (not isinstance(op, str) or op.lower() not in ("add", "remove") or not isinstance(path, str)
                or path.strip().lower() != "members" or not isinstance(value, list) or not value):
            return None
        try:
            ids = _member_ids(value, "members")
        except ScimError:
            return None
        plan.append((op.lower(), ids))
    return plan


def _one_member_named(path: str) -> list[str] | None:
    """The id in ``members[value eq "<id>"]`` (a member's value is its user id, compared exactly),
    as a list; None for any other path."""
    try:
        parsed = F.parse_patch_path(path.strip())
    except ScimError:
        return None
    node = parsed.value_filter
    if (parsed.attr.urn is not None or parsed.attr.attr.lower() != "members" or parsed.attr.sub or parsed.sub
            or not isinstance(node, F.Compare) or node.op.lower() != "eq" or node.path.urn is not None
            or node.path.attr.lower() != "value" or node.path.sub is not None or not isinstance(node.value, str)):
        return None
    return [node.value]


def _patch_members(group_id: str, plan: list[tuple[str, list[str]]], ctx: Context, if_match: str | None):
    """``patch_group`` for member changes alone, in one transaction on the driver (no ORM): the
    group row (locked on PostgreSQL; SQLite's write lock is taken up front), the membership rows,
    the version when something changed, the audit event. Returns the group's row as it now is."""
    with direct.transaction():
        group = _GROUP_FOR_WRITE.first(id=group_id)
        if group is None:
            raise NotFound(f"No group with id {group_id}.")
        check_if_match(if_match, group.version)
        added: list[str] = []
        removed: list[str] = []
        unknown: list[str] = []
        for op, ids in plan:
            if op == "add":
                ids, missing = _known_users(ids)
                unknown.extend(missing)
                added.extend(_insert_members(group.id, ids))
            else:
                removed.extend(_delete_members(group.id, ids))
        if added or removed:
            now = utcnow()
            _TOUCH_GROUP.run(id=group.id, now=now)
            group = group._replace(version=group.version + 1, updated_at=now)
        direct.insert(ctx.event("scim.group.patch", group.display_name,
                                _member_details(group.id, {}, added, removed, unknown)))
    reads_only()  # rendering the answer only reads: no second transaction (nor SQLite write lock)
    return group


def _member_details(group_id: str, changes: dict, added: list[str], removed: list[str], unknown: list[str]) -> dict:
    details = {"id": group_id, "diff": changes}
    if added:
        details["members_added"] = added
    if removed:
        details["members_removed"] = removed
    return _unknown_noted(details, unknown)


def patch_group(group_id: str, payload, ctx: Context, if_match: str | None):
    """Apply a PATCH to a group; returns the group (a model object, or a row with the same fields)."""
    operations = patch_operations(payload)
    plan = _member_plan(operations)
    if plan is not None and direct.session_free():
        return _patch_members(group_id, plan, ctx, if_match)
    group = get_group(group_id, lock=True)
    check_if_match(if_match, group.version)
    added: list[str] = []
    removed: list[str] = []
    unknown: list[str] = []

    def members(op: str, path: F.PatchPath, value):
        # Members are rows of their own: each operation adds or deletes only the rows it names.
        if path.attr.sub or path.sub:
            raise InvalidValue("members are changed whole: add or remove {\"value\": \"<user id>\"}.",
                               scim_type="invalidPath")
        if op == "remove":
            if path.value_filter is not None:
                ids = _member_filter_ids(group.id, path.value_filter)
                if value is not None:
                    ids = [i for i in ids if i in set(_member_ids(value, "members"))]
            elif value is not None:
                ids = _member_ids(value, "members")  # Entra: remove with a list of values
            else:
                ids = None  # remove all members
            removed.extend(_delete_members(group.id, ids))
            return
        if path.value_filter is not None:
            raise InvalidValue("Add or replace members without a filter: path \"members\".", scim_type="invalidPath")
        ids = _member_ids(value, "members") if value not in (None, []) else []
        ids, missing = _known_users(ids)
        unknown.extend(missing)
        if op == "add":
            added.extend(_insert_members(group.id, ids))
        else:
            plus, minus = _set_members(group.id, ids)
            added.extend(plus)
            removed.extend(minus)

    before = group_document(group)
    after = GROUP_DOC.patch(before, operations, resource_id=group.id, special={"members": members})
    if not after.get("displayName"):
        raise InvalidValue("displayName is required; it cannot be removed.", scim_type="mutability")
    if fold(after["displayName"]) != group.display_name_key:
        _reject_name_clash(after["displayName"], group.id)
    group.display_name = after["displayName"]
    group.external_id = after.get("externalId")
    changes = diff(before, group_document(group))
    if changes or added or removed:
        group.touch()
    ctx.audit("scim.group.patch", group.display_name, _member_details(group.id, changes, added, removed, unknown))
    _commit_unique(f"displayName {after['displayName']!r}")
    db.session.refresh(group)
    return group


def delete_group(group_id: str, ctx: Context, if_match: str | None) -> None:
    group = get_group(group_id, lock=True)
    check_if_match(if_match, group.version)
    ctx.audit("scim.group.delete", group.display_name, {"id": group.id, "adopted": group.adopted_by_idp})
    db.session.delete(group)
    db.session.commit()
