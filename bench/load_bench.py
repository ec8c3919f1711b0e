"""Benchmark: Lobby under load at 1,000 / 10,000 / 100,000 users, beside its ceiling and a peer.

    .venv/bin/python bench/load_bench.py --database-url postgresql://postgres@127.0.0.1:5432/lobby_bench_proof
        [--sizes 1000,10000,100000] [--seconds 8] [--sustained 60] [--clients 4] [--no-write]

The database is EMPTIED (public schema dropped), migrated, and seeded with bulk SQL
(``INSERT … SELECT … FROM generate_series``, not SCIM POSTs) for each size in turn. Lobby
runs under gunicorn, 2 workers × 4 threads (gthread), exactly as bench/scim_bench.py starts
it; beside it, in the same run and with the same settings, the trivial Flask JSON endpoint
(bench/trivial_app.py: the framework's ceiling) and the reference SCIM server
``scim2-server`` from PyPI (bench/peer_app.py: the peer, seeded with 10,000 users). One
client drives all three: --clients Python processes with keep-alive ``http.client``
connections (bench/scim_bench.py's ``throughput``), latencies measured per request.

Measured:
* at every size: lookup by userName (req/s, p50, p99) and list pages at the end of the set
  (``startIndex`` = size − 100, ``count`` = 100);
* at 10,000 users: trivial endpoint, peer lookup, the login page under load, ACS requests
  per second with signed Responses (prepared beforehand: every POST answers a real
  AuthnRequest), and a 2,000-user initial push (bench/scim_bench.py's ``initial_push``);
* at 100,000 users: add-one-member to groups of 100 / 5,000 / 50,000 members
  (sequential PATCHes, median), then --sustained seconds of mixed load (lookups, deep pages,
  user reads, attribute PATCHes, login pages) counting every non-2xx answer and sampling
  each worker's resident memory every 5 s.

Results go to docs/performance.md under "## Load (issue 7)".
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import migrated_app, replace_section  # noqa: E402
from bench.scim_bench import (PATCH_SCHEMA, PREFIX, free_port, initial_push, start_gunicorn, stop,  # noqa: E402
                              throughput, worker_rss_mb)

HEADING = "## Load (issue 7)"
GROUP_SIZES = (100, 5_000, 50_000)


# --- seeding ----------------------------------------------------------------------------------

def seed(app, users: int) -> dict:
    """``users`` SCIM users with one work email each, groups of 100/5,000/50,000 where the set is
    large enough, an admin, and a SCIM token; all in set-based SQL."""
    from sqlalchemy import text

    from models import ScimToken, User, db
    started = time.perf_counter()
    with app.app_context():
        db.session.execute(text(
            "INSERT INTO users (id, user_name, user_name_key, given_name, family_name, display_name, extra, active,"
            " is_admin, source, created_at, updated_at, version, session_epoch, search_text)"
            " SELECT md5('u' || i)::uuid::text, n, n, 'User', lpad(i::text, 6, '0'), 'User ' || lpad(i::text, 6, '0'),"
            " '{}', true, false, 'scim', now(), now(), 1, 0, n"
            " FROM generate_series(0, :last) AS i, LATERAL (SELECT 'user' || lpad(i::text, 6, '0') || '@example.com' AS n) AS x"),
            {"last": users - 1})
        db.session.execute(text(
            'INSERT INTO user_emails (user_id, value, value_key, type, "primary", position)'
            " SELECT id, user_name, user_name_key, 'work', true, 0 FROM users"))
        groups = {}
        for size in GROUP_SIZES:
            if size + 1_000 > users:
                continue
            group_id = f"00000000-0000-0000-0000-{size:012d}"
            db.session.execute(text(
                "INSERT INTO groups (id, display_name, display_name_key, source, adopted_by_idp, created_at,"
                " updated_at, version) VALUES (:id, :name, :key, 'scim', false, now(), now(), 1)"),
                {"id": group_id, "name": f"Members {size}", "key": f"members {size}"})
            # Members are the first ``size`` users; the last 1,000 users are never members (spares).
            db.session.execute(text(
                "INSERT INTO memberships (group_id, user_id, source, created_at)"
                " SELECT :g, id, 'scim', now() FROM users ORDER BY user_name_key LIMIT :n"), {"g": group_id, "n": size})
            groups[size] = group_id
        admin = User(user_name="admin@example.com", is_admin=True, source="local")
        admin.set_password("bench admin password")
        db.session.add(admin)
        _row, token = ScimToken.issue("bench", created_by="bench")
        db.session.commit()
        db.session.execute(text("ANALYZE"))
        db.session.commit()
        spares = [row[0] for row in db.session.execute(text(
            "SELECT id FROM users WHERE source = 'scim' ORDER BY user_name_key DESC LIMIT 1000"))]
        ids = [row[0] for row in db.session.execute(text(
            "SELECT id FROM users WHERE source = 'scim' ORDER BY random() LIMIT 500"))]
        db.engine.dispose()
    return {"token": token, "groups": groups, "spares": spares, "ids": ids,
            "seconds": time.perf_counter() - started}


# --- measurements -----------------------------------------------------------------------------

def lookup_paths(users: int, rng: random.Random) -> list[str]:
    return [f"{PREFIX}/Users?filter=" + quote(f'userName eq "user{i:06d}@example.com"')
            for i in rng.sample(range(users), min(500, users))]


def deep_page_paths(users: int) -> list[str]:
    return [f"{PREFIX}/Users?startIndex={max(users - offset, 1)}&count=100" for offset in (100, 200, 300)]


def add_member_median(port: int, token: str, group_id: str, users: list[str]) -> float:
    from bench.scim_bench import add_member_timings
    return add_member_timings(port, token, group_id, users, "?excludedAttributes=members")


def prepare_acs(port: int, base: str, app, count: int) -> list[bytes]:
    """``count`` ACS form bodies, each a signed Response answering its own AuthnRequest made by Lobby."""
    from tests.saml_idp import ACS_PATH, LOGIN_PATH, TestIdP, configure_saml, encode, okta_attributes, \
        read_authn_request
    idp = TestIdP()
    configure_saml(app, idp)
    bodies = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for index in range(count):
        connection.request("GET", LOGIN_PATH)
        response = connection.getresponse()
        response.read()
        request = read_authn_request(response.getheader("Location"))
        # Ten people signing in again and again, plus a new one every tenth time (as acs_bench.py).
        person = index if index % 10 == 0 else index % 10
        xml = idp.response(request.id, name_id=f"00u{person:06d}", audience=base + "/auth/saml2",
                           destination=base + ACS_PATH, recipient=base + ACS_PATH,
                           attributes=okta_attributes(email=f"person{person}@example.com"))
        bodies.append(urlencode({"SAMLResponse": encode(xml), "RelayState": request.relay_state}).encode())
    connection.close()
    return bodies


def _post_acs(args) -> tuple[list[float], int]:
    port, bodies = args
    from tests.saml_idp import ACS_PATH
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, refused = [], 0
    for body in bodies:
        started = time.perf_counter()
        connection.request("POST", ACS_PATH, body=body,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        # Accepted is 303 to "/"; a refusal is 303 to the error page with a reference.
        if response.status != 303 or "ref=" in (response.getheader("Location") or ""):
            refused += 1
    connection.close()
    return latencies, refused


def acs_throughput(port: int, bodies: list[bytes], clients: int) -> dict:
    chunks = [bodies[i::clients] for i in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        started = time.time()
        parts = pool.map(_post_acs, [(port, chunk) for chunk in chunks])
        elapsed = time.time() - started
    latencies = sorted(x for part, _r in parts for x in part)
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)], "refused": sum(r for _p, r in parts)}


def _mixed(args) -> dict:
    """One client of the sustained load: a mix of reads and writes, every non-2xx counted."""
    port, token, users, ids, deadline, seed = args
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/scim+json",
               "Content-Type": "application/scim+json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    counts: dict[str, int] = {}
    errors: list[str] = []
    latencies = []
    while time.time() < deadline:
        kind = rng.choices(["lookup", "page", "read", "patch", "login"], weights=[5, 1, 2, 1, 1])[0]
        body = None
        if kind == "lookup":
            method, path = "GET", f"{PREFIX}/Users?filter=" + quote(f'userName eq "user{rng.randrange(users):06d}@example.com"')
        elif kind == "page":
            method, path = "GET", f"{PREFIX}/Users?startIndex={rng.randrange(1, users)}&count=50"
        elif kind == "read":
            method, path = "GET", f"{PREFIX}/Users/{rng.choice(ids)}"
        elif kind == "patch":
            method, path = "PATCH", f"{PREFIX}/Users/{rng.choice(ids)}"
            body = json.dumps({"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "replace", "path": "title", "value": f"Title {rng.randrange(1000)}"}]})
        else:
            method, path = "GET", "/login"
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=headers if kind != "login" else {})
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as error:
            errors.append(f"{kind}: {type(error).__name__}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        counts[kind] = counts.get(kind, 0) + 1
        if status >= 300:
            errors.append(f"{kind}: {status}")
    connection.close()
    return {"counts": counts, "errors": errors, "latencies": latencies}


def sustained(port: int, master_pid: int, token: str, users: int, ids: list[str], seconds: float,
              clients: int) -> dict:
    samples = []
    done = threading.Event()

    def sample():
        started = time.time()
        while not done.is_set():
            samples.append((round(time.time() - started), worker_rss_mb(master_pid)))
            done.wait(5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    deadline = time.time() + seconds
    try:
        with multiprocessing.get_context("fork").Pool(clients) as pool:
            started = time.time()
            parts = pool.map(_mixed, [(port, token, users, ids, deadline, seed) for seed in range(clients)])
            elapsed = time.time() - started
    finally:
        done.set()
        sampler.join()
    samples.append((round(elapsed), worker_rss_mb(master_pid)))
    counts: dict[str, int] = {}
    for part in parts:
        for kind, n in part["counts"].items():
            counts[kind] = counts.get(kind, 0) + n
    latencies = sorted(x for part in parts for x in part["latencies"])
    return {"seconds": elapsed, "requests": len(latencies), "rps": len(latencies) / elapsed, "counts": counts,
            "errors": [e for part in parts for e in part["errors"]], "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)], "rss": samples}


def start_peer(port: int, workers: int, threads: int, env: dict):
    """scim2-server seeds itself before gunicorn binds (--preload), which takes longer than
    start_gunicorn's 30 s: start it the same way, wait up to 10 minutes."""
    import socket
    import subprocess
    command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
               "--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "30",
               "--log-level", "warning", "bench.peer_app:app"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError("scim2-server exited while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise RuntimeError("scim2-server did not start")


def load_average() -> float:
    return os.getloadavg()[0]


# --- the run ------------------------------------------------------------------------------------

def run(args) -> dict:
    folder = tempfile.mkdtemp(prefix="lobby-load-bench-")
    sizes = [int(s) for s in args.sizes.split(",")]
    result: dict = {"sizes": {}, "workers": args.workers, "threads": args.threads, "clients": args.clients,
                    "seconds": args.seconds, "load_before": load_average()}
    env_base = dict(os.environ, SECRET_KEY="bench", LOBBY_INSTANCE_PATH=folder,
                    SCIM_RATE_LIMIT_PER_MINUTE="100000000", DATABASE_URL=args.database_url)
    trivial_port, peer_port = free_port(), free_port()
    peer_token = "peer-bench-token"
    print("starting the trivial endpoint and the peer (seeding 10,000 users) ...", flush=True)
    trivial = start_gunicorn("bench.trivial_app:app", trivial_port, args.workers, args.threads, env_base)
    peer_env = dict(env_base, PEER_USERS=str(args.peer_users), PEER_TOKEN=peer_token,
                    GUNICORN_CMD_ARGS="--preload --timeout 600")
    peer = start_peer(peer_port, args.workers, args.threads, peer_env)
    try:
        for users in sizes:
            print(f"seeding {users:,} users ...", flush=True)
            app = migrated_app(args.database_url, folder)
            data = seed(app, users)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            lobby = start_gunicorn("app:create_app()", port, args.workers, args.threads, dict(env_base, BASE_URL=base))
            row: dict = {"seed_seconds": data["seconds"]}
            try:
                headers = {"Authorization": f"Bearer {data['token']}", "Accept": "application/scim+json"}
                rng = random.Random(users)
                print(f"  lookup at {users:,} ...", flush=True)
                row["lookup"] = throughput(port, lookup_paths(users, rng), headers, args.seconds, args.clients)
                print(f"  deep pages at {users:,} ...", flush=True)
                row["deep_page"] = throughput(port, deep_page_paths(users), headers, args.seconds, args.clients)
                if users == args.comparison_size:
                    print("  trivial and peer ...", flush=True)
                    result["trivial"] = throughput(trivial_port, ["/ping"], {}, args.seconds, args.clients)
                    peer_paths = [f"/v2/Users?filter=" + quote(f'userName eq "user{i:06d}@example.com"')
                                  for i in rng.sample(range(args.peer_users), 500)]
                    result["peer"] = throughput(peer_port, peer_paths, {"Authorization": f"Bearer {peer_token}"},
                                                args.seconds, args.clients)
                    # Lobby again right after, so the three are compared under the same machine load.
                    result["lookup_again"] = throughput(port, lookup_paths(users, rng), headers, args.seconds,
                                                        args.clients)
                    print("  login page ...", flush=True)
                    result["login_page"] = throughput(port, ["/login"], {"Accept": "text/html"}, args.seconds,
                                                      args.clients)
                    print("  ACS (signing Responses) ...", flush=True)
                    bodies = prepare_acs(port, base, app, args.acs_requests)
                    result["acs"] = acs_throughput(port, bodies, args.clients)
                    print("  2,000-user push ...", flush=True)
                    result["push"] = initial_push(port, data["token"], args.clients)
                if data["groups"]:
                    print(f"  add one member at {users:,} ...", flush=True)
                    spares = data["spares"]
                    row["add_member"] = {}
                    for size, group_id in sorted(data["groups"].items()):
                        row["add_member"][size] = add_member_median(port, data["token"], group_id, spares[:55])
                        spares = spares[55:]
                if users == sizes[-1] and args.sustained:
                    print(f"  sustained mixed load for {args.sustained:.0f} s ...", flush=True)
                    result["sustained"] = sustained(port, lobby.pid, data["token"], users, data["ids"],
                                                    args.sustained, args.clients)
                    result["sustained_users"] = users
            finally:
                stop(lobby)
            result["sizes"][users] = row
    finally:
        stop(trivial)
        stop(peer)
    result["load_after"] = load_average()
    return result


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "—"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def write_section(result: dict, path: Path) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sizes = sorted(result["sizes"])
    trivial, peer = result["trivial"], result["peer"]
    lookup = result["lookup_again"]
    small, large = result["sizes"][sizes[0]]["lookup"], result["sizes"][sizes[-1]]["lookup"]
    lines = [
        HEADING, "",
        f"`bench/load_bench.py` on PostgreSQL: Lobby under gunicorn, {result['workers']} workers × "
        f"{result['threads']} threads (gthread, keep-alive), seeded with bulk SQL at each size; the trivial Flask "
        "endpoint (`bench/trivial_app.py`) and the reference SCIM server `scim2-server` "
        f"(`bench/peer_app.py`, in memory, {result.get('peer_users', 10000):,} users) under the same gunicorn "
        f"settings in the same run. One client for all: {result['clients']} Python processes with keep-alive "
        f"`http.client` connections, {result['seconds']:.0f} s per throughput measurement, on the same "
        f"{os.cpu_count()}-CPU machine as the servers.", "",
        "| users | seed (SQL) | lookup by userName | list page at the end of the set (count=100) |",
        "| --- | --- | --- | --- |",
    ]
    for users in sizes:
        row = result["sizes"][users]
        lk, dp = row["lookup"], row["deep_page"]
        lines.append(f"| {users:,} | {row['seed_seconds']:.1f} s | {lk['rps']:.0f} req/s, p50 {lk['p50']:.0f} ms, "
                     f"p99 {lk['p99']:.0f} ms | {dp['rps']:.0f} req/s, p50 {dp['p50']:.0f} ms, p99 {dp['p99']:.0f} ms |")
    # The largest set holds the largest groups (100 / 5,000 / 50,000 at 100,000 users).
    add_at = next((u for u in reversed(sizes) if "add_member" in result["sizes"][u]), None)
    add = {int(k): v for k, v in result["sizes"][add_at]["add_member"].items()} if add_at else {}
    add_ratio = add[max(add)] / add[min(add)] if add else float("nan")
    acs, push, login = result["acs"], result["push"], result["login_page"]
    lines += ["", "| measurement | result | target | verdict |", "| --- | --- | --- | --- |",
              f"| trivial Flask JSON endpoint (ceiling) | {trivial['rps']:.0f} req/s, p50 {trivial['p50']:.1f} ms, "
              f"p99 {trivial['p99']:.1f} ms | — | |",
              f"| `scim2-server` lookup by userName (peer) | {peer['rps']:.0f} req/s, p50 {peer['p50']:.1f} ms, "
              f"p99 {peer['p99']:.1f} ms | — | |",
              f"| Lobby lookup at {result['comparison_size']:,} users, right after those two | {lookup['rps']:.0f} req/s, "
              f"p50 {lookup['p50']:.1f} ms, p99 {lookup['p99']:.1f} ms | | |",
              f"| lookup ÷ trivial | **{lookup['rps'] / trivial['rps']:.0%}** | ≥ 40% | "
              f"{verdict(lookup['rps'] / trivial['rps'] >= 0.4)} |",
              f"| lookup ÷ peer | **{ratio(lookup['rps'], peer['rps'])}** | ≥ 3× | {verdict(lookup['rps'] >= 3 * peer['rps'])} |",
              f"| lookup p99 at {sizes[-1]:,} ÷ at {sizes[0]:,} | **{ratio(large['p99'], small['p99'])}** "
              f"({large['p99']:.0f} / {small['p99']:.0f} ms) | ≤ 2× | {verdict(large['p99'] <= 2 * small['p99'])} |"]
    if add:
        lines.append(f"| add one member at {add_at:,} users (median of 50, `excludedAttributes=members`) | "
                     + ", ".join(f"{add[s]:.1f} ms at {s:,}" for s in sorted(add))
                     + f"; **{add_ratio:.2f}×** from {min(add):,} to {max(add):,} | ≤ 1.5× | {verdict(add_ratio <= 1.5)} |")
    lines += [f"| ACS with signed Responses (each answers its own AuthnRequest) | {acs['rps']:.1f} req/s, "
              f"p50 {acs['p50']:.0f} ms, p99 {acs['p99']:.0f} ms, {acs['requests']} requests, {acs['refused']} refused "
              "| — | |",
              f"| login page `GET /login` under load | {login['rps']:.0f} req/s, p50 {login['p50']:.1f} ms, "
              f"p99 {login['p99']:.1f} ms | — | |",
              f"| 2,000-user initial push (+50 groups, {push['requests']:,} requests, {result['clients']} clients) | "
              f"{push['seconds']:.1f} s (users {push['users_seconds']:.1f} s, groups {push['groups_seconds']:.1f} s) | — | |"]
    if "sustained" in result:
        s = result["sustained"]
        rss = s["rss"]
        first = rss[0][1]
        last = rss[-1][1]
        growth = max(b - a for a, b in zip(first, last)) if first and last else float("nan")
        mix = ", ".join(f"{k} {v:,}" for k, v in sorted(s["counts"].items()))
        lines += [f"| {s['seconds']:.0f} s sustained mixed load at {result['sustained_users']:,} users ({mix}) | "
                  f"{s['requests']:,} requests, {s['rps']:.0f} req/s, p50 {s['p50']:.0f} ms, p99 {s['p99']:.0f} ms, "
                  f"**{len(s['errors'])} errors** | no error | {verdict(not s['errors'])} |",
                  "| worker RSS across that minute | "
                  + "; ".join(f"{t} s: " + "/".join(f"{x:.0f}" for x in sizes_mb) + " MB" for t, sizes_mb in rss)
                  + f"; largest growth **{growth:+.1f} MB** | flat | {verdict(growth < 10)} |"]
    lines += ["", f"Measured {when}, Python {platform.python_version()}, {platform.machine()}; 1-minute load average "
              f"{result['load_before']:.1f} before and {result['load_after']:.1f} after the run (on {os.cpu_count()} "
              "CPUs: above 2 means other work competed for them). Ratios compare measurements taken minutes apart "
              "in one run; absolute figures move with the machine's load.", ""]
    section = "\n".join(lines)
    replace_section(path, HEADING, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="PostgreSQL; EMPTIED first")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--comparison-size", type=int, default=10_000,
                        help="the size at which Lobby is compared with the trivial endpoint and the peer")
    parser.add_argument("--peer-users", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--sustained", type=float, default=60)
    parser.add_argument("--acs-requests", type=int, default=120)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        parser.error("--database-url must be PostgreSQL (the seed uses generate_series)")
    result = run(args)
    result["comparison_size"], result["peer_users"] = args.comparison_size, args.peer_users
    print(json.dumps(result, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if not args.no_write:
        write_section(result, ROOT / "docs" / "performance.md")
        print("written to docs/performance.md")


if __name__ == "__main__":
    main()
