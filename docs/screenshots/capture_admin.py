"""Take the admin-area screenshots in docs/screenshots/ from a freshly seeded, throwaway Lobby.

    .venv/bin/python docs/screenshots/capture_admin.py

Starts Lobby (gunicorn) on a free 127.0.0.1 port with a new SQLite database,
lets an Okta-like test IdP provision people over SCIM and sign them in over
SAML through the real endpoints (one sign-in is refused for a wrong Audience),
then photographs the admin pages with headless Chromium. Nothing outside a
temporary directory is touched.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tests.live import free_port  # noqa: E402
from tests.saml_idp import ACS_PATH, LOGIN_PATH, TestIdP, make_key_pair, okta_attributes, read_authn_request  # noqa: E402

ADMIN_LOGIN, ADMIN_PASSWORD = "olivia@acme.example", "screenshots-only-password"
PEOPLE = [  # (given, family, department, title)
    ("Anna", "Berg", "Finance", "Controller"), ("Ben", "Okafor", "Sales", "Account executive"),
    ("Chloé", "Durand", "Engineering", "Backend engineer"), ("Dev", "Patel", "Engineering", "SRE"),
    ("Erin", "Walsh", "Marketing", "Content lead"), ("Farid", "Haddad", "Sales", "Sales manager"),
    ("Greta", "Lind", "Engineering", "Engineering manager"), ("Hiro", "Tanaka", "Design", "Product designer"),
    ("Ines", "Costa", "People", "HR partner"), ("Jonas", "Meyer", "Finance", "Accountant"),
    ("Kai", "Nakamura", "Engineering", "Frontend engineer"), ("Lena", "Fischer", "Sales", "SDR"),
    ("Mateo", "Rossi", "Operations", "Office manager"), ("Nora", "Svensson", "Engineering", "QA engineer"),
]


def email(given: str, family: str) -> str:
    return f"{given.lower().replace('é', 'e')}.{family.lower()}@acme.example"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lobby-shots-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "WERKZEUG_"))},
           "DATABASE_URL": f"sqlite:///{work / 'lobby.db'}", "LOBBY_INSTANCE_PATH": str(work / "instance"),
           "BASE_URL": base, "SECRET_KEY": "screenshots-only-secret-key", "FLASK_APP": "app:create_app",
           "LOBBY_ADMIN_PASSWORD": ADMIN_PASSWORD}
    flask = str(ROOT / ".venv/bin/flask")
    subprocess.run([flask, "db", "upgrade", "heads"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([flask, "create-admin", ADMIN_LOGIN, "--name", "Olivia Office"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    idp = TestIdP(keys=make_key_pair("acme-okta-signing", days=21))
    secret = seed_database(env, idp)
    server = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}",
                               "app:create_app()"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=open(work / "server.log", "w"))
    try:
        wait_until_up(base)
        provision_over_scim(base, secret)
        anna_reference = sign_in_over_saml(base, idp)
        photograph(base, anna_reference)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"screenshots in {OUT} (server log: {work / 'server.log'})")


def seed_database(env: dict, idp: TestIdP) -> str:
    """What an admin would have set up by hand: SSO, SCIM tokens, local groups and people."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from app import create_app
        from models import Group, Membership, ScimToken, User, db, settings, utcnow
        app = create_app()
        with app.app_context():
            settings.update("saml", {"active": True, "method": "metadata_file", "label": "Sign in with Okta",
                                     "metadata_xml": idp.metadata_xml(), "idp_entity_id": idp.entity_id,
                                     "idp_sso_url": idp.sso_url, "idp_certificates": [idp.keys.cert_pem]})
            _row, secret = ScimToken.issue("Okta", created_by=ADMIN_LOGIN)
            stale, _ = ScimToken.issue("Entra trial", created_by=ADMIN_LOGIN)
            stale.created_at = utcnow() - timedelta(days=160)
            stale.last_used_at = utcnow() - timedelta(days=130)
            reception = User(user_name="reception@acme.example", given_name="Front", family_name="Desk",
                             department="Operations", source="local")
            reception.set_primary_email("reception@acme.example")
            reception.set_password("reception-desk-password")
            db.session.add(reception)
            office = Group(display_name="Office", description="Everyone with a desk pass", source="local")
            parking = Group(display_name="Parking", description="Car park spaces", source="local")
            db.session.add_all([office, parking])
            db.session.flush()
            db.session.add(Membership(group_id=office.id, user_id=reception.id, source="local"))
            db.session.commit()
            return secret
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_until_up(base: str) -> None:
    for _ in range(100):
        try:
            if requests.get(base + "/login", timeout=10).status_code == 200:
                return
        except requests.RequestException:  # still booting
            pass
        time.sleep(0.1)
    raise SystemExit("Lobby did not start")


def provision_over_scim(base: str, secret: str) -> None:
    """Okta pushes people and groups; deactivates Ben; trips over a name and a missing userName."""
    api = requests.Session()
    api.headers.update({"Authorization": f"Bearer {secret}", "Content-Type": "application/scim+json"})
    ids = {}
    for given, family, department, title in PEOPLE:
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "userName": email(given, family), "name": {"givenName": given, "familyName": family},
                "displayName": f"{given} {family}", "emails": [{"value": email(given, family), "primary": True,
                                                                 "type": "work"}],
                "title": title, "active": True, "externalId": f"00u{given.lower()[:3]}{len(ids):04d}",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": department}}
        reply = api.post(base + "/api/scim/v2/Users", data=json.dumps(body))
        reply.raise_for_status()
        ids[given] = reply.json()["id"]
    for name, members in (("Engineering", ["Chloé", "Dev", "Greta", "Kai", "Nora"]),
                          ("Sales", ["Ben", "Farid", "Lena"]), ("Finance", ["Anna", "Jonas"])):
        api.post(base + "/api/scim/v2/Groups", data=json.dumps({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name,
            "members": [{"value": ids[m]} for m in members]})).raise_for_status()
    api.patch(base + f"/api/scim/v2/Users/{ids['Ben']}", data=json.dumps({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}]})).raise_for_status()
    # The guide's name-overlap case: Okta pushes "Office", which a local group already has.
    api.post(base + "/api/scim/v2/Groups", data=json.dumps({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Office", "members": []}))
    # A custom-app mapping that forgot userName.
    api.post(base + "/api/scim/v2/Users", data=json.dumps({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "name": {"givenName": "Olga"},
        "emails": [{"value": "olga@acme.example"}], "password": "never-shown-anywhere"}))


def sign_in_over_saml(base: str, idp: TestIdP) -> str:
    """Greta and Kai sign in; Anna's Response names the wrong Audience. Returns Anna's reference."""
    details = {(g, f): (d, t) for g, f, d, t in PEOPLE}

    def attempt(given, family, audience):
        browser = requests.Session()
        start = browser.get(base + LOGIN_PATH, allow_redirects=False)
        request = read_authn_request(start.headers["Location"])
        login = email(given, family)
        xml = idp.response(request.id, name_id=f"00u{given.lower()}okta", audience=audience,
                           destination=base + ACS_PATH, recipient=base + ACS_PATH,
                           attributes=okta_attributes(first=given, last=family, email=login, login=login,
                                                      department=details[given, family][0],
                                                      title=details[given, family][1]))
        return browser.post(base + ACS_PATH, data={"SAMLResponse": base64.b64encode(xml.encode()).decode(),
                                                   "RelayState": request.relay_state}, allow_redirects=False)

    for given, family in (("Greta", "Lind"), ("Kai", "Nakamura")):
        attempt(given, family, base + "/auth/saml2")
    refused = attempt("Anna", "Berg", base + "/auth/saml2x")
    return refused.headers["Location"].split("ref=")[1][:8]


def photograph(base: str, anna_reference: str) -> None:
    from playwright.sync_api import sync_playwright
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(base + "/login")
        page.fill("input[name=login]", ADMIN_LOGIN)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(base + "/")

        def shot(path: str, name: str, full: bool = True) -> None:
            page.goto(base + path)
            page.screenshot(path=str(OUT / name), full_page=full)

        shot("/admin/", "admin-dashboard.png")
        shot("/admin/users", "admin-users.png")
        page.goto(base + "/admin/users?q=anna")
        page.click("table.list a")
        anna_page = page.url[len(base):]
        shot(anna_page, "admin-user-page.png")
        shot("/admin/audit", "admin-audit-log.png")
        shot(f"/admin/flight/saml?reference={anna_reference}", "admin-flight-recorder-saml.png")
        shot("/admin/flight/scim", "admin-flight-recorder-scim.png")
        page.goto(base + "/admin/groups?q=office")
        page.click("table.list a")
        shot(page.url[len(base):], "admin-group-name-collision.png")
        page.set_viewport_size({"width": 390, "height": 844})
        shot("/admin/users", "admin-users-phone.png")
        browser.close()


if __name__ == "__main__":
    main()
