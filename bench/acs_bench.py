"""Benchmark: the time of one SAML sign-in at Lobby (a signed Okta-shaped Response, accepted).

    .venv/bin/python bench/acs_bench.py [--runs 200] [--database-url URL ...] [--no-write]

Builds a Lobby on a fresh SQLite database in a temporary folder, and on each
--database-url given (migrated, not emptied: use a scratch database), configures the test IdP from tests/saml_idp.py, and times only the
POST to the ACS and the browser's GET of the finish URL it redirects to, through
Flask's test client: signature verification with xmlsec1, the checks, user
matching, the commits and the session. Making the AuthnRequest and
signing the Response happen outside the timed part. The result goes into
docs/performance.md under the "SAML ACS" heading.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import replace_section  # noqa: E402

HEADING = "## SAML ACS"


def run(runs: int, database_url: str | None) -> dict:
    import flask_migrate

    from app import create_app
    from config import TestConfig
    from models import User, db
    from tests.saml_idp import TestIdP, configure_saml, okta_attributes, post_response, start_login

    folder = tempfile.mkdtemp(prefix="lobby-acs-bench-")
    url = database_url or f"sqlite:///{folder}/bench.db"
    app = create_app(TestConfig(url, folder))
    with app.app_context():
        flask_migrate.upgrade(revision="heads")
        if User.query.filter_by(user_name_key="admin@example.com").first() is None:
            db.session.add(User(user_name="admin@example.com", is_admin=True, source="local"))
            db.session.commit()
    idp = TestIdP()
    configure_saml(app, idp)

    timings, cpu_times = [], []
    for index in range(runs + 5):
        client = app.test_client()
        request = start_login(client)
        # A new person every tenth sign-in (just-in-time creation), the same people otherwise.
        person = index % 10 if index % 10 else index
        xml = idp.response(request.id, name_id=f"00u{person:06d}",
                           attributes=okta_attributes(email=f"person{person}@example.com"))
        before = os.times()
        started = time.perf_counter()
        reply = post_response(client, xml, request.relay_state)  # the ACS, then the finish URL
        elapsed = time.perf_counter() - started
        after = os.times()
        # CPU spent by this process and by the xmlsec1 it started: what the request costs,
        # whatever else the machine is busy with (the wall-clock time is not).
        cpu = sum(getattr(after, f) - getattr(before, f)
                  for f in ("user", "system", "children_user", "children_system"))
        if reply.status_code != 303 or reply.headers["Location"] != "/":
            raise SystemExit(f"the ACS refused a valid Response: {reply.status_code} {reply.headers.get('Location')}")
        if index >= 5:  # the first few warm the client cache and the database
            timings.append(elapsed * 1000)
            cpu_times.append(cpu * 1000)
    with app.app_context():
        backend = db.engine.dialect.name
        db.engine.dispose()
    timings.sort()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "load": load,
        "runs": runs, "backend": backend,
        "median": statistics.median(timings), "cpu_median": statistics.median(cpu_times), "p90": timings[int(len(timings) * 0.9) - 1],
        "min": timings[0], "max": timings[-1],
    }


def xmlsec_version() -> str:
    try:
        return subprocess.run(["xmlsec1", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "xmlsec1 not found"


def write_section(results: list[dict], path: Path) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        HEADING,
        "",
        "One sign-in: the POST to `/internal-api/auth/integrations/saml2/callback` carrying a signed "
        "Okta-shaped Response (assertion signed, RSA-SHA256) and the browser's GET of the finish URL it "
        "redirects to, measured through Flask's test client by `bench/acs_bench.py`: xmlsec1 signature "
        "verification, every check, user matching (a new user every tenth sign-in), flight-recorder row, "
        "the held sign-in, the browser check, audit event, session and commits. Building the AuthnRequest "
        "and signing the Response are not timed.",
        "",
        "| database | runs | median | p90 | min | max | CPU per request (median) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[f"| {result['backend']} | {result['runs']} | **{result['median']:.1f} ms** | {result['p90']:.1f} ms | "
          f"{result['min']:.1f} ms | {result['max']:.1f} ms | {result['cpu_median']:.1f} ms |" for result in results],
        "",
        f"Measured {when} on {platform.machine()} ({os.cpu_count()} CPUs, load average "
        f"{max(result['load'] for result in results):.1f} while measuring), Python {platform.python_version()}, {xmlsec_version()}. Most of the time is the xmlsec1 "
        f"process pysaml2 starts for the signature check (one per Response; the backend's version probe is "
        f"cached), then pysaml2's schema validation of the signed element. The wall-clock figures depend on "
        f"what else the machine runs; the CPU column (this process plus its xmlsec1 child) does not.",
        "",
    ])
    replace_section(path, HEADING, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--database-url", action="append", default=[],
                        help="also measure on this (scratch) database; may be given more than once")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args()
    results = []
    for url in [None, *args.database_url]:
        result = run(args.runs, url)
        print(f"ACS on {result['backend']}: median {result['median']:.1f} ms, p90 {result['p90']:.1f} ms "
              f"(min {result['min']:.1f}, max {result['max']:.1f}), CPU median {result['cpu_median']:.1f} ms "
              f"over {result['runs']} runs, load average {result['load']:.1f}")
        results.append(result)
    if not args.no_write:
        write_section(results, ROOT / "docs" / "performance.md")
        print("written to docs/performance.md")


if __name__ == "__main__":
    main()
