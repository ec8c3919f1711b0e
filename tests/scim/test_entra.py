"""Microsoft Entra ID, replayed: the request bodies of Microsoft Learn's "Develop and plan
provisioning for a SCIM endpoint" and the dialects listed in "Known issues and resolutions
with SCIM 2.0 protocol compliance" (capitalised ops, string booleans, path-less values
with dotted and URN keys, member removal by value list, manager as a bare id).
"""
from __future__ import annotations

from urllib.parse import quote

from models import Membership, User, db

from .conftest import ENTERPRISE, PATCH_SCHEMA

ENTRA_CREATE_USER = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
    "active": True,
    "emails": [{"primary": True, "type": "work",
                "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"}],
    "meta": {"resourceType": "User"},
    "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
    "roles": [],
}

ENTRA_CREATE_GROUP = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
    "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
    "displayName": "displayName",
    "meta": {"resourceType": "Group"},
}


def q(expression: str) -> str:
    return quote(expression)


def test_entra_user_sequence(scim, app):
    # Test connection: a user that does not exist.
    response = scim.get("Users?filter=" + q('userName eq "non-existent-user-fd4a"'))
    assert response.status_code == 200 and response.get_json()["totalResults"] == 0

    response = scim.post("Users", ENTRA_CREATE_USER)
    assert response.status_code == 201, response.get_data(as_text=True)
    user = response.get_json()
    user_id = user["id"]
    assert user["userName"] == ENTRA_CREATE_USER["userName"]
    assert user["name"]["formatted"] == "givenName familyName"
    assert user["displayName"] == "givenName familyName"  # fallback: given + family
    assert "roles" not in user  # undeclared: kept, not echoed

    # Lookups Entra makes: by userName (any case) and by externalId.
    by_name = scim.get("Users?filter=" + q('userName eq "test_user_AB6490EE-1e48-479e-a20b-2d77186b5dd1"'))
    assert [r["id"] for r in by_name.get_json()["Resources"]] == [user_id]
    by_external = scim.get("Users?filter=" + q('externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"'))
    assert by_external.get_json()["totalResults"] == 1

    # Update user [multi-valued properties].
    response = scim.patch(f"Users/{user_id}", {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
    ]})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["emails"] == [{"value": "updatedEmail@microsoft.com", "type": "work", "primary": True}]
    assert body["name"]["familyName"] == "updatedFamilyName"

    # Update user [single-valued properties].
    response = scim.patch(f"Users/{user_id}", [
        {"op": "Replace", "path": "userName", "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"}])
    assert response.get_json()["userName"] == "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"

    # Disable user (Entra's own body, Operations before schemas).
    response = scim.patch(f"Users/{user_id}", {"Operations": [{"op": "Replace", "path": "active", "value": False}],
                                               "schemas": [PATCH_SCHEMA]})
    assert response.status_code == 200 and response.get_json()["active"] is False

    assert scim.delete(f"Users/{user_id}").status_code == 204
    assert scim.get(f"Users/{user_id}").status_code == 404
    with app.app_context():
        assert db.session.get(User, user_id) is None


def test_entra_group_sequence(scim, app):
    members = [scim.create_user(f"member{i}@contoso.com")["id"] for i in range(3)]
    response = scim.get("Groups?excludedAttributes=members&filter=" + q('displayName eq "displayName"'))
    assert response.get_json()["totalResults"] == 0

    response = scim.post("Groups", ENTRA_CREATE_GROUP)
    assert response.status_code == 201, response.get_data(as_text=True)
    group = response.get_json()
    group_id = group["id"]
    assert group["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"
    assert group["members"] == []

    response = scim.get(f"Groups/{group_id}?excludedAttributes=members")
    assert response.status_code == 200 and "members" not in response.get_json()
    response = scim.get("Groups?excludedAttributes=members&filter=" + q('displayName eq "displayName"'))
    assert [r["id"] for r in response.get_json()["Resources"]] == [group_id]

    # Update group [non-member attributes].
    response = scim.patch(f"Groups/{group_id}", [
        {"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}])
    assert response.status_code == 200
    assert response.get_json()["displayName"] == "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"

    # Update group [add members], Entra's body with "$ref": null.
    response = scim.patch(f"Groups/{group_id}", [
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": m} for m in members]}])
    assert response.status_code == 200
    assert sorted(m["value"] for m in response.get_json()["members"]) == sorted(members)

    # Membership check Entra makes with a filter on members.
    expression = f'id eq "{group_id}" and members[value eq "{members[0]}"]'
    response = scim.get(f"Groups?excludedAttributes=members&filter={q(expression)}")
    assert response.get_json()["totalResults"] == 1
    expression = f'id eq "{group_id}" and members eq "not-a-member"'
    assert scim.get(f"Groups?filter={q(expression)}").get_json()["totalResults"] == 0

    # Update group [remove members]: a list of values.
    response = scim.patch(f"Groups/{group_id}", [
        {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": members[0]}]}])
    assert sorted(m["value"] for m in response.get_json()["members"]) == sorted(members[1:])
    # ... and the value-filter form Entra sends with its SCIM-compliance flag.
    response = scim.patch(f"Groups/{group_id}", [{"op": "remove", "path": f'members[value eq "{members[1]}"]'}])
    assert [m["value"] for m in response.get_json()["members"]] == [members[2]]

    assert scim.delete(f"Groups/{group_id}").status_code == 204
    with app.app_context():
        assert Membership.query.filter_by(group_id=group_id).count() == 0


def test_entra_known_issue_dialects(scim, app):
    manager = scim.create_user("boss@contoso.com", displayName="The Boss")
    user = scim.create_user("babs@contoso.com", name={"givenName": "Barbara", "familyName": "Jensen"},
                            emails=[{"value": "babs@contoso.com", "type": "work", "primary": True}])
    path = f"Users/{user['id']}"

    # String booleans.
    assert scim.patch(path, [{"op": "Replace", "path": "active", "value": "False"}]).get_json()["active"] is False
    assert scim.patch(path, [{"op": "Replace", "path": "active", "value": "True"}]).get_json()["active"] is True

    # Path-less value with dotted keys, a value-path key and URN-prefixed extension keys.
    response = scim.patch(path, [{"op": "replace", "value": {
        "displayName": "Babs Jensen",
        "name.givenName": "Babs",
        'emails[type eq "work"].value': "babs.jensen@contoso.com",
        f"{ENTERPRISE}:employeeNumber": "701984",
        f"{ENTERPRISE}:department": "Tour Operations",
        "active": "False",
    }}])
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["displayName"] == "Babs Jensen"
    assert body["name"] == {"givenName": "Babs", "familyName": "Jensen"}
    assert body["emails"][0]["value"] == "babs.jensen@contoso.com"
    assert body[ENTERPRISE]["employeeNumber"] == "701984"
    assert body[ENTERPRISE]["department"] == "Tour Operations"
    assert body["active"] is False

    # Path-less add with a plain attribute (the "after" form of the known-issues table).
    assert scim.patch(path, [{"op": "add", "value": {"nickName": "Babs"}}]).get_json()["nickName"] == "Babs"

    # Manager as a bare id string, then as an object, then removed.
    response = scim.patch(path, [{"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager["id"]}])
    assert response.get_json()[ENTERPRISE]["manager"]["value"] == manager["id"]
    response = scim.get(f"{path}?attributes={ENTERPRISE}:manager.displayName")
    assert response.get_json()[ENTERPRISE]["manager"] == {"displayName": "The Boss"}
    response = scim.patch(path, [{"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": {"value": user["id"]}}])
    assert response.get_json()[ENTERPRISE]["manager"]["value"] == user["id"]
    response = scim.patch(path, [{"op": "Remove", "path": f"{ENTERPRISE}:manager"}])
    assert "manager" not in response.get_json()[ENTERPRISE]

    # Entra adds a work email to a user who has none with a value-path "Add".
    other = scim.create_user("noemail@contoso.com")
    response = scim.patch(f"Users/{other['id']}", [
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "found@contoso.com"}])
    assert response.get_json()["emails"] == [{"value": "found@contoso.com", "type": "work", "primary": False}]


CUSTOM = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"


def test_writes_to_attributes_lobby_does_not_model_are_kept_not_refused(app, scim):
    """Entra's app-role assignment (Microsoft Learn, "Customize attribute mappings": op Add, path
    roles) and custom extension attributes, written with a path: kept, never returned; a typo in
    an attribute name is still refused."""
    from models import User, db
    user = scim.create_user("roles@contoso.com")
    path = f"Users/{user['id']}"
    role = {"primary": True, "type": "WindowsAzureActiveDirectoryRole", "value": "User"}
    for operations in (
        [{"op": "Add", "path": "roles", "value": [role]}],
        [{"op": "Replace", "path": 'roles[primary eq "True"].value', "value": "Admin"}],
        [{"op": "Add", "path": f"{CUSTOM}:tag", "value": "blue"}],
        [{"op": "Add", "path": "entitlements", "value": [{"value": "parking"}]}],
    ):
        response = scim.patch(path, operations)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert "roles" not in body and CUSTOM not in body and "entitlements" not in body
    with app.app_context():
        kept = db.session.get(User, user["id"]).extra["_unknown"]
        assert kept["roles"] == [role]
        assert kept['roles[primary eq "True"].value'] == "Admin"
        assert kept[f"{CUSTOM}:tag"] == "blue" and kept["entitlements"] == [{"value": "parking"}]
        db.session.remove()
    assert scim.patch(path, [{"op": "Remove", "path": "roles"}]).status_code == 200
    with app.app_context():
        assert "roles" not in db.session.get(User, user["id"]).extra["_unknown"]
        db.session.remove()
    # Removing what is not there changes nothing, the version included.
    before = scim.get(path).get_json()["meta"]["version"]
    assert scim.patch(path, [{"op": "Remove", "path": "roles"}]).get_json()["meta"]["version"] == before
    fresh = scim.create_user("noroles@contoso.com")
    again = scim.patch(f"Users/{fresh['id']}", [{"op": "Remove", "path": "roles"}])
    assert again.status_code == 200 and again.get_json()["meta"]["version"] == fresh["meta"]["version"]
    typo = scim.patch(path, [{"op": "replace", "path": "nmae.givenName", "value": "X"}])
    assert typo.status_code == 400 and typo.get_json()["scimType"] == "invalidPath"
