"""50 IdP requests adding members to one group at the same moment: none lost, none failed.

Runs over real HTTP against a threaded server, so the requests really overlap in the
database (SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL locks the group row).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from models import Membership, db

from .conftest import PATCH_SCHEMA, ScimClient, issue_token

WRITERS = 50


def test_concurrent_member_adds_lose_nothing(live_lobby):
    app, base = live_lobby
    token = issue_token(app, "concurrency")
    scim = ScimClient(app.test_client(), token)
    group = scim.create_group("Everyone")
    users = [scim.create_user(f"c{i:02}@example.com")["id"] for i in range(WRITERS)]
    url = f"{base}/api/scim/v2/Groups/{group['id']}?excludedAttributes=members"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}

    def add(user_id):
        body = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}]}
        with requests.Session() as session:
            return session.patch(url, json=body, headers=headers, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        statuses = list(pool.map(add, users))

    assert statuses == [200] * WRITERS
    with app.app_context():
        stored = {m.user_id for m in Membership.query.filter_by(group_id=group["id"])}
        assert stored == set(users)
        db.session.remove()
    final = scim.get(f"Groups/{group['id']}").get_json()
    assert sorted(m["value"] for m in final["members"]) == sorted(users)
    # Every add was its own change: the version moved 50 times.
    assert final["meta"]["version"] == f'W/"{1 + WRITERS}"'
