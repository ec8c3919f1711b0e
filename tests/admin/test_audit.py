"""Audit log: filters, pagination, CSV export of exactly the filtered view, retention and purge."""
import csv
import io
import re
from datetime import timedelta

import pytest

from models import AuditEvent, db, settings, utcnow

from .conftest import add_event, post


@pytest.fixture
def log(app, admin):
    """A small, varied log; returns {name: event id}."""
    return {
        "old_login": add_event(app, "auth.login", actor="anonymous", target="anna@example.com", outcome="failure",
                               reason="wrong password", age=timedelta(days=10)),
        "saml_fail": add_event(app, "auth.login", actor="anonymous", target="anna@example.com", outcome="failure",
                               reason="Audience was https://x/auth/saml2x; expected https://x/auth/saml2",
                               reference="AUD23456", age=timedelta(days=2), details={"method": "saml"}),
        "deactivate": add_event(app, "scim.user.deactivate", actor="scim:Okta", target="ben@example.com",
                                age=timedelta(days=1), details={"id": "b"}),
        "settings": add_event(app, "settings.update", actor="admin@example.com", target="saml",
                              details={"label": {"old": "SSO Login", "new": "Okta"}}),
        "formula": add_event(app, "admin.group.create", actor="admin@example.com", target="=HYPERLINK(\"http://evil\")",
                             reason="+1", details={"note": "@SUM(A1)"}),
    }


def export(client, **args):
    response = client.get("/admin/audit/export.csv", query_string=args)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def shown(client, **args):
    html = client.get("/admin/audit", query_string=args).get_data(as_text=True)
    return html


@pytest.mark.parametrize("args, expected", [
    ({"outcome": "failure"}, {"old_login", "saml_fail"}),
    ({"actor": "SCIM:okta"}, {"deactivate"}),
    ({"action": "scim."}, {"deactivate"}),
    ({"action": "auth.login"}, {"old_login", "saml_fail"}),
    ({"target": "anna"}, {"old_login", "saml_fail"}),
    ({"reference": "aud23456"}, {"saml_fail"}),
    ({"since": "{3_days_ago}"}, {"saml_fail", "deactivate", "settings", "formula"}),
    ({"until": "{3_days_ago}"}, {"old_login"}),
    ({"since": "{3_days_ago}", "until": "{3_days_ago}"}, set()),
    ({"target": "anna", "outcome": "success"}, set()),
])
def test_filters_and_export_agree(app, admin_client, log, args, expected):
    three_days_ago = (utcnow() - timedelta(days=3)).date().isoformat()
    args = {k: v.replace("{3_days_ago}", three_days_ago) for k, v in args.items()}
    # The admin's own sign-in is in the log too; keep it out of the comparison.
    wanted = {log[name] for name in expected}
    on_page = {int(i) for i in re.findall(r'<tr id="event-(\d+)">', shown(admin_client, **args))}
    assert on_page - set(_sign_ins(app)) == wanted
    exported = {int(row["id"]) for row in export(admin_client, **args)}
    assert exported == on_page


def _sign_ins(app):
    with app.app_context():
        return [e.id for e in AuditEvent.query.filter(AuditEvent.actor == "admin@example.com",
                                                      AuditEvent.action == "auth.login")]


def test_export_matches_the_page_row_for_row(app, admin_client, log):
    for i in range(60):
        add_event(app, "admin.user.update", actor="admin@example.com", target=f"user{i}@example.com")
    html = shown(admin_client, action="admin.user")
    on_page = re.findall(r'<td data-label="Target" class="wrap">(user\d+@example.com)</td>', html)
    rows = export(admin_client, action="admin.user")
    assert [row["target"] for row in rows][:50] == on_page
    assert len(rows) == 60 and len(on_page) == 50  # the page shows 50, the export all of them
    assert 'rel="next"' in html


def test_export_defuses_spreadsheet_formulas(admin_client, log):
    row = next(r for r in export(admin_client, action="admin.group") if r["action"] == "admin.group.create")
    assert row["target"] == "'=HYPERLINK(\"http://evil\")"
    assert row["reason"] == "'+1"
    assert row["details"] == '{"note": "@SUM(A1)"}'  # JSON text starts with "{", which is harmless


def test_export_is_itself_audited_but_not_included(app, admin_client, log):
    rows = export(admin_client)
    assert "audit.export" not in {row["action"] for row in rows}
    with app.app_context():
        assert AuditEvent.query.filter_by(action="audit.export").count() == 1


def test_pagination_walks_the_whole_log(app, admin_client, admin):
    for i in range(120):
        add_event(app, "admin.user.update", actor="admin@example.com", target=f"t{i:03d}")
    seen, after = [], None
    while True:
        html = shown(admin_client, action="admin.user", **({"after": after} if after else {}))
        targets = re.findall(r'<td data-label="Target" class="wrap">(t\d{3})</td>', html)
        seen += targets
        match = re.search(r'href="[^"]*after=(\d+)[^"]*" rel="next"', html)
        if not match:
            break
        after = match.group(1)
    assert seen == [f"t{i:03d}" for i in reversed(range(120))]


def test_reasons_and_details_are_shown_escaped(app, admin_client):
    add_event(app, "auth.login", target="<script>alert(1)</script>", outcome="failure",
              reason="<b>not bold</b>", details={"x": "<img src=x>"})
    html = shown(admin_client)
    assert "<script>alert(1)" not in html and "<b>not bold</b>" not in html and "<img src=x>" not in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html


def test_retention_setting_purges_older_events(app, admin_client, log):
    page = "/admin/audit"
    bad = post(admin_client, "/admin/audit/retention", {"retention_days": "1"}, page=page)
    assert bad.status_code == 400
    post(admin_client, "/admin/audit/retention", {"retention_days": "7"}, page=page)
    with app.app_context():
        assert settings.get("audit", "retention_days") == 7
        assert db.session.get(AuditEvent, log["old_login"]) is None
        assert db.session.get(AuditEvent, log["saml_fail"]) is not None
        change = AuditEvent.query.filter_by(action="settings.update", target="audit").one()
        assert change.details == {"retention_days": {"old": 365, "new": 7}}
        purge = AuditEvent.query.filter_by(action="audit.purge").one()
        assert purge.details["deleted"] == 1


def test_purge_command(app, runner, log):
    with app.app_context():
        settings.set("audit", "retention_days", 5)
        db.session.commit()
    result = runner.invoke(args=["audit", "purge"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 audit events older than 5 days" in result.output
    with app.app_context():
        assert db.session.get(AuditEvent, log["old_login"]) is None
        assert AuditEvent.query.filter_by(action="audit.purge", actor="cli").count() == 1
    again = runner.invoke(args=["audit", "purge"])
    assert "Deleted 0 audit events" in again.output
