import threading

import pytest
from sqlalchemy.exc import IntegrityError

from models import Group, Setting, User, db, settings
from models.setting import SettingsError


def test_user_name_is_unique_case_insensitively_and_kept_as_given(app):
    with app.app_context():
        db.session.add(User(user_name="Anna.Smith@Example.com"))
        db.session.commit()
        assert User.query.one().user_name == "Anna.Smith@Example.com"
        db.session.add(User(user_name="anna.smith@example.COM"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        assert User.query.count() == 1


def test_group_name_is_unique_case_insensitively(app):
    with app.app_context():
        db.session.add(Group(display_name="Sales"))
        db.session.commit()
        db.session.add(Group(display_name="SALES"))
        with pytest.raises(IntegrityError):
            db.session.commit()


def test_find_by_login_matches_user_name_or_email(app, make_user):
    make_user("jdoe", email="Jane.Doe@Example.com")
    with app.app_context():
        assert User.find_by_login("JDOE").user_name == "jdoe"
        assert User.find_by_login("jane.doe@example.com").user_name == "jdoe"
        assert User.find_by_login("nobody") is None


def test_settings_have_typed_defaults_and_refuse_unknown_names(app):
    with app.app_context():
        assert settings.get("auth", "password_login") is True
        assert settings.get("saml", "clock_skew_seconds") == 120
        diff = settings.update("saml", {"label": "Sign in with Okta", "clock_skew_seconds": 120})
        db.session.commit()
        assert diff == {"label": ("SSO Login", "Sign in with Okta")}
        assert settings.get("saml", "label") == "Sign in with Okta"
        with pytest.raises(SettingsError):
            settings.get("saml", "no_such_setting")
        with pytest.raises(SettingsError):
            settings.set("saml", "clock_skew_seconds", "120")
        assert Setting.query.count() == 1


def test_twenty_concurrent_writers_on_sqlite_all_succeed(app, backend):
    """Each writer reads then writes: the pattern that fails with "database is locked" without BEGIN IMMEDIATE."""
    errors = []
    barrier = threading.Barrier(20)

    def writer(n):
        try:
            with app.app_context():
                barrier.wait(timeout=10)
                existing = User.query.count()  # a read first, then the write
                db.session.add(User(user_name=f"writer{n}@example.com", display_name=str(existing)))
                db.session.commit()
        except Exception as error:  # collected and asserted below
            errors.append(repr(error))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.app_context():
        assert User.query.count() == 20


def test_audit_actor_and_target_too_long_for_their_columns_are_shortened_and_marked(app):
    from models import AuditEvent, record_event
    with app.app_context():
        record_event("test.long", actor="scim:" + "T" * 255, target="n" * 600, ip_address="1" * 80)
        db.session.commit()  # PostgreSQL's varchar columns would refuse the full values
        event = AuditEvent.query.filter_by(action="test.long").one()
        assert event.actor == "scim:" + "T" * 249 + "…" and len(event.actor) == 255
        assert event.target == "n" * 511 + "…" and len(event.ip_address) == 64
        record_event("test.short", actor="scim:Okta", target="erin@example.com")
        db.session.commit()
        event = AuditEvent.query.filter_by(action="test.short").one()
        assert (event.actor, event.target) == ("scim:Okta", "erin@example.com")
