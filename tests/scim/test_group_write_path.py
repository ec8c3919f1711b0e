"""Member-only PATCHes and plain group creates run on the driver (service._patch_members,
service._create_group_directly); everything else goes through the ORM. For the same request
both paths must answer, store and audit the same."""
from __future__ import annotations

import json

import pytest

from blueprints.scim import service
from models import AuditEvent, Group, Membership, db, direct

from .conftest import GROUP_SCHEMA, ScimClient, issue_token

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GONE = "5b0c3a4e-0000-4000-8000-00000000dead"  # names no user


def _users(scim, count, prefix):
    return [scim.create_user(f"{prefix}{i}@example.com")["id"] for i in range(count)]


def _stable(resource: dict) -> dict:
    """A group's SCIM answer without what differs between two groups (id, name, times, links)."""
    members = sorted(m["value"] for m in resource.get("members", []))
    return {"members": members, "version": resource["meta"]["version"], "schemas": resource["schemas"]}


def _audit(action: str, group_id: str) -> dict:
    events = [e for e in AuditEvent.query.filter_by(action=action).all() if e.details.get("id") == group_id]
    assert len(events) == 1
    details = dict(events[0].details)
    details.pop("id")
    return {"details": details, "actor": events[0].actor, "outcome": events[0].outcome}


@pytest.fixture
def full_path_only(monkeypatch):
    """Make every PATCH take the ORM path, as anything but a member change does."""
    monkeypatch.setattr(service, "_member_plan", lambda operations: None)


def _run(app, monkeypatch, use_direct: bool, steps):
    """Create users and a group, apply ``steps`` (lists of operations) and return what came out."""
    scim = ScimClient(app.test_client(), issue_token(app, f"token-{use_direct}"))
    users = _users(scim, 5, f"u{use_direct}-")
    group = scim.create_group(f"Team {use_direct}", members=users[:1])
    if not use_direct:
        monkeypatch.setattr(service, "_member_plan", lambda operations: None)
    answers = []
    for operations in steps(users):
        reply = scim.patch(f"Groups/{group['id']}", operations)
        answers.append((reply.status_code, _stable(reply.get_json())))
    monkeypatch.undo()
    with app.app_context():
        audit = [e.details for e in AuditEvent.query.filter_by(action="scim.group.patch").order_by(AuditEvent.id)
                 if e.details.get("id") == group["id"]]
        stored = sorted(m.user_id for m in Membership.query.filter_by(group_id=group["id"]))
        version = db.session.get(Group, group["id"]).version
    # Refer to users by position, so the two runs compare.
    position = {uid: f"user{i}" for i, uid in enumerate(users)}
    position[GONE] = "gone"

    def named(value):
        if isinstance(value, (list, tuple)):
            out = [named(v) for v in value]
            return sorted(out) if all(isinstance(v, str) for v in out) else out
        if isinstance(value, dict):
            return {k: named(v) for k, v in value.items() if k != "id"}
        return position.get(value, value)

    return named(answers), named(audit), named(stored), version


def test_member_patches_answer_store_and_audit_alike_on_both_paths(app, monkeypatch):
    def steps(users):
        return [
            # Okta's add, with one user already a member, one twice and one unknown id
            [{"op": "add", "path": "members", "value": [{"value": users[0]}, {"value": users[1]},
                                                        {"value": users[1]}, {"value": GONE}]}],
            # Entra's add ("Add", a list) and remove with a value list, in one PATCH
            [{"op": "Add", "path": "members", "value": [{"value": users[2]}, {"value": users[3]}]},
             {"op": "Remove", "path": "members", "value": [{"value": users[0]}, {"value": GONE}]}],
            # changes nothing: neither the version nor the members move
            [{"op": "add", "path": "members", "value": [{"value": users[2]}]},
             {"op": "remove", "path": "members", "value": [{"value": users[4]}]}],
            # removed then added back in one request: the version moves once
            [{"op": "remove", "path": "members", "value": [{"value": users[3]}]},
             {"op": "add", "path": "members", "value": [{"value": users[3]}]}],
            # Okta's removal by filter, of a member and of someone who is not one
            [{"op": "remove", "path": f'members[value eq "{users[2]}"]'},
             {"op": "remove", "path": f'members[value eq "{users[4]}"]'}],
        ]

    on_driver = _run(app, monkeypatch, True, steps)
    through_orm = _run(app, monkeypatch, False, steps)
    assert on_driver == through_orm
    answers, audit, stored, version = on_driver
    assert [status for status, _ in answers] == [200, 200, 200, 200, 200]
    assert stored == ["user1", "user3"] and version == 5
    assert [a["version"] for _s, a in answers] == ['W/"2"', 'W/"3"', 'W/"3"', 'W/"4"', 'W/"5"']
    assert audit[0] == {"diff": {}, "members_added": ["user1"], "members_unknown": ["gone"]}
    assert audit[1] == {"diff": {}, "members_added": ["user2", "user3"], "members_removed": ["user0"]}
    assert audit[2] == {"diff": {}}
    assert audit[4] == {"diff": {}, "members_removed": ["user2"]}


@pytest.mark.parametrize("path, direct_path", [
    ('members[value eq "ID"]', True),
    ('Members[VALUE EQ "ID"]', True),
    ('members[value ne "ID"]', False),
    ('members[display eq "Ada"]', False),
    ('members[value eq "ID"].display', False),
    ('members[value eq "ID" or value eq "X"]', False),
    ("members", False),  # remove all: the general path
])
def test_which_member_removals_take_the_driver_path(path, direct_path):
    operations = [{"op": "remove", "path": path.replace("ID", "u-1")}]
    plan = service._member_plan(operations)
    assert (plan == [("remove", ["u-1"])]) is direct_path
    if not direct_path:
        assert plan is None


def test_member_patch_on_the_driver_keeps_if_match_and_404(app):
    scim = ScimClient(app.test_client(), issue_token(app))
    user = scim.create_user("ada@example.com")["id"]
    group = scim.create_group("Engineers")
    add = [{"op": "add", "path": "members", "value": [{"value": user}]}]
    stale = scim.patch(f"Groups/{group['id']}", add, headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    missing = scim.patch("Groups/no-such-group", add)
    assert missing.status_code == 404 and missing.get_json()["status"] == "404"
    fresh = scim.patch(f"Groups/{group['id']}", add, headers={"If-Match": group["meta"]["version"]})
    assert fresh.status_code == 200 and fresh.headers["ETag"] == 'W/"2"'
    assert [m["value"] for m in fresh.get_json()["members"]] == [user]
    with app.app_context():  # the refused PATCHes wrote nothing, not even an audit event
        assert [e.details["members_added"] for e in AuditEvent.query.filter_by(action="scim.group.patch")] == [[user]]


def test_a_local_groups_members_are_not_the_idps_to_change(app):
    scim = ScimClient(app.test_client(), issue_token(app))
    user = scim.create_user("ada@example.com")["id"]
    with app.app_context():
        local = Group(display_name="Office", source="local")
        db.session.add(local)
        db.session.commit()
        local_id = local.id
    reply = scim.patch(f"Groups/{local_id}", [{"op": "add", "path": "members", "value": [{"value": user}]}])
    assert reply.status_code == 404
    with app.app_context():
        assert Membership.query.filter_by(group_id=local_id).count() == 0


def test_a_group_created_on_the_driver_is_stored_as_the_orm_would_store_it(app, monkeypatch):
    scim = ScimClient(app.test_client(), issue_token(app))
    users = _users(scim, 2, "m")
    body = {"schemas": [GROUP_SCHEMA], "displayName": "Ünïcode Team", "externalId": "ext-1",
            "members": [{"value": users[0]}, {"value": GONE}, {"value": users[1]}]}
    direct_reply = scim.post("Groups", body)
    # The same request through the ORM's unit of work: a session already holding a connection
    # sends create_group there.
    monkeypatch.setattr(direct, "session_free", lambda: False)
    orm_reply = scim.post("Groups", dict(body, displayName="Ünïcode Team 2", externalId="ext-2"))
    monkeypatch.undo()
    assert direct_reply.status_code == orm_reply.status_code == 201
    first, second = direct_reply.get_json(), orm_reply.get_json()
    assert _stable(first) == _stable(second) and first["meta"]["version"] == 'W/"1"'
    assert direct_reply.headers["Location"] == first["meta"]["location"]
    with app.app_context():
        rows = {}
        for resource in (first, second):
            group = db.session.get(Group, resource["id"])
            rows[resource["id"]] = {c.key: getattr(group, c.key) for c in Group.__table__.columns
                                    if c.key not in ("id", "created_at", "updated_at", "display_name",
                                                     "display_name_key", "external_id")}
            assert group.display_name_key == service.fold(resource["displayName"])
            assert abs(group.updated_at - group.created_at).total_seconds() < 1
        assert rows[first["id"]] == rows[second["id"]] == {"description": None, "source": "scim",
                                                           "adopted_by_idp": False, "version": 1}
        audits = [_audit("scim.group.create", r["id"]) for r in (first, second)]
        assert audits[0]["details"]["members_added"] == audits[1]["details"]["members_added"] == users
        assert audits[0]["details"]["members_unknown"] == [GONE]
        assert audits[0]["details"]["diff"]["displayName"] == {"old": None, "new": "Ünïcode Team"}
        assert audits[0]["actor"] == audits[1]["actor"]


def test_a_name_clash_on_the_driver_is_a_409_naming_the_group_and_writes_nothing(app):
    scim = ScimClient(app.test_client(), issue_token(app))
    taken = scim.create_group("Sales")
    reply = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "SALES"})
    assert reply.status_code == 409 and reply.get_json()["scimType"] == "uniqueness"
    assert taken["id"] in reply.get_json()["detail"]
    with app.app_context():
        assert Group.query.count() == 1
        assert AuditEvent.query.filter_by(action="scim.group.create").count() == 1


@pytest.mark.parametrize("policy, status", [("adopt", 201), ("reject", 409)])
def test_a_local_groups_name_still_follows_the_admins_policy(app, policy, status):
    from models import settings
    with app.app_context():
        db.session.add(Group(display_name="Office", source="local"))
        settings.set("scim", "local_group_conflict", policy)
        db.session.commit()
    scim = ScimClient(app.test_client(), issue_token(app))
    reply = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "office"})
    assert reply.status_code == status, reply.get_data(as_text=True)
    with app.app_context():
        assert Group.query.count() == 1
        assert bool(Group.query.one().adopted_by_idp) is (policy == "adopt")
        if policy == "reject":
            assert "an admin made in Lobby" in reply.get_json()["detail"]


def test_id_lists_bind_as_one_parameter_for_any_length(app):
    """direct.in_list: one compiled statement serves 1 or 1,500 ids, on the driver and in the session."""
    scim = ScimClient(app.test_client(), issue_token(app))
    users = _users(scim, 3, "x")
    with app.test_request_context():
        wanted = users[1:] + [f"missing-{i}" for i in range(1500)]
        assert service._known_users(wanted) == (users[1:], wanted[2:])
        assert service._known_users(users[:1]) == (users[:1], [])
        statement = service._KNOWN_USERS.statement()
        assert len(statement._compiled) == 1  # the same compiled form for both lengths
        db.session.execute(db.select(Group.id))  # now the session holds a connection: it runs there
        assert service._known_users(json.loads(json.dumps(users))) == (users, [])
        db.session.rollback()


def test_a_member_patch_on_the_driver_answers_with_the_attributes_asked_for(app):
    scim = ScimClient(app.test_client(), issue_token(app))
    ada = scim.create_user("ada@example.com", displayName="Ada Lovelace")["id"]
    group = scim.create_group("Engineers")
    add = [{"op": "add", "path": "members", "value": [{"value": ada}]}]
    shown = scim.patch(f"Groups/{group['id']}?attributes=members.display", add)
    assert shown.status_code == 200
    assert shown.get_json()["members"] == [{"display": "Ada Lovelace"}]
    assert "displayName" not in shown.get_json() and shown.get_json()["id"] == group["id"]
    slim = scim.patch(f"Groups/{group['id']}?excludedAttributes=members",
                      [{"op": "remove", "path": "members", "value": [{"value": ada}]}])
    assert slim.status_code == 200 and "members" not in slim.get_json()
    assert slim.get_json()["displayName"] == "Engineers" and slim.headers["ETag"] == 'W/"3"'
