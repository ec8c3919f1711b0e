"""Groups: list with sources and counts, members, local edits, IdP groups read-only, name collisions."""
import json

import pytest

from models import AuditEvent, Group, Membership, User, db

from .conftest import add_event, add_scim_request, listed_user_ids, post


@pytest.fixture
def office(app, make_user):
    """A local group with two members and an IdP group with one."""
    make_user("anna@example.com", groups=("Office", "Engineering"))
    make_user("ben@example.com", groups=("Office",))
    with app.app_context():
        engineering = Group.query.filter_by(display_name="Engineering").one()
        engineering.source = "scim"
        db.session.commit()
        return {g.display_name: g.id for g in Group.query}


def test_list_shows_source_and_member_counts(admin_client, office):
    html = admin_client.get("/admin/groups").get_data(as_text=True)
    office_row = html.split(">Office</a>")[1].split("</tr>")[0]
    assert "Local" in office_row and '<td data-label="Members">2</td>' in office_row
    engineering_row = html.split(">Engineering</a>")[1].split("</tr>")[0]
    assert "SCIM" in engineering_row and '<td data-label="Members">1</td>' in engineering_row
    assert "Managed by your identity provider" in engineering_row


def test_list_filters_by_name_and_source(admin_client, office):
    html = admin_client.get("/admin/groups", query_string={"source": "scim"}).get_data(as_text=True)
    assert ">Engineering</a>" in html and ">Office</a>" not in html
    html = admin_client.get("/admin/groups", query_string={"q": "OFF"}).get_data(as_text=True)
    assert ">Office</a>" in html and ">Engineering</a>" not in html


def test_members_are_paginated(app, admin_client, make_user):
    make_user("first@example.com", groups=("Big",))
    with app.app_context():
        group = Group.query.one()
        users = [User(user_name=f"member{i:03d}@example.com") for i in range(59)]
        db.session.add_all(users)
        db.session.flush()
        db.session.add_all(Membership(group_id=group.id, user_id=u.id) for u in users)
        db.session.commit()
        group_id = group.id
    first = admin_client.get(f"/admin/groups/{group_id}").get_data(as_text=True)
    ids = listed_user_ids(first)
    assert len(ids) == 50 and "(60)" in first
    second = admin_client.get(f"/admin/groups/{group_id}", query_string={"after": ids[-1]}).get_data(as_text=True)
    rest = listed_user_ids(second)
    assert len(rest) == 10 and not set(rest) & set(ids)


def test_create_rename_and_delete_a_local_group(app, admin_client):
    response = post(admin_client, "/admin/groups/new", {"display_name": "Parking", "description": "Car park"},
                    page="/admin/groups")
    with app.app_context():
        group = Group.query.one()
        assert (group.display_name, group.source, group.description) == ("Parking", "local", "Car park")
        group_id = group.id
    assert response.headers["Location"] == f"/admin/groups/{group_id}"

    post(admin_client, f"/admin/groups/{group_id}/rename", {"display_name": "Parking spaces"},
         page=f"/admin/groups/{group_id}")
    with app.app_context():
        assert db.session.get(Group, group_id).display_name == "Parking spaces"

    post(admin_client, f"/admin/groups/{group_id}/delete")
    with app.app_context():
        assert Group.query.count() == 0
        actions = [e.action for e in AuditEvent.query.order_by(AuditEvent.id) if e.action.startswith("admin.group")]
        assert actions == ["admin.group.create", "admin.group.rename", "admin.group.delete"]
        renamed = AuditEvent.query.filter_by(action="admin.group.rename").one()
        assert renamed.details["changes"]["display_name"] == {"old": "Parking", "new": "Parking spaces"}


def test_group_names_must_fit_once_case_folded(app, admin_client):
    response = post(admin_client, "/admin/groups/new", {"display_name": "ß" * 200}, page="/admin/groups")
    assert response.status_code == 400
    assert "400 characters long once case is folded" in response.get_data(as_text=True)
    with app.app_context():
        assert Group.query.count() == 0


def test_group_names_stay_unique_ignoring_case(app, admin_client, office):
    response = post(admin_client, "/admin/groups/new", {"display_name": "engineering"}, page="/admin/groups")
    assert response.status_code == 409
    assert "owned by your identity provider" in response.get_data(as_text=True)
    with app.app_context():
        assert Group.query.count() == 2
        assert AuditEvent.query.filter_by(action="admin.group.create", outcome="failure").count() == 1


def test_add_and_remove_members(app, admin_client, office, make_user):
    carl = make_user("carl@example.com", email="carl@example.com")
    group_id = office["Office"]
    post(admin_client, f"/admin/groups/{group_id}/members", {"login": "CARL@example.com"})
    with app.app_context():
        assert db.session.get(Membership, (group_id, carl.id)).source == "local"
    again = post(admin_client, f"/admin/groups/{group_id}/members", {"login": "carl@example.com"}, follow=True)
    assert "already in Office" in again.get_data(as_text=True)
    missing = post(admin_client, f"/admin/groups/{group_id}/members", {"login": "nobody@example.com"}, follow=True)
    assert "No user has the user name or email" in missing.get_data(as_text=True)
    post(admin_client, f"/admin/groups/{group_id}/members/{carl.id}/remove")
    with app.app_context():
        assert db.session.get(Membership, (group_id, carl.id)) is None
        done = [(e.action, e.details.get("user")) for e in AuditEvent.query.filter_by(outcome="success")
                if e.action.startswith("admin.group")]
        assert done == [("admin.group.add_member", "carl@example.com"),
                        ("admin.group.remove_member", "carl@example.com")]


@pytest.mark.parametrize("source, adopted", [("scim", False), ("saml", False), ("local", True)])
def test_idp_groups_are_read_only(app, admin_client, make_user, source, adopted):
    anna = make_user("anna@example.com", groups=("Pushed",))
    with app.app_context():
        group = Group.query.one()
        group.source, group.adopted_by_idp = source, adopted
        db.session.commit()
        group_id = group.id
    page = admin_client.get(f"/admin/groups/{group_id}").get_data(as_text=True)
    assert "Your identity provider owns this group" in page
    assert "/rename" not in page and "/members/" not in page and "/delete" not in page
    for path, data in ((f"/admin/groups/{group_id}/rename", {"display_name": "Renamed"}),
                       (f"/admin/groups/{group_id}/members", {"login": "admin@example.com"}),
                       (f"/admin/groups/{group_id}/members/{anna.id}/remove", {}),
                       (f"/admin/groups/{group_id}/delete", {})):
        post(admin_client, path, data)
    with app.app_context():
        group = db.session.get(Group, group_id)
        assert group.display_name == "Pushed" and group.memberships.count() == 1
        assert AuditEvent.query.filter_by(outcome="failure").count() == 4
        assert AuditEvent.query.filter_by(outcome="success").filter(AuditEvent.action.like("admin.group%")).count() == 0


def test_name_collision_from_the_audit_log_is_flagged(app, admin_client, office):
    add_event(app, "scim.group.conflict", actor="scim:Okta", target="OFFICE", outcome="failure",
              reason="displayName taken by a local group")
    listing = admin_client.get("/admin/groups").get_data(as_text=True)
    assert "Name collides with an IdP group" in listing.split(">Office</a>")[1].split("</tr>")[0]
    page = admin_client.get(f"/admin/groups/{office['Office']}").get_data(as_text=True)
    assert "Your identity provider has a group with this name" in page and "scim:Okta" in page
    dashboard = admin_client.get("/admin/").get_data(as_text=True)
    assert "1 local group shares a name with a group your IdP tried to push" in dashboard


def test_name_collision_from_a_refused_scim_push_is_flagged(app, admin_client, office):
    add_scim_request(app, path="/api/scim/v2/Groups", status=409, error="displayName 'Office' is taken",
                     request_body=json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                              "displayName": "Office", "members": []}))
    add_scim_request(app, path="/api/scim/v2/Groups", status=409, request_body="not json")
    page = admin_client.get(f"/admin/groups/{office['Office']}").get_data(as_text=True)
    assert "Your identity provider has a group with this name" in page
    other = admin_client.get(f"/admin/groups/{office['Engineering']}").get_data(as_text=True)
    assert "Your identity provider has a group with this name" not in other


def test_adopt_hands_the_group_to_the_idp(app, admin_client, office):
    add_event(app, "scim.group.conflict", actor="scim:Okta", target="Office", outcome="failure")
    group_id = office["Office"]
    post(admin_client, f"/admin/groups/{group_id}/adopt")
    with app.app_context():
        assert db.session.get(Group, group_id).adopted_by_idp
        assert AuditEvent.query.filter_by(action="admin.group.adopt", target="Office").one().details == {"members": 2}
    page = admin_client.get(f"/admin/groups/{group_id}").get_data(as_text=True)
    assert "Your identity provider has a group with this name" not in page
    assert "you let it adopt this local group" in page


def test_keep_apart_by_renaming_clears_the_warning(app, admin_client, office):
    add_event(app, "scim.group.conflict", actor="scim:Okta", target="Office", outcome="failure")
    group_id = office["Office"]
    post(admin_client, f"/admin/groups/{group_id}/rename", {"display_name": "Office (Lobby)"})
    page = admin_client.get(f"/admin/groups/{group_id}").get_data(as_text=True)
    assert "Your identity provider has a group with this name" not in page
