"""SCIM documents in and out: normalising what an IdP sends, and PATCH applied to a document.

A *document* is a resource's SCIM JSON without ``id``, ``meta`` and ``schemas``, with
attribute names in their canonical spelling and extension attributes under the
extension's URN. Lobby reads a user into a document, changes the document (PUT replaces
it, PATCH edits it) and writes it back, so every dialect of every IdP goes through the
same two functions.
"""
from __future__ import annotations

import copy
from typing import Callable

from models.user import fold

from .errors import InvalidPath, InvalidSyntax, InvalidValue, Mutability, NoTarget
from .filters import AttrRef, PatchPath, equality_template, matches, parse_patch_path, split_attr_path
from .schemas import USER_SCHEMA, Attr, Schema

EXTERNAL_ID = Attr("externalId", case_exact=True, max_length=255)
UNKNOWN = "_unknown"  # what an IdP sent that Lobby does not declare: kept, never returned
READ_ONLY_TOP = {"id", "meta", "schemas"}
# RFC 7643 §4.1.2 User attributes Lobby does not model; kept (never returned) when written.
UNMODELLED_USER_ATTRIBUTES = {"roles", "entitlements", "ims", "photos", "x509certificates"}
NEVER_STORED = {"password"}  # Okta may send one; Lobby signs people in through the IdP


def _bool(value, where: str) -> bool:
    # Entra (before its 2020 fixes, and some tenants still) sends "True"/"False" strings.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidValue(f"{where} must be a boolean (true or false), got {value!r}.")


def coerce(attr: Attr, value, where: str | None = None, *, as_item: bool = False):
    """``value`` in the shape ``attr`` declares; ``as_item`` coerces one item of a multi-valued attr."""
    where = where or attr.name
    if value is None:
        return None
    if attr.multi and not as_item:
        items = value if isinstance(value, list) else [value]
        out = [coerce(attr, item, where, as_item=True) for item in items]
        return [item for item in out if item not in (None, {})]
    if attr.type == "complex":
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            value = value[0]  # some clients wrap a single complex value in a list
        if isinstance(value, str):
            # Entra sends the enterprise manager as a bare id string.
            value = {"value": value} if attr.child("value") else None
            if value is None:
                raise InvalidValue(f"{where} is a complex attribute; send an object.")
        if not isinstance(value, dict):
            raise InvalidValue(f"{where} is a complex attribute; send an object.")
        out = {}
        for key, sub_value in value.items():
            sub = attr.child(key)
            if sub is None or sub.mutability == "readOnly":
                continue
            coerced = coerce(sub, sub_value, f"{where}.{sub.name}")
            if coerced is not None and coerced != "":
                out[sub.name] = coerced
        return out
    if attr.type == "boolean":
        return _bool(value, where)
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise InvalidValue(f"{where} must be a string, got {type(value).__name__}.")
    if isinstance(value, (int, float)):
        return str(value)  # e.g. employeeNumber sent as a JSON number
    if not isinstance(value, str):
        raise InvalidValue(f"{where} must be a string.")
    if attr.required and value and not value.strip():
        raise InvalidValue(f"{where} cannot be blank: it needs a visible character.")
    if attr.max_length is not None:
        _check_length(attr, value, where)
    return value


def _check_length(attr: Attr, value: str, where: str) -> None:
    """Refuse what Lobby cannot store whole: never cut short, and never a database error."""
    if len(value) > attr.max_length:
        raise InvalidValue(f"{where} is {len(value)} characters long; Lobby stores at most {attr.max_length}.")
    folded = len(fold(value)) if attr.keyed else 0
    if folded > attr.max_length:
        raise InvalidValue(f"{where} is {folded} characters long once case is folded (as Lobby compares "
                           f"it); Lobby stores at most {attr.max_length}.")


def _check_primary(attr: Attr, items: list) -> None:
    if attr.child("primary") and sum(1 for i in items if i.get("primary") is True) > 1:
        raise InvalidValue(f"Only one of the {attr.name} may be primary.")


def operation_fields(index: int, operation) -> tuple[str, dict]:
    """One PATCH operation's op (lower case) and its fields (names in lower case), once its shape
    is checked: an object, a known op, a string path, a value where one is needed. Run over every
    operation before anything is applied or any precondition (If-Match) is weighed."""
    if not isinstance(operation, dict):
        raise InvalidSyntax(f"Operation {index} must be an object.")
    fields = {str(k).lower(): v for k, v in operation.items()}
    op = fields.get("op")
    if not isinstance(op, str) or op.lower() not in ("add", "replace", "remove"):
        raise InvalidSyntax(f"Operation {index}: op must be add, replace or remove, got {op!r}.")
    op = op.lower()
    path = fields.get("path")
    if path in (None, ""):
        if op == "remove":
            raise NoTarget(f"Operation {index}: remove needs a path.")
        if not isinstance(fields.get("value"), dict):
            raise InvalidValue(f"Operation {index}: without a path, value must be an object.")
    elif not isinstance(path, str):
        raise InvalidPath(f"Operation {index}: path must be a string.")
    elif op != "remove" and "value" not in fields:
        raise InvalidValue(f"Operation {index}: {op} needs a value.")
    return op, fields


class DocumentSchema:
    """The core schema of a resource type plus its extensions."""

    def __init__(self, core: Schema, extensions: tuple[Schema, ...] = ()):
        self.core = core
        self.extensions = extensions

    def extension(self, urn: str) -> Schema | None:
        lowered = urn.lower()
        return next((s for s in self.extensions if s.id.lower() == lowered), None)

    def resolve(self, urn: str | None, name: str, *, strict_urn: bool = False) -> tuple[Schema, Attr] | None:
        """The schema and attribute ``[urn:]name`` names, or None."""
        if urn is not None:
            if urn.lower() == self.core.id.lower():
                schema = self.core
            else:
                schema = self.extension(urn)
            if schema is None:
                return None
            attr = schema.attr(name)
            return (schema, attr) if attr else None
        attr = self.core.attr(name)
        if attr:
            return self.core, attr
        if strict_urn:
            return None
        # Lenient: an extension attribute named without its URN ("department").
        for schema in self.extensions:
            attr = schema.attr(name)
            if attr:
                return schema, attr
        return None

    def container(self, doc: dict, schema: Schema, create: bool) -> dict | None:
        if schema is self.core:
            return doc
        if create:
            return doc.setdefault(schema.id, {})
        return doc.get(schema.id)

    # --- whole documents (POST / PUT) ----------------------------------------------------
    def normalise(self, payload) -> dict:
        if not isinstance(payload, dict):
            raise InvalidSyntax("The request body must be a JSON object.")
        doc: dict = {}
        unknown: dict = {}
        for key, value in payload.items():
            lowered = key.lower()
            if lowered == "schemas" and value is not None and not (
                    isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise InvalidSyntax("schemas must be a list of schema URNs, e.g. "
                                    f'["{self.core.id}"].')
            if lowered in READ_ONLY_TOP or lowered in NEVER_STORED:
                continue
            if lowered == "externalid":
                doc["externalId"] = coerce(EXTERNAL_ID, value)
                continue
            extension = self.extension(key)
            if extension is not None:
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise InvalidValue(f"{key} must be an object of extension attributes.")
                part = {}
                for sub_key, sub_value in value.items():
                    if sub_key.lower() == "schemas":
                        continue
                    attr = extension.attr(sub_key)
                    if attr is None:
                        unknown.setdefault(extension.id, {})[sub_key] = sub_value
                        continue
                    if attr.mutability == "readOnly":
                        continue
                    coerced = coerce(attr, sub_value, f"{extension.id}:{attr.name}")
                    if coerced not in (None, "", [], {}):
                        part[attr.name] = coerced
                if part:
                    doc[extension.id] = part
                continue
            attr = self.core.attr(key)
            if attr is None:
                unknown[key] = value
                continue
            if attr.mutability == "readOnly":
                continue
            coerced = coerce(attr, value)
            if coerced in (None, "", [], {}):
                continue
            if attr.multi:
                _check_primary(attr, coerced)
            doc[attr.name] = coerced
        for attr in self.core.attributes:
            if attr.required and attr.name not in doc and attr.type != "boolean":
                # A missing boolean takes its default (active: true) rather than failing the request.
                raise InvalidValue(f"{attr.name} is required.")
        if unknown:
            doc[UNKNOWN] = unknown
        return doc

    # --- PATCH ---------------------------------------------------------------------------
    def patch(self, doc: dict, operations, *, resource_id: str,
              special: dict[str, Callable] | None = None) -> dict:
        """Apply RFC 7644 §3.5.2 operations to a copy of ``doc`` and return it.

        ``special`` maps an attribute name (lower case) to a handler(op, patch_path, value)
        for attributes kept out of the document (a group's members).
        """
        doc = copy.deepcopy(doc)
        special = special or {}
        for index, operation in enumerate(operations, start=1):
            op, fields = operation_fields(index, operation)
            path = fields.get("path")
            value = fields.get("value")
            if path in (None, ""):
                self._patch_pathless(doc, op, value, resource_id, special)
                continue
            extension = self.extension(path.strip())
            if extension is not None:  # the whole extension as the target
                if op == "remove":
                    doc.pop(extension.id, None)
                    continue
                if not isinstance(value, dict):
                    raise InvalidValue(f"Operation {index}: {extension.id} takes an object.")
                for key, sub_value in value.items():
                    if key.lower() == "schemas":
                        continue
                    self._patch_one(doc, op, PatchPath(split_attr_path(f"{extension.id}:{key}", for_filter=False)),
                                    sub_value, resource_id, special)
                continue
            self._patch_one(doc, op, parse_patch_path(path), value, resource_id, special, raw=path.strip())
        return doc

    def _patch_pathless(self, doc, op, value: dict, resource_id, special):
        for key, sub_value in value.items():
            lowered = key.lower()
            if lowered == "schemas" or lowered == "meta" or lowered in NEVER_STORED:
                continue
            if lowered == "id":
                # Okta's group rename sends the id along with the displayName.
                if sub_value != resource_id:
                    raise Mutability("id is read-only.")
                continue
            extension = self.extension(key)
            if extension is not None and isinstance(sub_value, dict):
                for ext_key, ext_value in sub_value.items():
                    if ext_key.lower() == "schemas":
                        continue
                    self._patch_one(doc, op, PatchPath(split_attr_path(f"{extension.id}:{ext_key}", for_filter=False)),
                                    ext_value, resource_id, special, lenient=True)
                continue
            try:
                parsed = parse_patch_path(key)
            except InvalidPath:
                doc.setdefault(UNKNOWN, {})[key] = sub_value
                continue
            # Entra's dotted keys ("name.givenName") and URN-prefixed keys arrive here too.
            self._patch_one(doc, op, parsed, sub_value, resource_id, special, lenient=True)

    def _undeclared_but_kept(self, attr: AttrRef) -> bool:
        """An attribute Lobby does not declare but keeps when an IdP writes it: one of RFC 7643's
        own User attributes that Lobby does not model (Entra's ``roles``), or any attribute of an
        extension schema Lobby does not know (Entra's custom ``urn:…:CustomExtensionName:2.0:User``).
        Any other unknown name is a mistake worth a 400 (``nmae.givenName``)."""
        if attr.urn is None or attr.urn.lower() == self.core.id.lower():
            return self.core.id == USER_SCHEMA and attr.attr.lower() in UNMODELLED_USER_ATTRIBUTES
        return self.extension(attr.urn) is None

    def _patch_one(self, doc, op, path: PatchPath, value, resource_id, special, lenient=False, raw=None):
        name = path.attr.attr
        if path.attr.urn is None and name.lower() in special:
            special[name.lower()](op, path, value)
            return
        if path.attr.urn is None and name.lower() == "externalid":
            if op == "remove":
                doc.pop("externalId", None)
            else:
                doc["externalId"] = coerce(EXTERNAL_ID, value)
            return
        if path.attr.urn is None and name.lower() in ("id", "meta", "schemas"):
            if name.lower() == "id" and value == resource_id and op != "remove":
                return
            raise Mutability(f"{name} is read-only.")
        resolved = self.resolve(path.attr.urn, name)
        if resolved is None:
            if lenient and op != "remove":
                doc.setdefault(UNKNOWN, {})[str(path.attr)] = value
                return
            if self._undeclared_but_kept(path.attr):
                # Kept as sent, under the path as sent (a value filter included), never returned.
                key = raw if raw is not None and (path.value_filter is not None or path.sub) else str(path.attr)
                kept = doc.setdefault(UNKNOWN, {})
                if op == "remove":
                    kept.pop(key, None)
                elif op == "add" and isinstance(kept.get(key), list) and isinstance(value, list):
                    kept[key] = kept[key] + [item for item in value if item not in kept[key]]
                else:
                    kept[key] = value
                return
            raise InvalidPath(f"{path.attr} is not an attribute Lobby supports.")
        schema, attr = resolved
        if attr.mutability == "readOnly":
            raise Mutability(f"{attr.name} is read-only.")
        sub = path.sub or path.attr.sub
        if path.value_filter is not None and path.attr.sub:
            raise InvalidPath(f"{path.attr} cannot take a value filter.")
        sub_attr = None
        if sub is not None:
            sub_attr = attr.child(sub)
            if sub_attr is None or attr.type != "complex":
                raise InvalidPath(f"{attr.name}.{sub} is not an attribute Lobby supports.")
            if sub_attr.mutability == "readOnly":
                raise Mutability(f"{attr.name}.{sub_attr.name} is read-only.")
        container = self.container(doc, schema, create=op != "remove")
        if container is None:
            return
        if path.value_filter is not None:
            if not attr.multi:
                raise InvalidPath(f"{attr.name} is single-valued; it takes no value filter.")
            self._patch_filtered(container, op, attr, path, sub_attr, value)
        elif attr.multi:
            if sub_attr is not None:
                raise InvalidPath(f"Say which {attr.name} to change with a filter, e.g. {attr.name}[type eq \"work\"].{sub_attr.name}.")
            self._patch_multi(container, op, attr, value)
        elif sub_attr is not None:
            current = container.get(attr.name) or {}
            if op == "remove":
                current.pop(sub_attr.name, None)
            else:
                coerced = coerce(sub_attr, value, f"{attr.name}.{sub_attr.name}")
                if coerced in (None, ""):
                    current.pop(sub_attr.name, None)
                else:
                    current[sub_attr.name] = coerced
            self._store(container, attr.name, current)
        elif op == "remove":
            container.pop(attr.name, None)
        elif attr.type == "complex":
            # add and replace both merge into a complex attribute (RFC 7644 §3.5.2.1 and .3).
            incoming = coerce(attr, value)
            if incoming is None or (isinstance(value, str) and value == ""):
                container.pop(attr.name, None)
            else:
                merged = dict(container.get(attr.name) or {})
                merged.update(incoming)
                self._store(container, attr.name, merged)
        else:
            self._store(container, attr.name, coerce(attr, value))
        if schema is not self.core and not doc.get(schema.id):
            doc.pop(schema.id, None)

    @staticmethod
    def _store(container: dict, name: str, value):
        if value in (None, "", [], {}):
            container.pop(name, None)
        else:
            container[name] = value

    def _patch_multi(self, container, op, attr: Attr, value):
        current = list(container.get(attr.name) or [])
        if op == "remove":
            if value is None:
                container.pop(attr.name, None)
                return
            # Entra removes items by listing them: [{"value": "..."}].
            targets = value if isinstance(value, list) else [value]
            keys = {str(t.get("value")) if isinstance(t, dict) else str(t) for t in targets}
            remaining = [item for item in current if str(item.get("value")) not in keys]
            self._store(container, attr.name, remaining)
            return
        incoming = coerce(attr, value)
        if op == "replace":
            _check_primary(attr, incoming)
            self._store(container, attr.name, incoming)
            return
        was_primary = [item for item in current if item.get("primary") is True]
        value_attr = attr.child("value")
        for item in incoming:
            same = None
            if value_attr is not None and isinstance(item.get("value"), str):
                # An item whose value is there already is that item (RFC 7644 §3.5.2.1: adding what
                # is there changes nothing); what else the add says about it is applied to it.
                fold_value = (lambda v: v) if value_attr.case_exact else str.casefold
                same = next((known for known in current if isinstance(known.get("value"), str)
                             and fold_value(known["value"]) == fold_value(item["value"])), None)
            if same is not None:
                index = current.index(same)
                current[index] = dict(same, **{k: v for k, v in item.items() if k != "value"})
            elif item not in current:
                current.append(item)
        self._settle_primary(attr, current, keep_first=False, previously=was_primary)
        self._store(container, attr.name, current)

    def _patch_filtered(self, container, op, attr: Attr, path: PatchPath, sub_attr: Attr | None, value):
        current = list(container.get(attr.name) or [])
        was_primary = [item for item in current if item.get("primary") is True]

        def case_exact(name: str) -> bool:
            child = attr.child(name)
            return bool(child and child.case_exact)

        hits = [i for i, item in enumerate(current) if matches(path.value_filter, item, case_exact)]
        if op == "remove":
            if sub_attr is not None:
                for i in hits:
                    current[i].pop(sub_attr.name, None)
                current = [item for item in current if item]
            else:
                current = [item for i, item in enumerate(current) if i not in hits]
            self._store(container, attr.name, current)
            return
        if not hits:
            template = equality_template(path.value_filter)
            if template is None:
                raise NoTarget(f"No {attr.name} match {path.value_filter!s}.")
            new_item = coerce(attr, template, attr.name, as_item=True)
            if sub_attr is not None:
                new_item[sub_attr.name] = coerce(sub_attr, value, f"{attr.name}.{sub_attr.name}")
            else:
                new_item.update(coerce(attr, value, attr.name, as_item=True) or {})
            current.append(new_item)
        else:
            for i in hits:
                if sub_attr is not None:
                    coerced = coerce(sub_attr, value, f"{attr.name}.{sub_attr.name}")
                    if coerced in (None, ""):
                        current[i].pop(sub_attr.name, None)
                    else:
                        current[i][sub_attr.name] = coerced
                elif op == "replace":
                    current[i] = coerce(attr, value, attr.name, as_item=True) or {}
                else:
                    current[i].update(coerce(attr, value, attr.name, as_item=True) or {})
        self._settle_primary(attr, current, keep_first=False, previously=was_primary)
        self._store(container, attr.name, [item for item in current if item])

    @staticmethod
    def _settle_primary(attr: Attr, items: list, *, keep_first: bool, previously: list):
        """At most one primary: the one this operation made primary wins over the old one."""
        if not attr.child("primary"):
            return
        primaries = [item for item in items if item.get("primary") is True]
        if len(primaries) <= 1:
            return
        for item in primaries:
            if any(item is old for old in previously):
                item["primary"] = False
        primaries = [item for item in items if item.get("primary") is True]
        for item in primaries[:-1]:
            item["primary"] = False


def flatten(doc: dict, prefix: str = "") -> dict:
    """``{"name": {"givenName": "A"}}`` → ``{"name.givenName": "A"}`` for audit diffs."""
    out = {}
    for key, value in doc.items():
        if key == UNKNOWN:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}:" if key.startswith("urn:") else f"{name}."))
        else:
            out[name] = value
    return out


def diff(before: dict, after: dict) -> dict:
    old, new = flatten(before), flatten(after)
    return {key: {"old": old.get(key), "new": new.get(key)}
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}
