"""POST /Users writes its rows with models.insert_new, not the ORM's flush: the rows must be
exactly what the ORM would have written for the same document."""
from __future__ import annotations

import pytest

from models import AuditEvent, User, UserEmail, db, insert_new, new_id
from blueprints.scim.service import USER_DOC, _write_user

from .conftest import ScimClient, issue_token

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
DOCUMENT = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
    "userName": "Grace.Hopper@Example.com", "externalId": "00u1",
    "name": {"givenName": "Grace", "familyName": "Hopper", "middleName": "Brewster"},
    "title": "Rear Admiral", "active": True, "locale": "en-US",
    "emails": [{"value": "grace@example.com", "type": "work", "primary": True},
               {"value": "GH@home.example", "type": "home"}],
    "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
    ENTERPRISE: {"department": "Navy", "employeeNumber": "1906", "costCenter": "COBOL"},
}
SKIP = {"id", "created_at", "updated_at"}


def _row(table, **where):
    with db.engine.connect() as conn:
        return dict(conn.execute(table.select().filter_by(**where)).mappings().one())


def _emails(user_id):
    table = UserEmail.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(table.select().where(table.c.user_id == user_id).order_by(table.c.position)).mappings()
        return [{k: v for k, v in row.items() if k not in ("id", "user_id")} for row in rows]


def test_a_created_user_is_stored_as_the_orm_would_store_it(app):
    scim = ScimClient(app.test_client(), issue_token(app))
    reply = scim.post("Users", DOCUMENT)
    assert reply.status_code == 201
    created = reply.get_json()
    with app.app_context():
        # The same document through the ORM's unit of work, under another userName.
        orm_user = User(id=new_id(), source="scim", extra={})
        _write_user(orm_user, USER_DOC.normalise(dict(DOCUMENT, userName="orm.twin@example.com")),
                    keep_active_if_absent=False)
        db.session.add(orm_user)
        db.session.commit()
        twin_id = orm_user.id
        db.session.remove()
        stored, twin = _row(User.__table__, id=created["id"]), _row(User.__table__, id=twin_id)
        differing = {k for k in stored if k not in SKIP and stored[k] != twin[k]}
        assert differing == {"user_name", "user_name_key", "search_text"}
        assert stored["user_name_key"] == "grace.hopper@example.com"
        assert stored["search_text"] == twin["search_text"].replace("orm.twin@example.com", "grace.hopper@example.com")
        assert stored["version"] == 1 and stored["session_epoch"] == 0 and stored["is_admin"] is False
        assert stored["extra"]["phoneNumbers"] == [{"value": "+1 555 0100", "type": "work"}]
        assert _emails(created["id"]) == _emails(twin_id)
        assert [e["value_key"] for e in _emails(created["id"])] == ["grace@example.com", "gh@home.example"]
        event = _row(AuditEvent.__table__, action="scim.user.create")
        assert event["actor"] == "scim:Okta" and event["target"] == "Grace.Hopper@Example.com"
        assert event["details"]["id"] == created["id"]
    # What the 201 said is what a read says now.
    again = scim.get(f"Users/{created['id']}").get_json()
    assert again == created


def test_a_clashing_create_leaves_nothing_behind(app):
    scim = ScimClient(app.test_client(), issue_token(app))
    assert scim.post("Users", DOCUMENT).status_code == 201
    clash = scim.post("Users", dict(DOCUMENT, userName="GRACE.hopper@example.com"))
    assert clash.status_code == 409 and clash.get_json()["scimType"] == "uniqueness"
    with app.app_context():
        assert User.query.count() == 1 and UserEmail.query.count() == 2
        assert AuditEvent.query.filter_by(action="scim.user.create").count() == 1


def test_insert_new_refuses_an_object_the_session_holds(app):
    with app.app_context():
        user = User(id=new_id(), user_name="held@example.com")
        db.session.add(user)
        with pytest.raises(ValueError):
            insert_new(user)
        db.session.rollback()
        db.session.remove()


def test_insert_new_writes_defaults_back_onto_the_object(app):
    with app.app_context():
        user = User(id=new_id(), user_name="plain@example.com")
        insert_new(user)
        db.session.commit()
        assert user.version == 1 and user.active is True and user.source == "local" and user.created_at is not None
        stored = _row(User.__table__, id=user.id)
        assert (stored["version"], stored["active"], stored["source"], stored["created_at"]) == (
            1, True, "local", user.created_at)
        db.session.remove()
