"""Browser tests: Playwright drives Debian's Chromium against Lobby under gunicorn.

Without /usr/bin/chromium (or the playwright package) these tests skip and say
why; with LOBBY_REQUIRE_BROWSER=1 (CI) they fail instead, so CI never passes
by skipping them.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# Screenshots of every step; kept out of git (curated copies live in docs/screenshots/).
ARTIFACTS = Path(__file__).resolve().parent.parent / "_artifacts"


def _unavailable() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed (make test installs Debian's chromium when run as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    return None


@pytest.fixture(scope="session")
def browser():
    reason = _unavailable()
    if reason:
        if os.environ.get("LOBBY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required here but cannot run: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def shoot(request):
    """shoot(page, "step-name"): a full-page screenshot under tests/_artifacts/<test>/."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 1000))

    def _shoot(page, name: str) -> Path:
        path = folder / f"{next(counter):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shoot


def set_up_code(server) -> str:
    match = re.search(r"set-up code: ([A-Z2-7]{5}-[A-Z2-7]{5})", server.output())
    assert match, "the server did not print a set-up code:\n" + server.output()
    return match.group(1)


# --- fixtures for the SSO and provisioning flows (2-7) ----------------------------------------

@pytest.fixture
def idp_server(live_server):
    """The test Okta (tests/e2e/idp_server.py) serving this test's Lobby; stopped afterwards."""
    from .idp_server import IdPServer

    with IdPServer(live_server.url) as server:
        yield server


@pytest.fixture
def new_page(browser):
    """new_page(): a page in another browser context (another person, no shared cookies)."""
    contexts = []

    def _new_page():
        context = browser.new_context(viewport={"width": 1200, "height": 860})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        return page

    yield _new_page
    for context in contexts:
        context.close()
