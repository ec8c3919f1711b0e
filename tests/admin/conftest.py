"""Helpers for the admin-area tests: a signed-in admin, rows as the SAML/SCIM code writes them."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from models import AuditEvent, SamlResponseLog, ScimRequestLog, db, utcnow
from tests.conftest import csrf_token


@pytest.fixture
def admin_client(client, auth, admin):
    auth.login_as(admin)
    return client


def post(client, url, data=None, page=None, follow=False):
    """POST ``url`` the way a browser would: with the CSRF token of the page the form is on."""
    fields = dict(data or {})
    fields["csrf_token"] = csrf_token(client, page or "/admin/")
    return client.post(url, data=fields, follow_redirects=follow)


def add_event(app, action, *, actor="someone", target=None, outcome="success", reason=None, age=None,
              reference=None, details=None):
    with app.app_context():
        event = AuditEvent(action=action, actor=actor, target=target, outcome=outcome, reason=reason,
                           reference=reference, details=details or {},
                           created_at=utcnow() - (age or timedelta(0)))
        db.session.add(event)
        db.session.commit()
        return event.id


def add_saml_response(app, **fields):
    values = {"verdict": "rejected", "reference": "ABCD2345", "issuer": "http://www.okta.com/exk1",
              "name_id": "00u1anna", "reason": "Audience was https://lobby.test/auth/saml2x; expected "
                                                "https://lobby.test/auth/saml2",
              "response_xml": "<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol' ID='_1'>"
                              "<saml:Issuer xmlns:saml='urn:oasis:names:tc:SAML:2.0:assertion'>http://www.okta.com/exk1"
                              "</saml:Issuer></samlp:Response>",
              "attributes": {"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": ["anna@example.com"]},
              "mapped": {}}
    values.update(fields)
    with app.app_context():
        row = SamlResponseLog(**values)
        db.session.add(row)
        db.session.commit()
        return row.id


def add_scim_request(app, **fields):
    values = {"method": "POST", "path": "/api/scim/v2/Users", "status": 400, "duration_ms": 12.5,
              "token_name": "Okta", "error": "userName is required",
              "request_body": '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "name": {"givenName": "Ben"}}',
              "response_body": '{"status": "400", "scimType": "invalidValue", "detail": "userName is required"}'}
    values.update(fields)
    with app.app_context():
        row = ScimRequestLog(**values)
        db.session.add(row)
        db.session.commit()
        return row.id


USER_LINK = re.compile(r'href="/admin/users/([0-9a-f-]{36})"')


def listed_user_ids(html: str) -> list[str]:
    """User ids in the order the list page shows them."""
    return USER_LINK.findall(html)
