"""SCIM test helpers: a token, and a client that speaks application/scim+json with it."""
from __future__ import annotations

import json
import threading

import pytest

from werkzeug.serving import WSGIRequestHandler, make_server

from models import ScimToken, db

BASE = "/api/scim/v2"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class ScimClient:
    def __init__(self, client, token: str):
        self.client = client
        self.token = token

    def request(self, method: str, path: str, body=None, headers=None, **kwargs):
        sent = {"Authorization": f"Bearer {self.token}", "Accept": "application/scim+json"}
        sent.update(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            sent.setdefault("Content-Type", "application/scim+json; charset=utf-8")
        url = path if path.startswith("/") else f"{BASE}/{path}"
        return self.client.open(url, method=method, data=data, headers=sent, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body, **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, operations, **kw):
        body = operations if isinstance(operations, dict) else {"schemas": [PATCH_SCHEMA], "Operations": operations}
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # conveniences for tests that are about something else
    def create_user(self, user_name, **fields):
        body = {"schemas": [USER_SCHEMA], "userName": user_name, "active": True, **fields}
        response = self.post("Users", body)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()

    def create_group(self, name, members=(), **fields):
        body = {"schemas": [GROUP_SCHEMA], "displayName": name,
                "members": [{"value": m} for m in members], **fields}
        response = self.post("Groups", body)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()


def issue_token(app, name="Okta") -> str:
    with app.app_context():
        _row, secret = ScimToken.issue(name, created_by="test")
        db.session.commit()
        return secret


@pytest.fixture
def scim_token(app):
    return issue_token(app)


@pytest.fixture
def scim(client, scim_token):
    return ScimClient(client, scim_token)


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # hundreds of requests: keep the report readable
        pass


@pytest.fixture
def live_lobby(make_app):
    """Lobby served over real HTTP on 127.0.0.1 (a random port), threaded; yields (app, base URL)."""
    holder = {}
    server = make_server("127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True,
                         request_handler=QuietHandler)
    base = f"http://127.0.0.1:{server.server_port}"
    app = make_app(BASE_URL=base)
    holder["app"] = app.wsgi_app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, base
    finally:
        server.shutdown()
        thread.join(timeout=10)
