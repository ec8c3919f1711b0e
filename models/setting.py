"""Settings kept in the database, read through a small typed API.

Every setting has a declared section, name, type and default; reading or
writing anything undeclared is a programming error, not a silent new row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import db, utcnow


class Setting(db.Model):
    __tablename__ = "settings"
    __table_args__ = (db.UniqueConstraint("section", "name", name="uq_settings_section_name"),)

    id = db.Column(db.Integer, primary_key=True)
    section = db.Column(db.String(64), nullable=False)
    name = db.Column(db.String(64), nullable=False)
    value = db.Column(db.JSON)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)


@dataclass(frozen=True)
class Definition:
    type: type
    default: Any
    secret: bool = False


DEFAULT_ATTRIBUTE_MAP = {
    "given_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    "family_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "user_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "display_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "department": "department",
    "title": "jobtitle",
}

DEFINITIONS: dict[str, dict[str, Definition]] = {
    "auth": {
        # The email + password form on /login.
        "password_login": Definition(bool, True),
    },
    "saml": {
        "active": Definition(bool, False),
        "method": Definition(str, "metadata_file"),  # metadata_file | metadata_url | manual
        "label": Definition(str, "SSO Login"),
        "metadata_xml": Definition(str, ""),
        "metadata_url": Definition(str, ""),
        "metadata_fetched_at": Definition(str, ""),
        "idp_entity_id": Definition(str, ""),
        "idp_sso_url": Definition(str, ""),
        "idp_certificates": Definition(list, []),  # PEM strings
        "group_attribute": Definition(str, ""),  # "Synchronize Groups"; empty = off
        "jit_create": Definition(bool, True),
        "clock_skew_seconds": Definition(int, 120),
        "attribute_map": Definition(dict, DEFAULT_ATTRIBUTE_MAP),
        # When the provider was last changed, and when an admin last completed an SSO sign-in.
        "provider_changed_at": Definition(str, ""),
        "admin_sso_verified_at": Definition(str, ""),
        "flight_recorder_size": Definition(int, 50),
    },
    "scim": {
        "enabled": Definition(bool, True),
        # What a POST /Groups whose name equals a local group does: "reject" (409) or "adopt".
        "local_group_conflict": Definition(str, "reject"),
        "flight_recorder_size": Definition(int, 200),
    },
    "system": {
        # Written once, by the first-run set-up; its unique row makes that a one-time event.
        "first_admin_created": Definition(str, ""),
    },
    "audit": {
        "retention_days": Definition(int, 365),
    },
}


class SettingsError(KeyError):
    pass


class Settings:
    """``settings.get("saml", "label")`` / ``settings.set(...)`` with typed defaults."""

    def _definition(self, section: str, name: str) -> Definition:
        try:
            return DEFINITIONS[section][name]
        except KeyError:
            raise SettingsError(f"unknown setting {section}.{name}") from None

    def get(self, section: str, name: str) -> Any:
        definition = self._definition(section, name)
        row = Setting.query.filter_by(section=section, name=name).one_or_none()
        if row is None or row.value is None:
            return _copy(definition.default)
        return definition.type(row.value)

    def section(self, section: str) -> dict[str, Any]:
        if section not in DEFINITIONS:
            raise SettingsError(f"unknown settings section {section}")
        values = {name: _copy(d.default) for name, d in DEFINITIONS[section].items()}
        for row in Setting.query.filter_by(section=section):
            if row.name in values and row.value is not None:
                values[row.name] = DEFINITIONS[section][row.name].type(row.value)
        return values

    def set(self, section: str, name: str, value: Any) -> None:
        definition = self._definition(section, name)
        if not isinstance(value, definition.type) or (definition.type is int and isinstance(value, bool)):
            raise SettingsError(f"{section}.{name} takes {definition.type.__name__}, not {type(value).__name__}")
        row = Setting.query.filter_by(section=section, name=name).one_or_none()
        if row is None:
            row = Setting(section=section, name=name)
            db.session.add(row)
        row.value = _copy(value)
        row.updated_at = utcnow()

    def update(self, section: str, values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Write several values; return the diff {name: (old, new)} of what changed."""
        current = self.section(section)
        diff = {}
        for name, value in values.items():
            if current.get(name) != value:
                self.set(section, name, value)
                diff[name] = (current.get(name), value)
        return diff

    def redact(self, section: str, diff: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
        """A diff fit for the audit log: secrets replaced by a marker."""
        out = {}
        for name, (old, new) in diff.items():
            if DEFINITIONS[section][name].secret:
                out[name] = {"old": "[redacted]", "new": "[redacted]"}
            else:
                out[name] = {"old": old, "new": new}
        return out


def _copy(value):
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


settings = Settings()
