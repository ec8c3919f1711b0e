"""SCIM protocol behaviour: discovery, auth, errors, pagination, sorting, attribute selection,
ETags, switching SCIM off, sessions, local-vs-IdP groups, audit, request log, rate limit, CLI."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from sqlalchemy import event

from models import AuditEvent, Group, Membership, ScimRequestLog, ScimToken, User, db, settings, utcnow

from ..conftest import AuthActions
from .conftest import BASE, ENTERPRISE, GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA, ScimClient, issue_token

# --- discovery -------------------------------------------------------------------------------


def test_service_provider_config_tells_the_truth(scim):
    response = scim.get("ServiceProviderConfig")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/scim+json")
    config = response.get_json()
    assert config["patch"] == {"supported": True}
    assert config["bulk"]["supported"] is False
    assert config["filter"] == {"supported": True, "maxResults": 1000}
    assert config["sort"] == {"supported": True} and config["etag"] == {"supported": True}
    assert config["changePassword"] == {"supported": False}
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    # Bulk really is unsupported.
    response = scim.post("Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []})
    assert response.status_code == 501 and response.get_json()["status"] == "501"


def test_schemas_and_resource_types(scim):
    listed = scim.get("Schemas").get_json()
    ids = [s["id"] for s in listed["Resources"]]
    assert ids == [USER_SCHEMA, ENTERPRISE, GROUP_SCHEMA] and listed["totalResults"] == 3
    user_schema = scim.get(f"Schemas/{USER_SCHEMA}").get_json()
    assert user_schema["meta"]["location"] == f"https://lobby.test{BASE}/Schemas/{USER_SCHEMA}"
    user_name = next(a for a in user_schema["attributes"] if a["name"] == "userName")
    assert user_name["caseExact"] is False and user_name["uniqueness"] == "server" and user_name["required"]
    assert scim.get("Schemas/urn:nope").status_code == 404
    types = scim.get("ResourceTypes").get_json()["Resources"]
    assert [(t["name"], t["endpoint"]) for t in types] == [("User", "/Users"), ("Group", "/Groups")]
    assert scim.get("ResourceTypes/User").get_json()["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    assert scim.get("ResourceTypes/Printer").status_code == 404


def _declared(schema: dict) -> set[str]:
    names = set()
    for attr in schema["attributes"]:
        names.add(attr["name"])
        for sub in attr.get("subAttributes", []):
            if sub["returned"] != "request":
                names.add(f"{attr['name']}.{sub['name']}")
    return names


def _returned(resource: dict) -> set[str]:
    names = set()
    for key, value in resource.items():
        if key in ("schemas", "id", "externalId", "meta") or key.startswith("urn:"):
            continue
        names.add(key)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                names.update(f"{key}.{sub}" for sub in item)
    return names


def test_discovery_lists_exactly_what_a_full_user_returns(scim):
    """Everything declared comes back when written; nothing comes back that is not declared."""
    group_member = scim.create_user("manager@example.com")
    full = {
        "userName": "full@example.com", "displayName": "Full", "nickName": "F", "profileUrl": "https://x.example/f",
        "title": "T", "userType": "Employee", "preferredLanguage": "en", "locale": "en-GB", "timezone": "Europe/Paris",
        "name": {"formatted": "Ms F U", "familyName": "U", "givenName": "F", "middleName": "M",
                 "honorificPrefix": "Ms", "honorificSuffix": "III"},
        "emails": [{"value": "full@example.com", "display": "work mail", "type": "work", "primary": True}],
        "phoneNumbers": [{"value": "+1", "display": "one", "type": "work", "primary": True}],
        "addresses": [{"formatted": "f", "streetAddress": "s", "locality": "l", "region": "r", "postalCode": "p",
                       "country": "FR", "type": "work", "primary": True}],
        ENTERPRISE: {"employeeNumber": "1", "costCenter": "c", "organization": "o", "division": "d",
                     "department": "dep", "manager": {"value": group_member["id"]}},
    }
    user = scim.create_user(full.pop("userName"), **full)
    scim.create_group("G", [user["id"]])
    resource = scim.get(f"Users/{user['id']}").get_json()
    declared = _declared(scim.get(f"Schemas/{USER_SCHEMA}").get_json())
    assert _returned(resource) == declared
    extension = _declared(scim.get(f"Schemas/{ENTERPRISE}").get_json())
    returned_extension = _returned({k: v for k, v in resource[ENTERPRISE].items()})
    assert returned_extension == extension
    group = scim.get("Groups").get_json()["Resources"][0]
    assert _returned(group) == _declared(scim.get(f"Schemas/{GROUP_SCHEMA}").get_json())


# --- authentication ---------------------------------------------------------------------------

@pytest.mark.parametrize("header,hint", [
    (None, "Authorization: Bearer"),
    ("Bearer not-a-token", "not valid"),
    ("Basic dXNlcjpwYXNz", "bearer token"),
    ("Bearer ", "not valid"),
])
def test_auth_failures_are_401(client, scim_token, header, hint):
    headers = {"Authorization": header} if header is not None else {}
    response = client.get(f"{BASE}/Users", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"] and body["status"] == "401"
    assert hint in body["detail"]


def test_a_doubled_bearer_prefix_gets_a_401_that_says_so(client, scim_token):
    response = client.get(f"{BASE}/Users", headers={"Authorization": f"Bearer Bearer {scim_token}"})
    assert response.status_code == 401
    assert 'says "Bearer" twice' in response.get_json()["detail"]
    assert client.get(f"{BASE}/Users", headers={"Authorization": f"Bearer  {scim_token} "}).status_code == 200


def test_bearer_scheme_is_case_insensitive(client, scim_token):
    assert client.get(f"{BASE}/Users", headers={"Authorization": f"bearer {scim_token}"}).status_code == 200


def test_revoked_token_is_refused_and_others_still_work(app, client):
    first, second = issue_token(app, "first"), issue_token(app, "second")
    with app.app_context():
        ScimToken.query.filter_by(name="first").one().revoked_at = utcnow()
        db.session.commit()
    assert ScimClient(client, first).get("Users").status_code == 401
    assert ScimClient(client, second).get("Users").status_code == 200
    with app.app_context():
        assert ScimToken.query.filter_by(name="second").one().last_used_at is not None


def test_scim_switched_off(app, scim):
    with app.app_context():
        settings.set("scim", "enabled", False)
        db.session.commit()
    response = scim.get("Users")
    assert response.status_code == 403
    assert "switched off" in response.get_json()["detail"]


# --- errors -----------------------------------------------------------------------------------

def test_unknown_urls_and_methods_get_scim_errors(scim):
    response = scim.get("Printers")
    assert response.status_code == 404 and response.mimetype == "application/scim+json"
    assert response.get_json()["status"] == "404"
    response = scim.request("DELETE", "Users")
    assert response.status_code == 405 and response.get_json()["status"] == "405"
    assert "POST" in response.headers["Allow"]
    response = scim.request("POST", "ServiceProviderConfig", {})
    assert response.status_code == 405
    assert scim.get("Users/00000000-0000-0000-0000-000000000000").status_code == 404
    assert scim.get("Groups/00000000-0000-0000-0000-000000000000").status_code == 404


def test_bad_bodies(scim):
    response = scim.post("Users", b"{not json")
    assert response.status_code == 400 and response.get_json()["scimType"] == "invalidSyntax"
    response = scim.post("Users", [1, 2])
    assert response.status_code == 400 and response.get_json()["scimType"] == "invalidSyntax"
    response = scim.post("Users", {"schemas": [USER_SCHEMA], "name": {"givenName": "No"}})
    assert response.status_code == 400 and response.get_json()["scimType"] == "invalidValue"
    response = scim.post("Users", {"userName": "x@example.com", "emails": [
        {"value": "a@example.com", "primary": True}, {"value": "b@example.com", "primary": True}]})
    assert response.status_code == 400 and "primary" in response.get_json()["detail"]


def test_plain_json_content_type_is_accepted(scim):
    response = scim.post("Users", {"userName": "json@example.com"}, headers={"Content-Type": "application/json"})
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/scim+json; charset=utf-8"


def test_oversized_body_is_413(make_app):
    app = make_app(MAX_CONTENT_LENGTH=1024)
    scim = ScimClient(app.test_client(), issue_token(app))
    response = scim.post("Users", {"userName": "big@example.com", "title": "x" * 5000})
    assert response.status_code == 413
    assert response.get_json()["status"] == "413"


def test_internal_error_is_a_scim_500_without_traceback(scim, monkeypatch):
    from blueprints.scim import service

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "list_users", explode)
    response = scim.get("Users")
    assert response.status_code == 500
    body = response.get_json()
    assert body["status"] == "500" and "secret internals" not in json.dumps(body)


def test_user_name_is_unique_case_insensitively_and_echoed(scim):
    created = scim.create_user("Mixed.Case@Example.com")
    assert created["userName"] == "Mixed.Case@Example.com"
    response = scim.post("Users", {"schemas": [USER_SCHEMA], "userName": "mixed.case@example.COM"})
    assert response.status_code == 409
    body = response.get_json()
    assert body["scimType"] == "uniqueness" and "mixed.case@example.COM" in body["detail"]


def test_location_comes_from_base_url_not_host(scim):
    created = scim.post("Users", {"userName": "host@example.com"}, headers={"Host": "evil.example"}).get_json()
    assert created["meta"]["location"].startswith("https://lobby.test/api/scim/v2/Users/")


# --- pagination, sorting, attributes ----------------------------------------------------------

@pytest.fixture
def many(scim):
    return [scim.create_user(f"user{i:02}@example.com", displayName=f"User {25 - i:02}",
                             emails=[{"value": f"{chr(122 - i)}@example.com", "primary": True}])["id"]
            for i in range(25)]


def test_pagination(scim, many):
    seen = []
    start = 1
    while True:
        page = scim.get(f"Users?startIndex={start}&count=7").get_json()
        assert page["totalResults"] == 25 and page["startIndex"] == start
        assert page["itemsPerPage"] == len(page["Resources"])
        if not page["Resources"]:
            break
        seen += [r["id"] for r in page["Resources"]]
        start += 7
    assert sorted(seen) == sorted(many) and len(seen) == len(set(seen))  # no overlap, nothing missed
    only_total = scim.get("Users?count=0").get_json()
    assert only_total["totalResults"] == 25 and only_total["Resources"] == [] and only_total["itemsPerPage"] == 0
    assert scim.get("Users?startIndex=0&count=1").get_json()["startIndex"] == 1
    assert scim.get("Users?startIndex=-5&count=1").get_json()["startIndex"] == 1
    assert scim.get("Users?count=5000").get_json()["itemsPerPage"] == 25
    assert scim.get("Users?count=abc").status_code == 400


def test_sorting(scim, many):
    ascending = [r["displayName"] for r in scim.get("Users?sortBy=displayName").get_json()["Resources"]]
    assert ascending == sorted(ascending)
    descending = [r["userName"] for r in scim.get("Users?sortBy=userName&sortOrder=descending").get_json()["Resources"]]
    assert descending == sorted(descending, reverse=True)
    by_email = [r["emails"][0]["value"] for r in scim.get("Users?sortBy=emails").get_json()["Resources"]]
    assert by_email == sorted(by_email) and by_email[0] == "b@example.com"
    assert scim.get("Users?sortBy=phoneNumbers").status_code == 400
    assert scim.get("Users?sortBy=userName&sortOrder=sideways").status_code == 400


def test_attributes_and_excluded_attributes(scim):
    user = scim.create_user("attrs@example.com", name={"givenName": "A", "familyName": "B"}, title="T",
                            **{ENTERPRISE: {"department": "D", "employeeNumber": "7"}})
    assert user["schemas"] == [USER_SCHEMA, ENTERPRISE]
    only = scim.get(f"Users/{user['id']}?attributes=userName,name.givenName").get_json()
    # schemas names the schemas whose attributes are present (RFC 7643 §3): no enterprise here.
    assert only == {"schemas": [USER_SCHEMA], "id": user["id"], "userName": "attrs@example.com",
                    "name": {"givenName": "A"}}
    ext = scim.get(f"Users/{user['id']}?attributes={ENTERPRISE}:department").get_json()
    assert ext[ENTERPRISE] == {"department": "D"} and "userName" not in ext
    assert ext["schemas"] == [USER_SCHEMA, ENTERPRISE]
    no_ext = scim.get(f"Users/{user['id']}?excludedAttributes={ENTERPRISE}").get_json()
    assert ENTERPRISE not in no_ext and no_ext["schemas"] == [USER_SCHEMA]
    without = scim.get(f"Users/{user['id']}?excludedAttributes=name,title,{ENTERPRISE}:department,meta").get_json()
    assert "name" not in without and "title" not in without and "meta" not in without
    assert without[ENTERPRISE] == {"employeeNumber": "7"} and without["id"] == user["id"]
    listed = scim.get("Users?attributes=userName").get_json()["Resources"]
    assert listed == [{"schemas": [USER_SCHEMA], "id": user["id"], "userName": "attrs@example.com"}]
    created = scim.post("Users?attributes=userName", {"userName": "post@example.com"}).get_json()
    assert set(created) == {"schemas", "id", "userName"}
    # A sub-attribute of a multi-valued attribute is excluded from every item (RFC 7644 §3.10 notation).
    emailed = scim.create_user("multi@example.com", emails=[{"value": "m@example.com", "type": "work", "primary": True},
                                                            {"value": "m@home.example", "type": "home"}])
    trimmed = scim.get(f"Users/{emailed['id']}?excludedAttributes=emails.type").get_json()
    assert [sorted(item) for item in trimmed["emails"]] == [["primary", "value"], ["primary", "value"]]
    assert [item["value"] for item in trimmed["emails"]] == ["m@example.com", "m@home.example"]
    # id and schemas are always returned.
    assert set(scim.get(f"Users/{user['id']}?excludedAttributes=id,schemas,userName").get_json()) >= {"id", "schemas"}


def test_excluded_members_are_never_loaded(scim, app):
    ids = [scim.create_user(f"g{i}@example.com")["id"] for i in range(3)]
    group = scim.create_group("Loaded?", ids)
    statements = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement.lower())

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", remember)
    try:
        single = scim.get(f"Groups/{group['id']}?excludedAttributes=members").get_json()
        listed = scim.get("Groups?excludedAttributes=members&filter=" + quote('displayName eq "Loaded?"')).get_json()
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert "members" not in single and "members" not in listed["Resources"][0]
    assert not [s for s in statements if "from memberships" in s or "join memberships" in s]
    assert statements  # the listener did see the requests' queries


# --- ETags ----------------------------------------------------------------------------------

def test_etags(scim):
    user = scim.create_user("etag@example.com")
    path = f"Users/{user['id']}"
    first = scim.get(path)
    tag = first.headers["ETag"]
    assert tag == first.get_json()["meta"]["version"] and tag.startswith('W/"')
    assert scim.get(path, headers={"If-None-Match": tag}).status_code == 304
    assert scim.get(path, headers={"If-None-Match": 'W/"999"'}).status_code == 200
    response = scim.patch(path, [{"op": "add", "path": "title", "value": "x"}], headers={"If-Match": 'W/"999"'})
    assert response.status_code == 412 and response.get_json()["status"] == "412"
    assert "title" not in scim.get(path).get_json()
    response = scim.patch(path, [{"op": "add", "path": "title", "value": "x"}], headers={"If-Match": tag})
    assert response.status_code == 200 and response.headers["ETag"] != tag
    # A PATCH that changes nothing keeps the version.
    same = scim.patch(path, [{"op": "add", "path": "title", "value": "x"}])
    assert same.headers["ETag"] == response.headers["ETag"]
    assert scim.put(path, {"userName": "etag@example.com"}, headers={"If-Match": tag}).status_code == 412
    assert scim.delete(path, headers={"If-Match": tag}).status_code == 412
    assert scim.delete(path, headers={"If-Match": "*"}).status_code == 204


def test_group_version_changes_with_members(scim):
    member = scim.create_user("v@example.com")
    group = scim.create_group("Versioned")
    tag = group["meta"]["version"]
    response = scim.patch(f"Groups/{group['id']}", [{"op": "add", "path": "members", "value": [{"value": member["id"]}]}])
    assert response.headers["ETag"] != tag
    assert scim.get(f"Groups/{group['id']}", headers={"If-None-Match": response.headers["ETag"]}).status_code == 304


# --- PUT ---------------------------------------------------------------------------------------

def test_put_replaces_and_keeps_read_only(scim):
    user = scim.create_user("put@example.com", title="Old", nickName="N", name={"givenName": "P", "familyName": "Q"})
    response = scim.put(f"Users/{user['id']}", {"schemas": [USER_SCHEMA], "id": "ignored", "userName": "put@example.com",
                                                "name": {"givenName": "New"}, "meta": {"created": "1999-01-01"}})
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == user["id"] and body["meta"]["created"] == user["meta"]["created"]
    assert body["name"] == {"givenName": "New"} and "title" not in body and "nickName" not in body
    assert body["active"] is True  # PUT without active keeps it
    group_member = scim.create_user("gm@example.com")
    group = scim.create_group("PutMe", [group_member["id"]])
    response = scim.put(f"Groups/{group['id']}", {"schemas": [GROUP_SCHEMA], "displayName": "Put Me"})
    assert response.get_json()["displayName"] == "Put Me" and response.get_json()["members"] == []


# --- deactivation ends sessions -----------------------------------------------------------------

def test_active_false_ends_sessions_at_once(app, client, make_user, admin, scim_token):
    person = make_user("worker@example.com", source="scim")
    browser = app.test_client()
    AuthActions(browser).login_as(person)
    assert browser.get("/").status_code == 200
    scim = ScimClient(client, scim_token)
    assert scim.patch(f"Users/{person.id}", [{"op": "replace", "value": {"active": False}}]).status_code == 200
    assert scim.patch(f"Users/{person.id}", [{"op": "replace", "value": {"active": True}}]).status_code == 200
    # Reactivated, but the session from before the deactivation is gone.
    home = browser.get("/")
    assert home.status_code == 302 and "/login" in home.headers["Location"]
    with app.app_context():
        assert db.session.get(User, person.id).session_epoch == 1


# --- IdP groups and local groups ----------------------------------------------------------------

def test_local_groups_are_invisible_and_protected(app, scim, make_user):
    local = make_user("local@example.com", groups=("Sales",))
    with app.app_context():
        local_group = Group.query.filter_by(display_name="Sales").one()
        local_id = local_group.id
    assert scim.get("Groups").get_json()["totalResults"] == 0
    assert scim.get(f"Groups/{local_id}").status_code == 404
    assert scim.patch(f"Groups/{local_id}", [{"op": "remove", "path": "members"}]).status_code == 404
    assert scim.delete(f"Groups/{local_id}").status_code == 404
    assert "groups" not in scim.get(f"Users/{local.id}").get_json()
    response = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "sales"})
    assert response.status_code == 409
    body = response.get_json()
    assert body["scimType"] == "uniqueness" and "admin made in Lobby" in body["detail"] and "'sales'" in body["detail"]
    with app.app_context():
        assert Membership.query.filter_by(group_id=local_id).count() == 1  # untouched


def test_admin_may_let_the_idp_adopt_local_groups(app, scim, make_user):
    make_user("local@example.com", groups=("Sales",))
    newcomer = scim.create_user("new@example.com")
    with app.app_context():
        settings.set("scim", "local_group_conflict", "adopt")
        db.session.commit()
        local_id = Group.query.filter_by(display_name="Sales").one().id
    response = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "SALES", "externalId": "okta-1",
                                    "members": [{"value": newcomer["id"]}]})
    assert response.status_code == 201
    adopted = response.get_json()
    assert adopted["id"] == local_id and adopted["externalId"] == "okta-1"
    # The IdP now owns membership: exactly the members it sent.
    assert [m["value"] for m in adopted["members"]] == [newcomer["id"]]
    assert scim.get("Groups").get_json()["totalResults"] == 1
    with app.app_context():
        group = db.session.get(Group, local_id)
        assert group.adopted_by_idp and group.idp_managed
        assert AuditEvent.query.filter_by(action="scim.group.adopt").count() == 1


def test_idp_group_names_are_unique(scim):
    scim.create_group("Engineering")
    response = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "ENGINEERING"})
    assert response.status_code == 409 and response.get_json()["scimType"] == "uniqueness"


# --- audit and request log ----------------------------------------------------------------------

def test_every_change_is_audited_with_token_and_diff(app, scim):
    user = scim.create_user("audited@example.com", title="Before")
    scim.patch(f"Users/{user['id']}", [{"op": "replace", "path": "title", "value": "After"},
                                       {"op": "replace", "path": "active", "value": False}])
    group = scim.create_group("Audited", [user["id"]])
    scim.delete(f"Groups/{group['id']}")
    scim.delete(f"Users/{user['id']}")
    with app.app_context():
        events = {e.action: e for e in AuditEvent.query.order_by(AuditEvent.id)}
        assert set(events) >= {"scim.user.create", "scim.user.patch", "scim.user.deactivate", "scim.group.create",
                               "scim.group.delete", "scim.user.delete"}
        assert all(e.actor == "scim:Okta" for e in events.values())
        patch = events["scim.user.patch"]
        assert patch.target == "audited@example.com"
        assert patch.details["diff"]["title"] == {"old": "Before", "new": "After"}
        assert patch.details["diff"]["active"] == {"old": True, "new": False}
        assert events["scim.group.create"].details["members_added"] == [user["id"]]


def test_request_log_redacts_and_is_bounded(app, scim):
    with app.app_context():
        settings.set("scim", "flight_recorder_size", 5)
        db.session.commit()
    scim.post("Users", {"userName": "logged@example.com", "password": "hunter2"})
    scim.post("Users", {"userName": "logged@example.com"})  # 409
    for _ in range(8):
        scim.get("Users?count=1")
    scim.post("Users", {"userName": "logged2@example.com", "password": "hunter3"})
    with app.app_context():
        rows = ScimRequestLog.query.order_by(ScimRequestLog.id).all()
        assert len(rows) <= 5 + 9  # pruned in batches, never unbounded
        last = rows[-1]
        assert last.method == "POST" and last.status == 201 and last.token_name == "Okta"
        assert "hunter3" not in last.request_body and "[redacted]" in last.request_body
        assert last.duration_ms is not None and last.path == "/api/scim/v2/Users"
    scim.get("Users/missing")
    with app.app_context():
        missing = ScimRequestLog.query.order_by(ScimRequestLog.id.desc()).first()
        assert missing.status == 404 and "No user with id missing" in missing.error
    unauthenticated = app.test_client().get(f"{BASE}/Users")
    assert unauthenticated.status_code == 401
    with app.app_context():
        denied = ScimRequestLog.query.order_by(ScimRequestLog.id.desc()).first()
        assert denied.status == 401 and denied.token_name is None and "No token" in denied.error


def test_request_log_keeps_only_the_configured_number(app, scim):
    with app.app_context():
        settings.set("scim", "flight_recorder_size", 3)
        db.session.commit()
    for _ in range(25):
        scim.get("Users?count=1")
    with app.app_context():
        assert ScimRequestLog.query.count() <= 3 + 10


# --- rate limit -----------------------------------------------------------------------------------

def test_rate_limit_is_per_token_and_shared_between_processes(make_app):
    first_process = make_app(SCIM_RATE_LIMIT_PER_MINUTE=3)
    second_process = make_app(SCIM_RATE_LIMIT_PER_MINUTE=3)
    token = issue_token(first_process, "limited")
    other = issue_token(first_process, "other")
    one = ScimClient(first_process.test_client(), token)
    two = ScimClient(second_process.test_client(), token)
    assert one.get("Users").status_code == 200
    assert two.get("Users").status_code == 200
    assert one.get("Users").status_code == 200
    response = two.get("Users")
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert response.get_json()["status"] == "429"
    assert ScimClient(second_process.test_client(), other).get("Users").status_code == 200


# --- command line -------------------------------------------------------------------------------

def test_cli_tokens(app, runner, client):
    result = runner.invoke(args=["scim", "create-token", "Okta"])
    assert result.exit_code == 0, result.output
    secret = next(line for line in result.output.splitlines() if line.startswith("lobby_scim_"))
    assert f"Bearer {secret}" in result.output
    assert ScimClient(client, secret).get("Users").status_code == 200
    listed = runner.invoke(args=["scim", "list-tokens"])
    assert "Okta" in listed.output and "active" in listed.output and secret not in listed.output
    with app.app_context():
        token_id = ScimToken.query.filter_by(name="Okta").one().id
        assert ScimToken.query.filter_by(name="Okta").one().token_hash != secret
    assert runner.invoke(args=["scim", "revoke-token", str(token_id)]).exit_code == 0
    assert ScimClient(client, secret).get("Users").status_code == 401
    assert runner.invoke(args=["scim", "revoke-token", "999"]).exit_code != 0


def test_base_url_pasted_with_a_trailing_slash_still_works(scim, client):
    # Okta joins "base/" + "/Users"; some clients add a trailing slash.
    assert scim.get("/api/scim/v2//Users").status_code == 200
    assert scim.get("/api/scim/v2/Users/?count=1").get_json()["totalResults"] == 0
    created = scim.post("/api/scim/v2//Users", {"userName": "slash@example.com"})
    assert created.status_code == 201
    denied = client.get("/api/scim/v2//Users")
    assert denied.status_code == 401 and denied.get_json()["status"] == "401"
    assert scim.get("/api/scim/v2/").status_code == 404


def test_secret_query_parameters_are_not_logged(app, client, scim_token):
    client.get(f"{BASE}/Users?access_token={scim_token}&count=1")
    client.get(f"{BASE}/Users?count=1&Password=hunter2", headers={"Authorization": f"Bearer {scim_token}"})
    with app.app_context():
        paths = [row.path for row in ScimRequestLog.query.order_by(ScimRequestLog.id)]
    assert paths == ["/api/scim/v2/Users?access_token=[redacted]&count=1",
                     "/api/scim/v2/Users?count=1&Password=[redacted]"]


def test_huge_start_index_is_an_empty_page(scim):
    scim.create_user("one@example.com")
    page = scim.get("Users?startIndex=99999999999999999999&count=5").get_json()
    assert page["totalResults"] == 1 and page["Resources"] == [] and page["itemsPerPage"] == 0
    assert scim.get("Groups?startIndex=99999999999999999999").status_code == 200
    assert scim.get("Users?count=99999999999999999999").status_code == 200


def test_a_user_name_lookup_answers_the_whole_user_with_the_idps_groups(app, scim):
    """The lookup IdPs make before every push has its own fast path (service._user_name_lookup):
    it must answer exactly what the general filter path does."""
    user = scim.create_user("Ada.Lovelace@example.com", name={"givenName": "Ada", "familyName": "Lovelace"},
                            emails=[{"value": "ada@work.example", "type": "work", "primary": True},
                                    {"value": "ada@home.example", "type": "home"}],
                            **{ENTERPRISE: {"department": "Engines"}})
    zeta = scim.create_group("Zeta", members=[user["id"]])
    alpha = scim.create_group("alpha", members=[user["id"]])
    with app.app_context():  # a group of Lobby's own, which the IdP does not see
        local = Group(display_name="Local only", source="local")
        db.session.add(local)
        db.session.flush()
        db.session.add(Membership(group_id=local.id, user_id=user["id"], source="local"))
        db.session.commit()
    fast = scim.get("Users?filter=" + quote('userName eq "ada.lovelace@EXAMPLE.com"')).get_json()
    general = scim.get("Users?filter=" + quote('userName eq "ada.lovelace@example.com" and active eq true')).get_json()
    assert fast["totalResults"] == 1 and fast == general
    found = fast["Resources"][0]
    assert found["userName"] == "Ada.Lovelace@example.com"
    assert [e["value"] for e in found["emails"]] == ["ada@work.example", "ada@home.example"]
    assert found["emails"][0]["primary"] is True and found["emails"][1]["primary"] is False
    assert found[ENTERPRISE]["department"] == "Engines"
    assert [(g["value"], g["display"]) for g in found["groups"]] == [(alpha["id"], "alpha"), (zeta["id"], "Zeta")]
    assert found["groups"][0]["$ref"].endswith(f"/Groups/{alpha['id']}")
    assert found["meta"]["version"] == scim.get(f"Users/{user['id']}").headers["ETag"]
    without = scim.get("Users?excludedAttributes=groups&filter=" + quote('userName eq "ada.lovelace@example.com"'))
    assert "groups" not in without.get_json()["Resources"][0]
    assert scim.get("Users?filter=" + quote('userName eq "nobody@example.com"')).get_json()["totalResults"] == 0


def test_discovery_lists_refuse_a_filter(scim):
    """RFC 7644 §4: a filter on /Schemas or /ResourceTypes is answered with 403."""
    for path in ("Schemas", "ResourceTypes"):
        response = scim.get(f'{path}?filter=name eq "Nope"')
        assert response.status_code == 403 and "cannot be filtered" in response.get_json()["detail"]
        assert scim.get(path).status_code == 200


def test_a_delete_answers_204_with_no_body_and_no_content_type(scim):
    user = scim.create_user("gone@example.com")
    response = scim.delete(f"Users/{user['id']}")
    assert response.status_code == 204 and response.data == b"" and "Content-Type" not in response.headers


@pytest.mark.parametrize("blank", ["   ", "\f", "\t \n"])
def test_a_blank_userName_or_displayName_is_refused(scim, blank):
    response = scim.post("Users", {"schemas": [USER_SCHEMA], "userName": blank})
    assert response.status_code == 400 and "cannot be blank" in response.get_json()["detail"]
    response = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": blank})
    assert response.status_code == 400 and "cannot be blank" in response.get_json()["detail"]


def test_group_members_must_be_an_array(scim):
    for members in ({}, {"value": "x"}, "x"):
        response = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Arrays", "members": members})
        assert response.status_code == 400 and "members is multi-valued" in response.get_json()["detail"]


def test_userNames_that_differ_only_in_how_an_accent_is_encoded_are_one_user(scim):
    """A precomposed "é" and "e" + combining accent look the same: one is a uniqueness clash
    with the other, and a lookup with either finds the user, whose userName is echoed as sent."""
    import unicodedata
    decomposed = unicodedata.normalize("NFD", "José@example.com")
    composed = unicodedata.normalize("NFC", "JOSÉ@example.com")
    created = scim.create_user(decomposed)
    assert created["userName"] == decomposed
    clash = scim.post("Users", {"schemas": [USER_SCHEMA], "userName": composed})
    assert clash.status_code == 409 and clash.get_json()["scimType"] == "uniqueness"
    found = scim.get("Users", query_string={"filter": f'userName eq "{composed}"'}).get_json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == created["id"]
    group = scim.create_group(unicodedata.normalize("NFD", "Équipe"))
    twin = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": unicodedata.normalize("NFC", "équipe")})
    assert twin.status_code == 409 and group["id"] in twin.get_json()["detail"]


# --- values longer than Lobby can store ---------------------------------------------------------

def _refused_as_too_long(response, where, length, limit=255):
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["scimType"] == "invalidValue"
    assert body["detail"].startswith(f"{where} is {length} characters long") and f"at most {limit}" in body["detail"]


@pytest.mark.parametrize("field, body", [
    ("userName", {"userName": "u" * 256}),
    ("externalId", {"userName": "x1@example.com", "externalId": "e" * 256}),
    ("name.givenName", {"userName": "x2@example.com", "name": {"givenName": "g" * 5000}}),
    ("name.familyName", {"userName": "x3@example.com", "name": {"familyName": "f" * 256}}),
    ("displayName", {"userName": "x4@example.com", "displayName": "d" * 256}),
    ("title", {"userName": "x5@example.com", "title": "t" * 256}),
    ("emails.value", {"userName": "x6@example.com", "emails": [{"value": "m" * 321}]}),
    ("emails.type", {"userName": "x7@example.com", "emails": [{"value": "a@example.com", "type": "w" * 33}]}),
    (f"{ENTERPRISE}:department", {"userName": "x8@example.com", ENTERPRISE: {"department": "s" * 256}}),
    (f"{ENTERPRISE}:employeeNumber", {"userName": "x9@example.com", ENTERPRISE: {"employeeNumber": "1" * 256}}),
    (f"{ENTERPRISE}:manager.value", {"userName": "xa@example.com", ENTERPRISE: {"manager": "i" * 256}}),
])
def test_values_longer_than_their_columns_are_refused_on_every_database(scim, app, field, body):
    """PostgreSQL's varchar(255) would refuse them with an error (a 500); SQLite would keep them:
    the same clear 400 on both, and nothing written."""
    limit = {"emails.value": 320, "emails.type": 32}.get(field, 255)
    length = max(len(v) for v in _strings(body))
    _refused_as_too_long(scim.post("Users", {"schemas": [USER_SCHEMA], **body}), field, length, limit)
    with app.app_context():
        assert User.query.filter(User.source == "scim").count() == 0


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_longest_storable_values_are_kept_whole(scim):
    created = scim.post("Users", {"schemas": [USER_SCHEMA], "userName": "u" * 255, "displayName": "é" * 255,
                                  "name": {"givenName": "g" * 255, "formatted": "long " * 400},
                                  "emails": [{"value": "m" * 320, "type": "t" * 32}]})
    assert created.status_code == 201, created.get_data(as_text=True)
    fetched = scim.get(f"Users/{created.get_json()['id']}").get_json()
    assert fetched["userName"] == "u" * 255 and fetched["displayName"] == "é" * 255
    assert fetched["name"]["formatted"] == "long " * 400  # kept beside the columns, no limit
    assert fetched["emails"][0]["value"] == "m" * 320


def test_a_name_that_grows_when_case_folded_is_measured_folded(scim):
    # "ß" folds to "ss": 200 of them are 400 characters in the key userName is compared by.
    response = scim.post("Users", {"schemas": [USER_SCHEMA], "userName": "ß" * 200})
    assert response.status_code == 400
    assert "400 characters long once case is folded" in response.get_json()["detail"]


def test_too_long_values_in_patch_and_put_and_groups(scim):
    user = scim.create_user("long@example.com")
    path = f"Users/{user['id']}"
    for operation in ({"op": "replace", "path": "name.givenName", "value": "g" * 256},
                      {"op": "Replace", "value": {"name.givenName": "g" * 256}},
                      {"op": "add", "path": 'emails[type eq "work"].value', "value": "m" * 321},
                      {"op": "replace", "path": "externalId", "value": "e" * 256}):
        response = scim.request("PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": [operation]})
        assert response.status_code == 400 and response.get_json()["scimType"] == "invalidValue", operation
        assert "characters long" in response.get_json()["detail"]
    response = scim.request("PUT", path, {"schemas": [USER_SCHEMA], "userName": "long@example.com", "title": "t" * 256})
    _refused_as_too_long(response, "title", 256)
    assert scim.get(path).get_json()["userName"] == "long@example.com"  # unchanged
    _refused_as_too_long(scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "G" * 256}),
                         "displayName", 256)
    group = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Short"}).get_json()
    response = scim.request("PATCH", f"Groups/{group['id']}", {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "replace", "path": "displayName", "value": "G" * 256}]})
    _refused_as_too_long(response, "displayName", 256)
    assert scim.get(f"Groups/{group['id']}").get_json()["displayName"] == "Short"


def test_a_token_with_the_longest_name_can_write(app):
    """Its audit actor, "scim:" and 255 characters, is longer than the column: shortened, not a 500."""
    scim = ScimClient(app.test_client(), issue_token(app, name="T" * 255))
    assert scim.post("Users", {"schemas": [USER_SCHEMA], "userName": "long-token@example.com"}).status_code == 201
    with app.app_context():
        event = AuditEvent.query.filter_by(action="scim.user.create").one()
        assert event.actor.startswith("scim:TTTT") and event.actor.endswith("…") and len(event.actor) == 255


def test_declared_lengths_are_the_columns_lengths():
    """The limits SCIM checks are the columns' sizes: change one and this says where to follow."""
    from blueprints.scim.resources import EXTERNAL_ID
    from blueprints.scim.schemas import ENTERPRISE as ENTERPRISE_DECL, GROUP, USER
    from models import UserEmail
    name, emails, manager = USER.attr("name"), USER.attr("emails"), ENTERPRISE_DECL.attr("manager")
    pairs = [
        (USER.attr("userName"), User.user_name), (USER.attr("userName"), User.user_name_key),
        (EXTERNAL_ID, User.external_id), (EXTERNAL_ID, Group.external_id),
        (name.child("givenName"), User.given_name), (name.child("familyName"), User.family_name),
        (USER.attr("displayName"), User.display_name), (USER.attr("title"), User.title),
        (emails.child("value"), UserEmail.value), (emails.child("value"), UserEmail.value_key),
        (emails.child("display"), UserEmail.display), (emails.child("type"), UserEmail.type),
        (ENTERPRISE_DECL.attr("department"), User.department),
        (ENTERPRISE_DECL.attr("employeeNumber"), User.employee_number),
        (manager.child("value"), User.manager_id),
        (GROUP.attr("displayName"), Group.display_name), (GROUP.attr("displayName"), Group.display_name_key),
    ]
    for attr, column in pairs:
        assert attr.max_length == column.type.length, (attr.name, column)


def test_schemas_must_be_a_list_when_sent(scim):
    for resource, body in (("Users", {"userName": "schemas@example.com"}), ("Groups", {"displayName": "Schemas"})):
        response = scim.post(resource, {**body, "schemas": USER_SCHEMA})
        assert response.status_code == 400 and response.get_json()["scimType"] == "invalidSyntax"
        assert "schemas must be a list" in response.get_json()["detail"]
        assert scim.post(resource, {**body, "schemas": None}).status_code == 201  # as if left out
