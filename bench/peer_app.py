"""The peer for bench/load_bench.py: the reference SCIM server ``scim2-server`` (PyPI) as a WSGI app.

    PEER_USERS=10000 PEER_TOKEN=secret gunicorn --preload bench.peer_app:app

Built the way its ``scim2-server`` command builds it (default schemas, resource types and
service provider configuration, in-memory storage, static bearer token), and seeded at import
with PEER_USERS users shaped like Lobby's benchmark users. Run with ``--preload`` so the seed is
made once and every gunicorn worker starts with the same users (its storage is per process).
"""
from __future__ import annotations

import json
import os

from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import (load_default_resource_types, load_default_schemas,
                                load_default_service_provider_config)
from werkzeug.test import Client

TOKEN = os.environ.get("PEER_TOKEN", "peer-bench-token")
USERS = int(os.environ.get("PEER_USERS", "10000"))

config = load_default_service_provider_config()
config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
provider = ScimProvider.from_discovery(load_default_schemas().values(), load_default_resource_types().values(),
                                       config=config)
service = ScimService(provider, secret=os.environ.get("SCIM2_SERVER_SECRET", "peer-bench-secret"))
app = BearerTokenApplication(InMemoryStorage(), provider, service=service, bearer_tokens=[TOKEN])


def _seed(count: int) -> None:
    # Through the server's own POST /Users, so the users are indexed exactly as a client's would be.
    client = Client(app)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    for index in range(count):
        name = f"user{index:06d}@example.com"
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": True,
                "name": {"givenName": "User", "familyName": f"{index:06d}"}, "displayName": f"User {index:06d}",
                "emails": [{"value": name, "type": "work", "primary": True}]}
        response = client.post("/v2/Users", data=json.dumps(body), headers=headers)
        if response.status_code != 201:
            raise RuntimeError(f"seeding the peer: {response.status_code} {response.get_data(as_text=True)[:200]}")


_seed(USERS)
