"""Web-level guarantees over every route the app has, present and future.

The tables are built from the app's URL map, so a route added later is
covered without anyone remembering to add it here.
"""
from __future__ import annotations

import re

import pytest

from app import create_app
from config import TestConfig

from ..conftest import csrf_token

# Endpoints that receive POSTs from elsewhere and protect themselves another way.
CSRF_EXEMPT_PREFIXES = ("scim.", "saml.")


def _placeholder(match) -> str:
    converter, name = match.group(1), match.group(2)
    if converter == "int":
        return "1"
    return "00000000-0000-0000-0000-000000000000" if "id" in name else "x"


def _routes(prefix=None, methods=None):
    app = create_app(TestConfig("sqlite://", "/tmp/lobby-route-table"))
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        if prefix and not rule.endpoint.startswith(prefix):
            continue
        wanted = (methods or {"GET", "POST", "PUT", "PATCH", "DELETE"}) & set(rule.methods)
        for method in sorted(wanted):
            path = re.sub(r"<(?:([^:>]+):)?([^>]+)>", _placeholder, rule.rule)
            found.append((method, path, rule.endpoint))
    return found


ADMIN_ROUTES = _routes("admin.")
STATE_CHANGING = [r for r in _routes(methods={"POST", "PUT", "PATCH", "DELETE"})
                  if not r[2].startswith(CSRF_EXEMPT_PREFIXES)]


def test_the_tables_are_not_empty():
    assert len(ADMIN_ROUTES) >= 6 and len(STATE_CHANGING) >= 3


@pytest.mark.parametrize("method, path, endpoint", ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES])
@pytest.mark.parametrize("who", ["anonymous", "employee", "admin"])
def test_admin_routes_by_role(client, auth, admin, employee, who, method, path, endpoint):
    if who == "employee":
        auth.login_as(employee)
    elif who == "admin":
        auth.login_as(admin)
    data = None
    if method != "GET":
        # A valid token, so that it is the admin guard, not CSRF, that answers.
        data = {"csrf_token": csrf_token(client, "/login" if who == "anonymous" else "/")}
    response = client.open(path, method=method, data=data)
    if who == "anonymous":
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    elif who == "employee":
        assert response.status_code == 403
    else:
        # Admins get through the guard; a POST without its CSRF token or a made-up id may still be refused.
        assert response.status_code not in (401, 403, 500), response.status_code


@pytest.mark.parametrize("method, path, endpoint", STATE_CHANGING, ids=[f"{m} {p}" for m, p, _ in STATE_CHANGING])
def test_every_state_changing_form_needs_a_csrf_token(client, auth, admin, method, path, endpoint):
    auth.login_as(admin)
    response = client.open(path, method=method, data={"anything": "1"})
    assert response.status_code == 400, f"{method} {path} answered {response.status_code} without a CSRF token"


def test_setup_needs_a_csrf_token(client):
    assert client.post("/setup", data={"code": "x"}).status_code == 400
