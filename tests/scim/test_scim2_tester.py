"""The third-party checker scim2-tester against a live Lobby on 127.0.0.1 (a real HTTP server).

scim2-tester reads discovery (/ServiceProviderConfig, /ResourceTypes, /Schemas), builds
its checks from what Lobby advertises, and runs them. Any check that ends in ERROR or
CRITICAL fails this test; the full report is printed so a failure says which check.
"""
from __future__ import annotations

from urllib.parse import urljoin

import requests
from scim2_client import BaseSyncSCIMClient
from scim2_tester import Status, check_server

from .conftest import issue_token


class RequestsSCIMClient(BaseSyncSCIMClient):
    """scim2-client over ``requests`` (its own network engine needs httpx2, which we do not ship)."""

    def __init__(self, base_url: str, token: str, **kwargs):
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/") + "/"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _url(self, endpoint: str) -> str:
        return urljoin(self.base_url, endpoint.lstrip("/"))

    def _stays_under_base_url(self, endpoint: str) -> bool:
        return self._url(endpoint).startswith(self.base_url)

    def request(self, method: str, url: str, **kwargs):
        if "json" in kwargs:
            kwargs.setdefault("headers", {})
            kwargs["headers"] = {**kwargs["headers"], "Content-Type": "application/scim+json"}
        return self.session.request(method, self._url(url), timeout=30, **kwargs)


def test_scim2_tester_finds_no_errors(live_lobby):
    app, base = live_lobby
    token = issue_token(app, "scim2-tester")
    client = RequestsSCIMClient(f"{base}/api/scim/v2", token)
    results = check_server(client, raise_exceptions=False)
    report = "\n".join(f"{r.status.name:10} {r.resource_type or '-':6} {r.title}: {r.reason or ''}" for r in results)
    print(report)
    failed = [r for r in results if r.status in (Status.ERROR, Status.CRITICAL)]
    assert results, "scim2-tester ran no checks"
    assert sum(r.status == Status.SUCCESS for r in results) >= 20, report
    assert not failed, "scim2-tester found errors:\n" + report
