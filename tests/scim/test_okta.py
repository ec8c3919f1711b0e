"""Okta, replayed: the request bodies of Okta's "SCIM 2.0 protocol reference", for both set-ups
of the integration guide.

* the custom SAML app's Provisioning tab ("HTTP Header" auth: Okta sends ``Bearer <token>``),
  which updates profiles with PUT;
* the catalog app "SCIM 2.0 Test App (Header Auth)", whose API Token field is sent as the
  whole Authorization header, so the admin pastes ``Bearer <token>`` (the guide's warning).
"""
from __future__ import annotations

from urllib.parse import quote


from models import Group, Membership, User, db

from .conftest import GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA, ScimClient, issue_token

OKTA_CREATE_USER = {
    "schemas": [USER_SCHEMA],
    "userName": "test.user@okta.local",
    "name": {"givenName": "Test", "familyName": "User"},
    "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
    "displayName": "Test User",
    "locale": "en-US",
    "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [],
    "password": "1mz050nq",
    "active": True,
}


def users_filter(expression: str) -> str:
    return f"Users?filter={quote(expression)}&startIndex=1&count=100"


def okta_user_lifecycle(scim: ScimClient, app, *, updates_with_put: bool):
    # Test connector: a lookup of a user that does not exist, and a first page.
    response = scim.get(users_filter('userName eq "random-3f0b1@okta.local"'))
    assert response.status_code == 200
    assert response.mimetype == "application/scim+json"
    assert response.get_json() == {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                                   "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []}
    assert scim.get("Users?startIndex=1&count=2").status_code == 200

    # Push new user: lookup by the unique identifier (userName), then create.
    assert scim.get(users_filter('userName eq "test.user@okta.local"')).get_json()["totalResults"] == 0
    response = scim.post("Users", OKTA_CREATE_USER)
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    user_id = created["id"]
    assert created["userName"] == "test.user@okta.local"
    assert created["name"] == {"givenName": "Test", "familyName": "User"}
    assert created["emails"] == [{"value": "test.user@okta.local", "type": "work", "primary": True}]
    assert created["locale"] == "en-US"
    assert created["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert created["active"] is True
    assert "password" not in created
    assert created["meta"]["location"] == f"https://lobby.test/api/scim/v2/Users/{user_id}"
    assert response.headers["Location"] == created["meta"]["location"]
    assert response.headers["ETag"] == created["meta"]["version"]

    # Okta looks the user up again and reads it.
    found = scim.get(users_filter('userName eq "test.user@okta.local"')).get_json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == user_id
    assert scim.get(f"Users/{user_id}").get_json()["userName"] == "test.user@okta.local"

    # Push profile updates.
    if updates_with_put:
        body = dict(OKTA_CREATE_USER, id=user_id, name={"givenName": "Another", "familyName": "User"},
                    displayName="Another User", meta=created["meta"])
        response = scim.put(f"Users/{user_id}", body)
    else:
        response = scim.patch(f"Users/{user_id}", [
            {"op": "replace", "value": {"name": {"givenName": "Another"}, "displayName": "Another User"}}])
    assert response.status_code == 200, response.get_data(as_text=True)
    updated = response.get_json()
    assert updated["name"] == {"givenName": "Another", "familyName": "User"}
    assert updated["displayName"] == "Another User"
    assert updated["meta"]["version"] != created["meta"]["version"]

    # Deactivate, then reactivate (Okta's path-less replace).
    response = scim.patch(f"Users/{user_id}", {"schemas": [PATCH_SCHEMA],
                                               "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert response.status_code == 200
    assert response.get_json()["active"] is False
    with app.app_context():
        assert db.session.get(User, user_id).active is False
    response = scim.patch(f"Users/{user_id}", [{"op": "replace", "value": {"active": True}}])
    assert response.get_json()["active"] is True
    return user_id


def okta_group_push(scim: ScimClient, app, user_ids: list[str]):
    assert scim.get("Groups?startIndex=1&count=100").status_code == 200
    lookup = "Groups?filter=" + quote('displayName eq "Test SCIMv2"') + "&startIndex=1&count=100"
    assert scim.get(lookup).get_json()["totalResults"] == 0
    response = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Test SCIMv2", "members": []})
    assert response.status_code == 201, response.get_data(as_text=True)
    group = response.get_json()
    group_id = group["id"]
    assert group["members"] == []
    assert scim.get(f"Groups/{group_id}").get_json()["displayName"] == "Test SCIMv2"

    # Rename: Okta sends the id along with the new name, with no path.
    response = scim.patch(f"Groups/{group_id}", [
        {"op": "replace", "value": {"id": group_id, "displayName": "Test SCIMv2 renamed"}}])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["displayName"] == "Test SCIMv2 renamed"

    # Push members.
    response = scim.patch(f"Groups/{group_id}", [
        {"op": "add", "path": "members", "value": [{"value": uid, "display": "someone"} for uid in user_ids]}])
    assert response.status_code == 200
    members = response.get_json()["members"]
    assert sorted(m["value"] for m in members) == sorted(user_ids)
    assert all(m["$ref"].endswith(f"/Users/{m['value']}") for m in members)

    # Remove one member by value filter.
    response = scim.patch(f"Groups/{group_id}", [
        {"op": "remove", "path": f'members[value eq "{user_ids[0]}"]'}])
    assert response.status_code == 200
    assert [m["value"] for m in response.get_json()["members"]] == user_ids[1:]

    # Delete the group.
    assert scim.delete(f"Groups/{group_id}").status_code == 204
    assert scim.get(f"Groups/{group_id}").status_code == 404
    with app.app_context():
        assert Membership.query.filter_by(group_id=group_id).count() == 0


def test_custom_saml_app_provisioning_tab(app, client):
    # "HTTP Header" in the custom app: Okta itself sends "Bearer <token>".
    scim = ScimClient(client, issue_token(app, "Okta custom app"))
    user_id = okta_user_lifecycle(scim, app, updates_with_put=True)
    other = scim.create_user("other@okta.local")["id"]
    okta_group_push(scim, app, [user_id, other])


def test_scim_test_app_header_auth(app, client):
    secret = issue_token(app, "Okta SCIM 2.0 Test App")
    # The admin pasted "Bearer {token}" into API Token, as the guide says: it works.
    scim = ScimClient(client, secret)
    user_id = okta_user_lifecycle(scim, app, updates_with_put=False)
    okta_group_push(scim, app, [user_id])


def test_test_app_without_bearer_prefix_gets_the_hint(app, client):
    secret = issue_token(app)
    response = client.get("/api/scim/v2/Users?startIndex=1&count=2", headers={"Authorization": secret})
    assert response.status_code == 401
    body = response.get_json()
    assert response.mimetype == "application/scim+json"
    assert body["status"] == "401"
    assert 'prefix it with "Bearer "' in body["detail"]


def test_okta_delete_user_removes_memberships(scim, app):
    user = scim.create_user("leaver@okta.local")
    group = scim.create_group("Leavers", [user["id"]])
    assert scim.delete(f"Users/{user['id']}").status_code == 204
    assert scim.get(f"Users/{user['id']}").status_code == 404
    with app.app_context():
        assert Membership.query.filter_by(user_id=user["id"]).count() == 0
        assert db.session.get(Group, group["id"]).version > 1


def test_okta_import_pagination(scim):
    """Okta's user import walks /Users with startIndex/count until it has totalResults."""
    created = {scim.create_user(f"import{i}@okta.local")["id"] for i in range(7)}
    seen, start = [], 1
    while True:
        page = scim.get(f"Users?startIndex={start}&count=3").get_json()
        assert page["totalResults"] == 7 and page["startIndex"] == start
        seen += [r["id"] for r in page["Resources"]]
        start += page["itemsPerPage"]
        if start > page["totalResults"] or not page["Resources"]:
            break
    assert seen and len(seen) == len(set(seen)) and set(seen) == created
