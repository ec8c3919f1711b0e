"""Users: search, filters, sorting, keyset pagination, and every action with its guards and audit event."""
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, insert

from models import AuditEvent, Identity, User, UserEmail, db, utcnow

from .conftest import add_event, listed_user_ids, post


@pytest.fixture
def people(make_user, admin):
    return {
        "anna": make_user("anna.smith@example.com", given_name="Anna", family_name="Smith", department="Finance",
                          source="saml"),
        "ben": make_user("ben@example.com", given_name="Ben", family_name="Jones", department="Sales",
                         source="scim", active=False, external_id="00u-ben"),
        "carl": make_user("carl", email="carl.private@example.org", display_name="Carl Q. Percent%",
                          department="Engineering"),
    }


def list_ids(client, **args):
    response = client.get("/admin/users", query_string=args)
    assert response.status_code == 200
    return listed_user_ids(response.get_data(as_text=True))


@pytest.mark.parametrize("query, expected", [
    ("anna", {"anna"}),                      # given name
    ("SMITH", {"anna"}),                     # family name, any case
    ("anna smith", {"anna"}),                # several words must all match
    ("ben@example", {"ben"}),                # user name
    ("carl.private", {"carl"}),              # a non-primary field: the email only
    ("sales", {"ben"}),                      # department
    ("percent%", {"carl"}),                  # LIKE wildcards are literal
    ("%", {"carl"}),
    ("_", set()),
    ("nobody", set()),
])
def test_search(admin_client, people, query, expected):
    ids = set(list_ids(admin_client, q=query))
    assert ids == {people[name].id for name in expected}


@pytest.mark.parametrize("args, expected", [
    ({"status": "inactive"}, {"ben"}),
    ({"status": "active", "source": "local"}, {"carl", "admin"}),
    ({"source": "scim"}, {"ben"}),
    ({"source": "saml"}, {"anna"}),
    ({"role": "admin"}, {"admin"}),
    ({"role": "member", "status": "active"}, {"anna", "carl"}),
    ({"status": "nonsense"}, {"anna", "ben", "carl", "admin"}),  # a bad value is no filter, not an error
])
def test_filters(admin_client, people, admin, args, expected):
    everyone = dict(people, admin=admin)
    assert set(list_ids(admin_client, **args)) == {everyone[name].id for name in expected}


def test_sorting(app, admin_client, people, admin):
    with app.app_context():
        for name, days in (("anna", 1), ("ben", 3)):
            user = db.session.get(User, people[name].id)
            user.last_login_at = utcnow() - timedelta(days=days)
        db.session.commit()
    by_name = list_ids(admin_client, sort="user_name")
    assert by_name == [admin.id, people["anna"].id, people["ben"].id, people["carl"].id]
    assert list_ids(admin_client, sort="-user_name") == by_name[::-1]
    recent = list_ids(admin_client, sort="-last_login")
    # The admin signed in just now; Carl never did, so he comes last.
    assert recent == [admin.id, people["anna"].id, people["ben"].id, people["carl"].id]
    assert list_ids(admin_client, sort="department")[-1] == people["ben"].id  # "Sales" after "Finance", "Engineering"


def _bulk_users(app, count, **fields):
    """Many users at once, straight into the tables (the factory is too slow for hundreds)."""
    start = datetime(2026, 1, 1)
    with app.app_context():
        rows = [{"id": f"00000000-0000-0000-0000-{i:012d}", "user_name": f"user{i:04d}@example.com",
                 "user_name_key": f"user{i:04d}@example.com", "given_name": "Bulk", "family_name": f"Person {i}",
                 "extra": {}, "active": i % 3 != 0, "is_admin": False, "source": "scim" if i % 2 else "local",
                 # Pairs of users share a creation time, so the id must break ties.
                 "created_at": start + timedelta(minutes=i // 2), "updated_at": start, "version": 1,
                 "session_epoch": 0, **fields} for i in range(count)]
        for row in rows:  # what the model's flush hook would have written
            row["search_text"] = f"{row['user_name_key']}\nbulk\n{row['family_name'].casefold()}"
        db.session.execute(insert(User), rows)
        db.session.execute(insert(UserEmail), [{"user_id": r["id"], "value": r["user_name"],
                                                "value_key": r["user_name_key"], "primary": True, "position": 0}
                                               for r in rows])
        db.session.commit()
        return [r["id"] for r in rows]


@pytest.mark.parametrize("sort", ["user_name", "-user_name", "created", "-created", "-last_login", "department"])
def test_pages_cover_every_match_exactly_once(app, admin_client, admin, sort):
    _bulk_users(app, 130)
    seen, after, pages = [], None, 0
    while True:
        args = {"sort": sort, "q": "bulk"}
        if after:
            args["after"] = after
        html = admin_client.get("/admin/users", query_string=args).get_data(as_text=True)
        ids = listed_user_ids(html)
        assert 0 < len(ids) <= 50
        seen.extend(ids)
        pages += 1
        if 'rel="next"' not in html:
            break
        after = ids[-1]
    assert pages == 3
    assert len(seen) == len(set(seen)) == 130
    assert "130 users match" in html

    # Walking back from the last page gives the same pages in the same order.
    back, before = [], seen[-30]  # the first row of the last page
    while before:
        html = admin_client.get("/admin/users", query_string={"sort": sort, "q": "bulk", "before": before}).get_data(as_text=True)
        ids = listed_user_ids(html)
        back = ids + back
        before = ids[0] if 'rel="prev"' in html else None
    assert back == seen[:-30]


def test_filters_survive_paging(app, admin_client, admin):
    _bulk_users(app, 160)
    html = admin_client.get("/admin/users", query_string={"source": "scim", "status": "active"}).get_data(as_text=True)
    assert "53 users match" in html  # odd i, not a multiple of 3
    assert "source=scim" in html.split('rel="next"')[0].rsplit("href=", 1)[1]


def test_list_page_runs_a_fixed_number_of_queries(app, admin_client, admin):
    """No query per row: 50 rows cost what 5 rows cost."""
    def queries_for_list():
        with app.app_context():
            engine = db.engine
        statements = []

        def count(*_args):
            statements.append(1)
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert admin_client.get("/admin/users", query_string={"q": "bulk"}).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(statements)

    _bulk_users(app, 5)
    few = queries_for_list()
    with app.app_context():
        db.session.execute(insert(User), [{"id": f"10000000-0000-0000-0000-{i:012d}", "user_name": f"more{i}",
                                           "user_name_key": f"more{i}", "given_name": "Bulk", "extra": {},
                                           "search_text": f"more{i}\nbulk",
                                           "active": True, "is_admin": False, "source": "local",
                                           "created_at": utcnow(), "updated_at": utcnow(), "version": 1,
                                           "session_epoch": 0} for i in range(60)])
        db.session.commit()
    assert queries_for_list() == few


def test_user_page_shows_everything_an_admin_needs(app, admin_client, people):
    anna = people["anna"]
    with app.app_context():
        db.session.add(Identity(provider="http://www.okta.com/exk1", identifier="00u1anna", user_id=anna.id))
        db.session.commit()
    add_event(app, "auth.login", actor="anonymous", target="00u1anna", outcome="failure",
              reason="Audience was https://x/auth/saml2x; expected https://x/auth/saml2", reference="REF23456")
    add_event(app, "auth.login", actor="anonymous", target="someone.else@example.com", outcome="failure",
              reason="not about Anna")
    html = admin_client.get(f"/admin/users/{anna.id}").get_data(as_text=True)
    for text in ("Anna Smith", "anna.smith@example.com", "Finance", "00u1anna", "http://www.okta.com/exk1",
                 "Audience was https://x/auth/saml2x; expected https://x/auth/saml2", "REF23456"):
        assert text in html
    assert "not about Anna" not in html


def test_deactivate_ends_sessions_at_once(app, client, auth, make_user, admin):
    from flask.testing import FlaskClient
    anna = make_user("anna@example.com")
    anna_browser = FlaskClient(app, use_cookies=True)
    from tests.conftest import AuthActions
    AuthActions(anna_browser).login_as(anna)
    assert anna_browser.get("/").status_code == 200

    auth.login_as(admin)
    response = post(client, f"/admin/users/{anna.id}/deactivate", page=f"/admin/users/{anna.id}", follow=True)
    assert "deactivated and signed out everywhere" in response.get_data(as_text=True)
    assert anna_browser.get("/").status_code == 302  # her open session is gone
    with app.app_context():
        user = db.session.get(User, anna.id)
        assert not user.active and user.session_epoch == 1
        event_ = AuditEvent.query.filter_by(action="admin.user.deactivate").one()
        assert (event_.actor, event_.target, event_.outcome) == (admin.user_name, anna.user_name, "success")

    post(client, f"/admin/users/{anna.id}/reactivate", page=f"/admin/users/{anna.id}")
    with app.app_context():
        assert db.session.get(User, anna.id).active
        assert AuditEvent.query.filter_by(action="admin.user.reactivate", target=anna.user_name).count() == 1


def test_scim_user_the_idp_deactivated_stays_deactivated(app, admin_client, make_user):
    ben = make_user("ben@example.com", source="scim", active=False)
    add_event(app, "scim.user.deactivate", actor="scim:Okta", target="ben@example.com")
    page = admin_client.get(f"/admin/users/{ben.id}").get_data(as_text=True)
    assert "Reactivate them there" in page and "Reactivate…" not in page
    response = post(admin_client, f"/admin/users/{ben.id}/reactivate", follow=True)
    assert "Reactivate them there" in response.get_data(as_text=True)
    with app.app_context():
        assert not db.session.get(User, ben.id).active
        refused = AuditEvent.query.filter_by(action="admin.user.reactivate").one()
        assert refused.outcome == "failure" and "identity provider deactivated" in refused.reason


def test_scim_user_an_admin_deactivated_can_come_back(app, admin_client, make_user):
    ben = make_user("ben@example.com", source="scim")
    post(admin_client, f"/admin/users/{ben.id}/deactivate")
    post(admin_client, f"/admin/users/{ben.id}/reactivate")
    with app.app_context():
        assert db.session.get(User, ben.id).active


def test_grant_and_revoke_admin(app, admin_client, make_user):
    erin = make_user("erin@example.com")
    post(admin_client, f"/admin/users/{erin.id}/grant-admin")
    with app.app_context():
        assert db.session.get(User, erin.id).is_admin
    post(admin_client, f"/admin/users/{erin.id}/revoke-admin")
    with app.app_context():
        assert not db.session.get(User, erin.id).is_admin
        actions = [e.action for e in AuditEvent.query.order_by(AuditEvent.id)
                   if e.action.startswith("admin.user")]
        assert actions == ["admin.user.grant_admin", "admin.user.revoke_admin"]


@pytest.mark.parametrize("action", ["deactivate", "revoke-admin", "delete"])
def test_admin_cannot_lock_themselves_out(app, admin_client, admin, action):
    response = post(admin_client, f"/admin/users/{admin.id}/{action}", follow=True)
    assert "Ask another admin" in response.get_data(as_text=True)
    with app.app_context():
        me = db.session.get(User, admin.id)
        assert me is not None and me.active and me.is_admin
        assert AuditEvent.query.filter_by(outcome="failure").filter(AuditEvent.action.like("admin.user.%")).count() == 1


@pytest.mark.parametrize("change", ["deactivate", "revoke", "delete"])
def test_the_last_active_admin_is_kept(app, make_user, change):
    """The guard under the self-check: an actor who is not the target (the CLI, another process)."""
    from blueprints.admin import directory
    only = make_user("only-admin@example.com", admin=True)
    make_user("former-admin@example.com", admin=True, active=False)
    with app.app_context():
        user = db.session.get(User, only.id)
        with pytest.raises(directory.Refused, match="last active admin"):
            {"deactivate": lambda: directory.deactivate_user(user, actor_id=None),
             "revoke": lambda: directory.revoke_admin(user, actor_id=None),
             "delete": lambda: directory.delete_user(user, actor_id=None)}[change]()
        db.session.rollback()
        assert db.session.get(User, only.id).is_admin


def test_set_password_for_local_user(app, client, auth, admin, make_user):
    erin = make_user("erin@example.com", password=None)
    auth.login_as(admin)
    page = f"/admin/users/{erin.id}"
    short = post(client, f"{page}/password", {"password": "short", "confirm": "short"}, page=page)
    assert short.status_code == 400 and "at least 12" in short.get_data(as_text=True)
    post(client, f"{page}/password", {"password": "a brand new passphrase", "confirm": "a brand new passphrase"},
         page=page)
    with app.app_context():
        user = db.session.get(User, erin.id)
        assert user.check_password("a brand new passphrase") and user.session_epoch == 1
        recorded = AuditEvent.query.filter_by(action="admin.user.set_password").one()
        assert "brand new" not in str(recorded.details)
    auth.logout()
    assert auth.login("erin@example.com", "a brand new passphrase").status_code == 302


@pytest.mark.parametrize("source", ["scim", "saml"])
def test_no_password_for_idp_users(app, admin_client, make_user, source):
    sso = make_user("sso@example.com", source=source, password=None)
    response = post(admin_client, f"/admin/users/{sso.id}/password",
                    {"password": "a brand new passphrase", "confirm": "a brand new passphrase"}, follow=True)
    assert "Lobby keeps no password for them" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, sso.id).password_hash is None


def test_unlink_identity(app, admin_client, make_user):
    anna = make_user("anna@example.com", source="saml")
    with app.app_context():
        db.session.add(Identity(provider="http://www.okta.com/exk1", identifier="00u1anna", user_id=anna.id))
        db.session.commit()
        identity_id = Identity.query.one().id
    post(admin_client, f"/admin/users/{anna.id}/identities/{identity_id}/unlink")
    with app.app_context():
        assert Identity.query.count() == 0
        recorded = AuditEvent.query.filter_by(action="admin.user.unlink_identity").one()
        assert recorded.details == {"provider": "http://www.okta.com/exk1", "name_id": "00u1anna"}


def test_unlink_refuses_another_users_identity(app, admin_client, make_user):
    anna = make_user("anna@example.com")
    ben = make_user("ben@example.com")
    with app.app_context():
        db.session.add(Identity(provider="idp", identifier="ben-id", user_id=ben.id))
        db.session.commit()
        identity_id = Identity.query.one().id
    post(admin_client, f"/admin/users/{anna.id}/identities/{identity_id}/unlink")
    with app.app_context():
        assert Identity.query.count() == 1


def test_delete_user(app, admin_client, make_user):
    gone = make_user("gone@example.com", groups=("Office",))
    response = post(admin_client, f"/admin/users/{gone.id}/delete")
    assert response.headers["Location"] == "/admin/users"
    with app.app_context():
        assert db.session.get(User, gone.id) is None
        recorded = AuditEvent.query.filter_by(action="admin.user.delete").one()
        assert recorded.target == "gone@example.com" and recorded.details["groups"] == ["Office"]


def test_active_scim_user_is_not_deleted(app, admin_client, make_user):
    ben = make_user("ben@example.com", source="scim")
    post(admin_client, f"/admin/users/{ben.id}/delete")
    with app.app_context():
        assert db.session.get(User, ben.id) is not None
    post(admin_client, f"/admin/users/{ben.id}/deactivate")
    post(admin_client, f"/admin/users/{ben.id}/delete")
    with app.app_context():
        assert db.session.get(User, ben.id) is None


def test_edit_local_profile(app, admin_client, make_user):
    erin = make_user("erin@example.com", given_name="Erin")
    form = {"user_name": "erin.new@example.com", "given_name": "Erin", "family_name": "Example",
            "email": "erin.new@example.com", "department": "Ops"}
    post(admin_client, f"/admin/users/{erin.id}/profile", form, page=f"/admin/users/{erin.id}")
    with app.app_context():
        user = db.session.get(User, erin.id)
        assert (user.user_name, user.family_name, user.email, user.department, user.version) == (
            "erin.new@example.com", "Example", "erin.new@example.com", "Ops", 2)
        changes = AuditEvent.query.filter_by(action="admin.user.update").one().details["changes"]
        assert changes["department"] == {"old": None, "new": "Ops"}
        assert "given_name" not in changes


def test_profile_names_must_fit_once_case_folded(app, admin_client, make_user):
    erin = make_user("erin@example.com")
    response = post(admin_client, f"/admin/users/{erin.id}/profile", {"user_name": "ß" * 200}, follow=True)
    assert "400 characters long once case is folded" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, erin.id).user_name == "erin@example.com"


def test_user_name_stays_unique(app, admin_client, make_user):
    make_user("taken@example.com")
    erin = make_user("erin@example.com")
    response = post(admin_client, f"/admin/users/{erin.id}/profile", {"user_name": "TAKEN@example.com"}, follow=True)
    assert "already has the user name" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, erin.id).user_name == "erin@example.com"


def test_scim_owned_fields_are_read_only(app, admin_client, make_user):
    ben = make_user("ben@example.com", source="scim", given_name="Ben", department="Sales")
    page = admin_client.get(f"/admin/users/{ben.id}").get_data(as_text=True)
    assert "Your identity provider owns this profile" in page
    assert f'action="/admin/users/{ben.id}/profile"' not in page
    response = post(admin_client, f"/admin/users/{ben.id}/profile",
                    {"user_name": "ben@example.com", "given_name": "Hacked", "department": "Ops"}, follow=True)
    assert "Your identity provider owns this profile" in response.get_data(as_text=True)
    with app.app_context():
        user = db.session.get(User, ben.id)
        assert (user.given_name, user.department, user.version) == ("Ben", "Sales", 1)
        assert AuditEvent.query.filter_by(action="admin.user.update", outcome="failure").count() == 1


def test_unknown_user_is_404(admin_client):
    assert admin_client.get("/admin/users/no-such-id").status_code == 404


def test_why_cant_anna_sign_in(app, admin_client, make_user):
    """A Response refused before matching anyone still shows on her page: it carried her email."""
    from .conftest import add_saml_response
    anna = make_user("anna.berg@example.com", source="scim")
    reason = "Wrong Audience: the Response is meant for 'https://x/auth/saml2x', not 'https://x/auth/saml2'"
    add_saml_response(app, reference="ANNA2345", name_id="00uannaokta", user_id=None, reason=reason,
                      attributes={"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress":
                                  ["Anna.Berg@example.com"]})
    add_saml_response(app, reference="OTHER234", name_id="00uother", reason="someone else's problem",
                      attributes={"email": ["other@example.com"]})
    add_event(app, "auth.login", actor="anonymous", target="00uannaokta", outcome="failure", reason=reason,
              reference="ANNA2345", details={"method": "saml"})
    html = admin_client.get(f"/admin/users/{anna.id}").get_data(as_text=True)
    signing_in = html.split('id="signin-heading"')[1].split("</section>")[0]
    assert "Wrong Audience" in signing_in and "ANNA2345" in signing_in
    assert "someone else&#39;s problem" not in html and "OTHER234" not in html


def test_search_follows_every_kind_of_change(app, admin_client, make_user):
    """The folded search column is rewritten whenever a user or one of their emails changes."""
    erin = make_user("erin@example.com", given_name="Erin")
    with app.app_context():
        user = db.session.get(User, erin.id)
        user.family_name = "Żółw"
        user.emails.append(UserEmail(value="Erin.Private@Example.ORG", type="home"))
        db.session.commit()
    assert list_ids(admin_client, q="żółw") == [erin.id]
    assert list_ids(admin_client, q="erin.private@example") == [erin.id]
    with app.app_context():
        user = db.session.get(User, erin.id)
        user.emails = [e for e in user.emails if e.type != "home"]
        user.department = "STRASSE"
        db.session.commit()
    assert list_ids(admin_client, q="erin.private") == []
    assert list_ids(admin_client, q="straße") == [erin.id]  # casefolded both ways: ß is ss
