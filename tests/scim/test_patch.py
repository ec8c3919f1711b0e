"""Every PATCH form Okta and Entra send, and the RFC 7644 §3.5.2 errors."""
from __future__ import annotations

import pytest

from models import Membership

from .conftest import ENTERPRISE, GROUP_SCHEMA, PATCH_SCHEMA


@pytest.fixture
def user(scim):
    return scim.create_user("pat@example.com", name={"givenName": "Pat", "familyName": "Doe"},
                            emails=[{"value": "pat@example.com", "type": "work", "primary": True},
                                    {"value": "pat@home.example", "type": "home"}])


def patch_ok(scim, path, operations, **kw):
    response = scim.patch(path, operations, **kw)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("op", ["replace", "Replace", "REPLACE", "add", "Add"])
def test_op_names_in_any_case(scim, user, op):
    body = patch_ok(scim, f"Users/{user['id']}", [{"op": op, "path": "title", "value": "Boss"}])
    assert body["title"] == "Boss"


@pytest.mark.parametrize("value,expected", [(False, False), ("False", False), ("false", False),
                                            ("True", True), (True, True)])
def test_boolean_strings(scim, user, value, expected):
    assert patch_ok(scim, f"Users/{user['id']}", [{"op": "replace", "path": "active", "value": value}])["active"] is expected


def test_sub_attribute_paths(scim, user):
    path = f"Users/{user['id']}"
    assert patch_ok(scim, path, [{"op": "replace", "path": "name.givenName", "value": "Patricia"}])["name"] == {
        "givenName": "Patricia", "familyName": "Doe"}
    assert patch_ok(scim, path, [{"op": "add", "path": "name.middleName", "value": "Q"}])["name"]["middleName"] == "Q"
    assert "familyName" not in patch_ok(scim, path, [{"op": "remove", "path": "name.familyName"}])["name"]
    # Replacing a complex attribute merges: unspecified sub-attributes stay.
    assert patch_ok(scim, path, [{"op": "replace", "path": "name", "value": {"familyName": "Roe"}}])["name"] == {
        "givenName": "Patricia", "middleName": "Q", "familyName": "Roe"}


def test_value_path_filters_on_emails(scim, user):
    path = f"Users/{user['id']}"
    body = patch_ok(scim, path, [{"op": "replace", "path": 'emails[type eq "home"].value', "value": "new@home.example"}])
    assert [e["value"] for e in body["emails"]] == ["pat@example.com", "new@home.example"]
    # Making another address primary takes primary away from the old one.
    body = patch_ok(scim, path, [{"op": "replace", "path": 'emails[type eq "home"].primary', "value": True}])
    assert [e["primary"] for e in body["emails"]] == [False, True]
    body = patch_ok(scim, path, [{"op": "remove", "path": 'emails[value ew "home.example"]'}])
    assert [e["value"] for e in body["emails"]] == ["pat@example.com"]
    # A replace whose filter matches nothing and does not say what to create: noTarget.
    response = scim.patch(path, [{"op": "replace", "path": 'emails[value co "nowhere"].value', "value": "x@y.z"}])
    assert response.status_code == 400 and response.get_json()["scimType"] == "noTarget"


def test_multi_valued_add_appends_and_replace_replaces(scim, user):
    path = f"Users/{user['id']}"
    body = patch_ok(scim, path, [{"op": "add", "path": "emails", "value": [{"value": "third@example.com", "type": "other"}]}])
    assert len(body["emails"]) == 3
    body = patch_ok(scim, path, [{"op": "add", "path": "phoneNumbers", "value": [{"value": "+1 555 0100", "type": "work"}]}])
    assert body["phoneNumbers"] == [{"value": "+1 555 0100", "type": "work"}]
    body = patch_ok(scim, path, [{"op": "replace", "path": "emails", "value": [{"value": "only@example.com", "primary": True}]}])
    assert body["emails"] == [{"value": "only@example.com", "primary": True}]
    body = patch_ok(scim, path, [{"op": "remove", "path": "emails"}])
    assert "emails" not in body


def test_urn_prefixed_paths(scim, user):
    path = f"Users/{user['id']}"
    body = patch_ok(scim, path, [
        {"op": "add", "path": f"{ENTERPRISE}:department", "value": "Sales"},
        {"op": "add", "path": f"{ENTERPRISE}:employeeNumber", "value": 4242},
        {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:title", "value": "Rep"},
    ])
    assert body[ENTERPRISE] == {"department": "Sales", "employeeNumber": "4242"}
    assert body["title"] == "Rep"
    assert ENTERPRISE in body["schemas"]
    body = patch_ok(scim, path, [{"op": "add", "path": ENTERPRISE, "value": {"costCenter": "CC-9"}}])
    assert body[ENTERPRISE]["costCenter"] == "CC-9"
    body = patch_ok(scim, path, [{"op": "remove", "path": ENTERPRISE}])
    assert ENTERPRISE not in body and body["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User"]


def test_path_less_add_merges_objects(scim, user):
    body = patch_ok(scim, f"Users/{user['id']}", [{"op": "add", "value": {
        "name": {"honorificPrefix": "Dr."}, ENTERPRISE: {"division": "West"}, "password": "never stored"}}])
    assert body["name"]["honorificPrefix"] == "Dr." and body["name"]["givenName"] == "Pat"
    assert body[ENTERPRISE] == {"division": "West"}


def test_patch_honours_attributes(scim, user):
    response = scim.patch(f"Users/{user['id']}?attributes=title", [{"op": "add", "path": "title", "value": "X"}])
    assert set(response.get_json()) == {"schemas", "id", "title"}
    response = scim.patch(f"Users/{user['id']}?excludedAttributes=emails,name", [{"op": "add", "path": "title", "value": "Y"}])
    assert "emails" not in response.get_json() and "name" not in response.get_json()


@pytest.mark.parametrize("body,scim_type", [
    ({"schemas": [PATCH_SCHEMA], "Operations": []}, "invalidSyntax"),
    ({"schemas": [PATCH_SCHEMA]}, "invalidSyntax"),
    ({"schemas": [PATCH_SCHEMA], "Operations": {"op": "add"}}, "invalidSyntax"),
    ({"schemas": ["urn:wrong"], "Operations": [{"op": "add", "path": "title", "value": "x"}]}, "invalidSyntax"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "merge", "path": "title", "value": "x"}]}, "invalidSyntax"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove"}]}, "noTarget"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "title"}]}, "invalidValue"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "nonsense", "value": "x"}]}, "invalidPath"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": 'emails[type eq "work"', "value": "x"}]}, "invalidPath"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "groups", "value": [{"value": "g"}]}]}, "mutability"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "id", "value": "other"}]}, "mutability"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "userName"}]}, "mutability"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "active"}]}, "mutability"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": "maybe"}]}, "invalidValue"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "title", "value": {"a": 1}}]}, "invalidValue"),
    ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": "not an object"}]}, "invalidValue"),
])
def test_patch_errors(scim, user, body, scim_type):
    before = scim.get(f"Users/{user['id']}").get_json()
    response = scim.patch(f"Users/{user['id']}", body)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()
    assert error["scimType"] == scim_type and error["status"] == "400" and error["detail"]
    assert scim.get(f"Users/{user['id']}").get_json() == before  # nothing half-applied


def test_operations_apply_all_or_nothing(scim, user):
    response = scim.patch(f"Users/{user['id']}", [{"op": "replace", "path": "title", "value": "Applied?"},
                                                  {"op": "replace", "path": "nonsense", "value": 1}])
    assert response.status_code == 400
    assert "title" not in scim.get(f"Users/{user['id']}").get_json()


def test_patch_user_name_clash_is_409(scim, user):
    scim.create_user("taken@example.com")
    response = scim.patch(f"Users/{user['id']}", [{"op": "replace", "path": "userName", "value": "TAKEN@example.com"}])
    assert response.status_code == 409 and response.get_json()["scimType"] == "uniqueness"


def test_unknown_id_is_404(scim):
    response = scim.patch("Users/does-not-exist", [{"op": "add", "path": "title", "value": "x"}])
    assert response.status_code == 404 and response.get_json()["status"] == "404"


# --- group members ---------------------------------------------------------------------------

def test_member_batches(scim, app):
    ids = [scim.create_user(f"m{i:03}@example.com")["id"] for i in range(120)]
    group = scim.create_group("Batch")
    path = f"Groups/{group['id']}"
    body = patch_ok(scim, path, [{"op": "add", "path": "members", "value": [{"value": i} for i in ids[:100]]}])
    assert len(body["members"]) == 100
    # Adding some again plus new ones: no duplicates, nothing lost.
    body = patch_ok(scim, path, [{"op": "add", "path": "members", "value": [{"value": i} for i in ids[90:]]}])
    assert sorted(m["value"] for m in body["members"]) == sorted(ids)
    # Entra's remove with a value list, and Okta's one-by-one filters, in one request.
    body = patch_ok(scim, path, [
        {"op": "remove", "path": "members", "value": [{"value": i} for i in ids[:50]]},
        {"op": "remove", "path": f'members[value eq "{ids[50]}"]'},
        {"op": "remove", "path": f'members[value eq "{ids[51]}" or value eq "{ids[52]}"]'},
    ])
    assert sorted(m["value"] for m in body["members"]) == sorted(ids[53:])
    # Replace sets exactly the given members.
    body = patch_ok(scim, path, [{"op": "replace", "path": "members", "value": [{"value": ids[0]}]}])
    assert [m["value"] for m in body["members"]] == [ids[0]]
    # Path-less add of members (some clients send the whole attribute).
    body = patch_ok(scim, path, [{"op": "add", "value": {"members": [{"value": ids[1]}]}}])
    assert sorted(m["value"] for m in body["members"]) == sorted(ids[:2])
    # Remove every member.
    body = patch_ok(scim, path, [{"op": "remove", "path": "members"}])
    assert body["members"] == []
    with app.app_context():
        assert Membership.query.filter_by(group_id=group["id"]).count() == 0


def test_member_display_on_request(scim):
    member = scim.create_user("named@example.com", displayName="Named Person")
    group = scim.create_group("Named", [member["id"]])
    plain = scim.get(f"Groups/{group['id']}").get_json()["members"][0]
    assert plain == {"value": member["id"], "$ref": f"https://lobby.test/api/scim/v2/Users/{member['id']}",
                     "type": "User"}
    shown = scim.get(f"Groups/{group['id']}?attributes=members.display").get_json()["members"][0]
    assert shown == {"display": "Named Person"}
    both = scim.get(f"Groups/{group['id']}?attributes=members,members.display").get_json()["members"][0]
    assert both["display"] == "Named Person" and both["value"] == member["id"]


def test_group_rename_by_path(scim):
    group = scim.create_group("Before")
    body = patch_ok(scim, f"Groups/{group['id']}", [{"op": "replace", "path": "displayName", "value": "After"}])
    assert body["displayName"] == "After"
    other = scim.create_group("Other")
    response = scim.patch(f"Groups/{other['id']}", [{"op": "replace", "path": "displayName", "value": "after"}])
    assert response.status_code == 409 and response.get_json()["scimType"] == "uniqueness"


# --- members Lobby does not have; member changes that change nothing -----------------------------

GONE = "00000000-0000-4000-8000-00000000dead"


def _member_ids(body):
    return sorted(m["value"] for m in body.get("members", []))


def _group_audit(app, action):
    from models import AuditEvent
    with app.app_context():
        return AuditEvent.query.filter_by(action=action).order_by(AuditEvent.id.desc()).first().details


def test_an_unknown_member_is_left_out_and_named_in_the_audit_not_refused(app, scim):
    """A user deleted in Lobby while the IdP still lists them must not fail every push to the group."""
    known = scim.create_user("known@example.com")
    group = scim.create_group("Crew", members=[known["id"], GONE])
    assert _member_ids(group) == [known["id"]]
    assert _group_audit(app, "scim.group.create")["members_unknown"] == [GONE]
    other = scim.create_user("other@example.com")
    body = patch_ok(scim, f"Groups/{group['id']}", [
        {"op": "add", "path": "members", "value": [{"value": other["id"]}, {"value": GONE}]}])
    assert _member_ids(body) == sorted([known["id"], other["id"]])
    details = _group_audit(app, "scim.group.patch")
    assert details["members_added"] == [other["id"]] and details["members_unknown"] == [GONE]
    replaced = scim.put(f"Groups/{group['id']}", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                                  "displayName": "Crew", "members": [{"value": GONE}]})
    assert replaced.status_code == 200 and _member_ids(replaced.get_json()) == []
    assert _group_audit(app, "scim.group.replace")["members_unknown"] == [GONE]


def test_adding_a_member_already_there_or_removing_a_non_member_changes_nothing(app, scim):
    """RFC 7644 §3.5.2.1: no change, so neither the version nor lastModified moves."""
    member, stranger = scim.create_user("in@example.com"), scim.create_user("out@example.com")
    group = scim.create_group("Steady", members=[member["id"]])
    path = f"Groups/{group['id']}"
    again = patch_ok(scim, path, [{"op": "add", "path": "members", "value": [{"value": member["id"]}]}])
    assert again["meta"]["version"] == group["meta"]["version"]
    assert again["meta"]["lastModified"] == group["meta"]["lastModified"]
    assert "members_added" not in _group_audit(app, "scim.group.patch")
    gone = patch_ok(scim, path, [{"op": "remove", "path": "members", "value": [{"value": stranger["id"]}]}])
    assert gone["meta"]["version"] == group["meta"]["version"] and _member_ids(gone) == [member["id"]]
    # A real change still moves it.
    changed = patch_ok(scim, path, [{"op": "add", "path": "members", "value": [{"value": stranger["id"]}]}])
    assert changed["meta"]["version"] != group["meta"]["version"]
    assert _group_audit(app, "scim.group.patch")["members_added"] == [stranger["id"]]


def test_adding_an_email_that_is_there_changes_nothing(scim, user):
    """RFC 7644 §3.5.2.1; e-mail values compare case-insensitively (caseExact false)."""
    path = f"Users/{user['id']}"
    for value in ({"value": "pat@example.com", "type": "work"}, {"value": "pat@example.com"},
                  {"value": "PAT@EXAMPLE.COM"}):
        body = patch_ok(scim, path, [{"op": "add", "path": "emails", "value": [value]}])
        assert body["emails"] == user["emails"]
        assert body["meta"]["version"] == user["meta"]["version"]
    # What the add says about a known item is applied to it; a new value is appended.
    body = patch_ok(scim, path, [{"op": "add", "path": "emails", "value": [{"value": "pat@home.example", "type": "other"},
                                                                         {"value": "new@example.com", "type": "work"}]}])
    assert [(e["value"], e["type"]) for e in body["emails"]] == [
        ("pat@example.com", "work"), ("pat@home.example", "other"), ("new@example.com", "work")]


def test_a_malformed_group_patch_is_a_400_whatever_if_match_says(scim):
    """As for users: the operations' shape is checked before the precondition (RFC 9110 §13.2.1:
    preconditions are weighed after the request's own checks)."""
    group = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Shape"}).get_json()
    for operations, message in (([True], "Operation 1 must be an object."),
                                ([{"op": "merge", "path": "displayName", "value": "x"}], "op must be add"),
                                ([{"op": "add", "path": 5, "value": "x"}], "path must be a string"),
                                ([{"op": "remove"}], "remove needs a path")):
        response = scim.request("PATCH", f"Groups/{group['id']}", {"schemas": [PATCH_SCHEMA], "Operations": operations},
                                headers={"If-Match": 'W/"999"'})
        assert response.status_code == 400, (operations, response.get_data(as_text=True))
        assert message in response.get_json()["detail"]
