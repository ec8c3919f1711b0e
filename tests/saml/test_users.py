"""Who a Response signs in as: the Identity link, then userName or email, then just-in-time creation;
attribute mapping; group sync; deactivated users."""
import re

import pytest

from models import AuditEvent, Group, Identity, Membership, User, db

from ..saml_idp import (EMAIL, GIVEN_NAME, NAME, SURNAME, UPN, configure_saml, okta_attributes, sign_in)


def reason_of(app, reply):
    reference = re.search(r"ref=([A-Z0-9]{8})", reply.headers["Location"]).group(1)
    with app.app_context():
        return AuditEvent.query.filter_by(reference=reference).one().reason


def user_named(app, key):
    with app.app_context():
        user = User.query.filter_by(user_name_key=key).one()
        db.session.expunge(user)
        return user


def test_existing_user_matched_by_user_name_case_insensitively(app, client, saml, employee):
    reply = sign_in(client, saml, attributes=okta_attributes(email="other@example.com",
                                                             login="EMPLOYEE@Example.COM"))
    assert reply.headers["Location"] == "/"
    with app.app_context():
        identity = Identity.query.one()
        assert identity.user_id == employee.id and identity.identifier == "00u1erinlobbytest"
        assert User.query.count() == 2  # admin + employee: nobody created


def test_existing_user_matched_by_email(app, client, saml, make_user, admin):
    user = make_user("jdoe", email="jane.doe@example.com")
    reply = sign_in(client, saml, attributes=okta_attributes(email="Jane.Doe@example.com", login="jane@okta"))
    assert reply.headers["Location"] == "/"
    with app.app_context():
        assert Identity.query.one().user_id == user.id


def test_identity_link_wins_over_changed_attributes(app, client, saml, employee, make_user):
    sign_in(client, saml, attributes=okta_attributes(login="employee@example.com"))
    make_user("someone@example.com")
    # The person's login changes at the IdP to another user's name: the link still decides.
    other = app.test_client()
    reply = sign_in(other, saml, attributes=okta_attributes(login="someone@example.com", email="someone@example.com"))
    assert reply.headers["Location"] == "/"
    with other.session_transaction() as session:
        assert session["_user_id"].startswith(employee.id + ":")
    with app.app_context():
        # ... and the profile is not renamed onto another user's userName.
        assert db.session.get(User, employee.id).user_name == "employee@example.com"


def test_nameid_is_never_treated_as_an_email(app, client, saml, employee):
    configure_saml(app, saml, jit_create=False)
    reply = sign_in(client, saml, name_id="employee@example.com", attributes={})
    assert "no_account" in reply.headers["Location"]
    assert "just-in-time creation is off" in reason_of(app, reply)


def test_user_already_linked_to_another_nameid_is_not_relinked(app, client, saml, employee):
    sign_in(client, saml, attributes=okta_attributes(login="employee@example.com"))
    reply = sign_in(app.test_client(), saml, name_id="00u1someoneelse",
                    attributes=okta_attributes(login="employee@example.com"))
    assert "already linked to another NameID" in reason_of(app, reply)


def test_jit_creates_user_with_mapped_attributes(app, client, saml, admin):
    attributes = okta_attributes(first="Zoë", last="Ng", email="zoe@example.com", login="zng",
                                 display="Zoë N.", department="R&D", title="Engineer")
    assert sign_in(client, saml, name_id="00u1zoe", attributes=attributes).headers["Location"] == "/"
    user = user_named(app, "zng")
    assert (user.source, user.given_name, user.family_name, user.display_name) == ("saml", "Zoë", "Ng", "Zoë N.")
    assert (user.email, user.department, user.title) == ("zoe@example.com", "R&D", "Engineer")
    assert user.password_hash is None and not user.is_admin


def test_jit_off_refuses_unknown_people(app, client, saml, admin):
    configure_saml(app, saml, jit_create=False)
    reply = sign_in(client, saml)
    assert "kind=no_account" in reply.headers["Location"]
    page = client.get(reply.headers["Location"])
    assert page.status_code == 403 and "no Lobby account for you" in page.get_data(as_text=True)
    with app.app_context():
        assert User.query.filter_by(user_name_key="erin@example.com").count() == 0


def test_jit_needs_a_login_or_email_attribute(app, client, saml, admin):
    reply = sign_in(client, saml, attributes={GIVEN_NAME: "Nobody"})
    assert "neither the userName (upn) nor the email attribute" in reason_of(app, reply)


def test_profile_updated_at_each_sign_in(app, client, saml, employee):
    sign_in(client, saml, attributes=okta_attributes(login="employee@example.com", first="Erin", last="Smith",
                                                     department="Marketing", title="Lead",
                                                     email="erin.smith@example.com"))
    user = user_named(app, "employee@example.com")
    assert (user.family_name, user.department, user.title) == ("Smith", "Marketing", "Lead")
    assert user.display_name == "Erin Smith" and user.email == "erin.smith@example.com"
    assert user.version > 1


def test_attribute_left_out_keeps_the_value_but_empty_clears_it(app, client, saml, employee):
    attributes = okta_attributes(login="employee@example.com", title="")
    del attributes["department"]
    sign_in(client, saml, attributes=attributes)
    user = user_named(app, "employee@example.com")
    assert user.department == "Sales" and user.title is None


def test_scim_managed_user_profile_is_left_to_scim(app, client, saml, make_user, admin):
    make_user("scimmed@example.com", source="scim", given_name="Sam", department="Ops")
    reply = sign_in(client, saml, attributes=okta_attributes(login="scimmed@example.com", first="Changed",
                                                             department="Elsewhere"))
    assert reply.headers["Location"] == "/"
    user = user_named(app, "scimmed@example.com")
    assert (user.given_name, user.department) == ("Sam", "Ops")


def test_custom_attribute_mapping(app, client, saml, admin):
    from models.setting import DEFAULT_ATTRIBUTE_MAP
    mapping = dict(DEFAULT_ATTRIBUTE_MAP, user_name="login", email="mail", department="")
    configure_saml(app, saml, attribute_map=mapping)
    sign_in(client, saml, attributes={"login": "kim", "mail": "kim@example.com", "department": "Ignored",
                                      GIVEN_NAME: "Kim"})
    user = user_named(app, "kim")
    assert user.email == "kim@example.com" and user.department is None and user.display_name == "Kim"


def test_display_name_attribute_wins_over_given_family(app, client, saml, admin):
    sign_in(client, saml, attributes=okta_attributes(display="The Erin"))
    assert user_named(app, "erin@example.com").display_name == "The Erin"


def test_deactivated_user_is_refused_and_stays_deactivated(app, client, saml, make_user, admin):
    gone = make_user("gone@example.com", active=False)
    reply = sign_in(client, saml, attributes=okta_attributes(login="gone@example.com"))
    assert "kind=deactivated" in reply.headers["Location"]
    assert reason_of(app, reply) == "The user gone@example.com is deactivated"
    page = client.get(reply.headers["Location"])
    assert page.status_code == 403 and "Your Lobby account is deactivated" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, gone.id).active is False
        assert Identity.query.count() == 0
    assert client.get("/").status_code == 302


def test_deactivated_after_linking_is_refused(app, client, saml, employee):
    sign_in(client, saml, attributes=okta_attributes(login="employee@example.com"))
    with app.app_context():
        db.session.get(User, employee.id).active = False
        db.session.commit()
    reply = sign_in(app.test_client(), saml, attributes=okta_attributes(login="employee@example.com"))
    assert "kind=deactivated" in reply.headers["Location"]
    with app.app_context():
        assert db.session.get(User, employee.id).active is False


# --- Synchronize Groups -------------------------------------------------------------------------

def memberships(app, user_name):
    with app.app_context():
        user = User.query.filter_by(user_name_key=user_name).one()
        return {(m.group.display_name, m.group.source, m.source) for m in Membership.query.filter_by(user_id=user.id)}


def test_group_sync_off_by_default(app, client, saml, admin):
    sign_in(client, saml, attributes=okta_attributes(groups=["Sales"]))
    assert memberships(app, "erin@example.com") == set()
    with app.app_context():
        assert Group.query.count() == 0


def test_group_sync_replaces_saml_memberships_only(app, client, saml, make_user, admin):
    configure_saml(app, saml, group_attribute="groups")
    user = make_user("erin@example.com", groups=["Local team"])
    with app.app_context():
        db.session.add(Group(display_name="Pushed by SCIM", source="scim"))
        db.session.commit()
    sign_in(client, saml, attributes=okta_attributes(groups=["Sales", "Berlin office", "Pushed by SCIM"]))
    assert memberships(app, "erin@example.com") == {
        ("Local team", "local", "local"), ("Sales", "saml", "saml"), ("Berlin office", "saml", "saml")}
    # Next sign-in: Berlin office is gone, Munich office is new; the local and SCIM groups stay as they were.
    sign_in(app.test_client(), saml, attributes=okta_attributes(groups=["sales", "Munich office"]))
    assert memberships(app, "erin@example.com") == {
        ("Local team", "local", "local"), ("Sales", "saml", "saml"), ("Munich office", "saml", "saml")}
    with app.app_context():
        assert Group.query.filter_by(display_name="Berlin office").one().source == "saml"
        assert Group.query.filter_by(source="scim").one().memberships.count() == 0
    assert user.id


def test_group_sync_without_the_attribute_removes_saml_memberships(app, client, saml, admin):
    configure_saml(app, saml, group_attribute="groups")
    sign_in(client, saml, attributes=okta_attributes(groups=["Sales"]))
    sign_in(app.test_client(), saml, attributes=okta_attributes())
    assert memberships(app, "erin@example.com") == set()


@pytest.mark.parametrize("claim", [GIVEN_NAME, SURNAME, EMAIL, UPN, NAME])
def test_default_mapping_uses_the_guides_claim_uris(claim):
    from models.setting import DEFAULT_ATTRIBUTE_MAP
    assert claim in DEFAULT_ATTRIBUTE_MAP.values()


# --- values longer than Lobby can store -----------------------------------------------------------

def test_overlong_profile_attributes_are_left_out_and_the_rest_signs_in(app, client, saml, employee):
    """On PostgreSQL a value longer than its column made the flush fail (the Response was refused
    as "could not be checked"); on SQLite it was kept whole. Now: not stored, the sign-in works,
    the flight recorder says what was left out."""
    from models import SamlResponseLog
    reply = sign_in(client, saml, attributes=okta_attributes(login="employee@example.com", department="D" * 256,
                                                             title="Lead"))
    assert reply.headers["Location"] == "/"
    user = user_named(app, "employee@example.com")
    assert user.department == "Sales" and user.title == "Lead"  # the old department stays
    with app.app_context():
        mapped = SamlResponseLog.query.one().mapped
    assert mapped["department"] == "D" * 256  # what was sent, kept in the flight recorder
    assert mapped["department_skipped"] == "256 characters long; Lobby stores at most 255"


@pytest.mark.parametrize("attributes, reason", [
    (dict(login="u" * 256 + "@example.com"), "The user_name attribute"),
    (dict(email="e" * 321 + "@example.com", login=None), "The email attribute"),
])
def test_overlong_sign_in_names_are_refused_saying_so(app, client, saml, admin, attributes, reason):
    reply = sign_in(client, saml, attributes=okta_attributes(**attributes))
    text = reason_of(app, reply)
    assert reason in text and "characters long; Lobby stores at most" in text
    with app.app_context():
        assert User.query.count() == 1  # the admin; nobody created


def test_overlong_name_id_is_refused_saying_so(app, client, saml, admin):
    reply = sign_in(client, saml, name_id="n" * 1025)
    assert reason_of(app, reply) == "The NameID is 1025 characters long; Lobby stores at most 1024"


def test_group_names_too_long_to_store_are_not_synced(app, client, saml, make_user, admin):
    configure_saml(app, saml, group_attribute="groups")
    make_user("erin@example.com")
    # 200 × "ß" fits the name's column but folds to 400 characters, too long for its key.
    sign_in(client, saml, attributes=okta_attributes(groups=["Sales", "G" * 256, "ß" * 200]))
    assert memberships(app, "erin@example.com") == {("Sales", "saml", "saml")}


def test_refused_sign_in_with_a_very_long_name_is_recorded(app, client, saml, admin):
    """The refused Response's audit target (the user name sent, 600 characters) is longer than the
    column: shortened and marked, so the refusal is recorded rather than failing in turn."""
    reply = sign_in(client, saml, attributes=okta_attributes(login="u" * 588 + "@example.com"))
    assert "The user_name attribute" in reason_of(app, reply)
    with app.app_context():
        event = AuditEvent.query.filter_by(action="auth.login", outcome="failure").one()
        assert len(event.target) == 512 and event.target.endswith("…")
