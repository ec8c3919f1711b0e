"""What Lobby serves over SCIM, declared once: discovery documents are built from this,
and so are input normalisation, attribute selection and filter resolution.

Discovery must tell the truth (third-party checkers build their tests from it), so an
attribute is declared here only when Lobby stores it and returns it as written.
"""
from __future__ import annotations

from dataclasses import dataclass

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"

# Page size: the default when `count` is absent, and the most one page returns.
DEFAULT_COUNT = 100
MAX_COUNT = 1000
# Most operations accepted in one PATCH (Entra batches group members by up to a few hundred).
MAX_PATCH_OPERATIONS = 1000


@dataclass(frozen=True)
class Attr:
    name: str
    type: str = "string"  # string | boolean | complex | reference | dateTime | integer
    multi: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    uniqueness: str = "none"
    description: str = ""
    sub: tuple = ()
    canonical: tuple = ()
    reference_types: tuple = ()
    # Characters Lobby can store (its column's size); not part of discovery, which has no such
    # property. ``keyed``: also indexed by its folded form, which must fit as well.
    max_length: int | None = None
    keyed: bool = False

    def child(self, name: str) -> "Attr | None":
        lowered = name.lower()
        return next((a for a in self.sub if a.name.lower() == lowered), None)

    def to_dict(self) -> dict:
        body = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi,
            "description": self.description or self.name,
            "required": self.required,
            "mutability": self.mutability,
            "returned": self.returned,
        }
        if self.type in ("string", "reference", "binary"):
            body["caseExact"] = self.case_exact
        if self.type in ("string", "reference", "integer", "decimal", "binary"):
            body["uniqueness"] = self.uniqueness
        if self.canonical:
            body["canonicalValues"] = list(self.canonical)
        if self.reference_types:
            body["referenceTypes"] = list(self.reference_types)
        if self.sub:
            body["subAttributes"] = [a.to_dict() for a in self.sub]
        return body


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple
    resource: str  # "Users" | "Groups": where its meta.location points

    def attr(self, name: str) -> Attr | None:
        lowered = name.lower()
        return next((a for a in self.attributes if a.name.lower() == lowered), None)

    def to_dict(self, base_url: str) -> dict:
        return {
            "schemas": [SCHEMA_SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_dict() for a in self.attributes],
            "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{self.id}"},
        }


def _typed(kind_canonical=("work", "home", "other"), max_length=None):
    return Attr("type", canonical=kind_canonical, max_length=max_length, description="A label: work, home or other.")


def _primary():
    return Attr("primary", "boolean", description="The preferred value; at most one is primary.")


USER = Schema(
    id=USER_SCHEMA, name="User", description="A person who signs in to Lobby.", resource="Users",
    attributes=(
        Attr("userName", required=True, uniqueness="server", max_length=255, keyed=True,
             description="Unique login, compared case-insensitively, echoed back as sent."),
        Attr("name", "complex", description="The person's name.", sub=(
            Attr("formatted"), Attr("familyName", max_length=255), Attr("givenName", max_length=255),
            Attr("middleName"),
            Attr("honorificPrefix"), Attr("honorificSuffix"))),
        Attr("displayName", max_length=255, description='Shown in Lobby; when absent, "givenName familyName".'),
        Attr("nickName"),
        Attr("profileUrl", "reference", reference_types=("external",)),
        Attr("title", max_length=255, description="Job title."),
        Attr("userType"),
        Attr("preferredLanguage"),
        Attr("locale"),
        Attr("timezone"),
        # Required: Lobby always knows whether a user may sign in, so active cannot be removed
        # (a POST without it still creates an active user).
        Attr("active", "boolean", required=True,
             description="false ends the user's sessions and blocks sign-in; it cannot be removed."),
        Attr("emails", "complex", multi=True, description="Email addresses; the primary work address is used.",
             sub=(Attr("value", max_length=320, keyed=True), Attr("display", max_length=255),
                  _typed(max_length=32), _primary())),
        Attr("phoneNumbers", "complex", multi=True, sub=(
            Attr("value"), Attr("display"), _typed(("work", "home", "mobile", "fax", "pager", "other")),
            _primary())),
        Attr("addresses", "complex", multi=True, sub=(
            Attr("formatted"), Attr("streetAddress"), Attr("locality"), Attr("region"),
            Attr("postalCode"), Attr("country"), _typed(), _primary())),
        Attr("groups", "complex", multi=True, mutability="readOnly",
             description="Groups the user belongs to (change them through /Groups).", sub=(
                 Attr("value", mutability="readOnly", case_exact=True),
                 Attr("$ref", "reference", mutability="readOnly", reference_types=("Group",)),
                 Attr("display", mutability="readOnly"),
                 Attr("type", mutability="readOnly", canonical=("direct",)))),
    ),
)

ENTERPRISE = Schema(
    id=ENTERPRISE_SCHEMA, name="EnterpriseUser", description="Enterprise User extension.",
    resource="Users",
    attributes=(
        Attr("employeeNumber", max_length=255),
        Attr("costCenter"),
        Attr("organization"),
        Attr("division"),
        Attr("department", max_length=255),
        Attr("manager", "complex", description="The user's manager (a Lobby user id).", sub=(
            Attr("value", case_exact=True, max_length=255, description="The manager's id."),
            Attr("$ref", "reference", reference_types=("User",),
                 description="Lobby derives it from value; a $ref sent is not stored."),
            # Server-computed; returned only when asked for (attributes=...manager.displayName),
            # so a response echoes exactly what the client wrote unless it asks for more.
            Attr("displayName", mutability="readOnly", returned="request"))),
    ),
)

GROUP = Schema(
    id=GROUP_SCHEMA, name="Group", description="A group of users.", resource="Groups",
    attributes=(
        Attr("displayName", required=True, uniqueness="server", max_length=255, keyed=True,
             description="Unique name, compared case-insensitively."),
        Attr("members", "complex", multi=True, description="Users in the group.", sub=(
            Attr("value", mutability="immutable", case_exact=True, description="The member's id."),
            Attr("$ref", "reference", mutability="immutable", reference_types=("User",)),
            # The member's name, computed by Lobby: returned when asked for
            # (attributes=members.display), so responses echo what the client wrote.
            Attr("display", mutability="readOnly", returned="request"),
            Attr("type", mutability="immutable", canonical=("User",)))),
    ),
)

SCHEMAS = {s.id.lower(): s for s in (USER, ENTERPRISE, GROUP)}


def resource_types(base_url: str) -> list[dict]:
    return [
        {
            "schemas": [RESOURCE_TYPE_SCHEMA], "id": "User", "name": "User", "endpoint": "/Users",
            "description": "People who sign in to Lobby", "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": False}],
            "meta": {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/User"},
        },
        {
            "schemas": [RESOURCE_TYPE_SCHEMA], "id": "Group", "name": "Group", "endpoint": "/Groups",
            "description": "Groups of users", "schema": GROUP_SCHEMA, "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/Group"},
        },
    ]


def service_provider_config(base_url: str, docs_url: str) -> dict:
    return {
        "schemas": [SPC_SCHEMA],
        "documentationUri": docs_url,
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_COUNT},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "Send `Authorization: Bearer <token>`; make tokens on Lobby's Admin > Provisioning page.",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
            "documentationUri": docs_url,
            "primary": True,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base_url}/ServiceProviderConfig"},
    }
