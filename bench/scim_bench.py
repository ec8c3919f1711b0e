"""Benchmark: SCIM under gunicorn with 10,000 users, against a trivial Flask endpoint served the same way.

    .venv/bin/python bench/scim_bench.py [--database-url sqlite --database-url postgresql://postgres@127.0.0.1:5432/lobby_bench]
                                         [--users 10000] [--seconds 10] [--pairs 3] [--pushes 3] [--clients 4]
                                         [--client raw | --client http.client]
                                         [--worker-class sync --workers 4 | --worker-class gthread --workers 2 --threads 4]
                                         [--heading "## SCIM"] [--no-write]

The database named by --database-url is EMPTIED (its public schema is dropped), then
migrated and filled: 10,000 users, a group of 100 members and one of 5,000. Two gunicorn
servers run on 127.0.0.1 with the same settings: Lobby, and bench/trivial_app.py. By default
they run as the README's production command runs Lobby: 4 sync workers, one request per
connection. The client processes build their requests by hand on a bare socket (--client
raw, the default), so that they take as little as they can of the CPUs the servers need;
--client http.client sends the same requests through Python's http.client. Then:

1. lookup: ``GET /Users?filter=userName eq "<random user>"`` from --clients processes for
   --seconds, against ``GET /ping`` on the trivial app the same way (throughput, p50, p99),
   --pairs times alternately; the median pair's ratio is reported, with every pair's;
2. add-one-member: PATCH adding one user to the 100-member group, then to the 5,000-member
   group (sequential, medians), with and without ``excludedAttributes=members``;
3. initial push: 2,000 POST /Users, 50 POST /Groups and member adds in batches of 20, from
   --clients concurrent clients, wall-clock time; --pushes times (new users and groups each
   time), the median reported with every run's time;
4. each Lobby worker's resident memory after the last push.

Results go to docs/performance.md under "## SCIM" (or --heading).
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import migrated_app, replace_section  # noqa: E402

HEADING = "## SCIM"
PREFIX = "/api/scim/v2"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


# --- set-up ---------------------------------------------------------------------------------

def prepare_database(url: str, users: int, folder: str) -> dict:
    from sqlalchemy import insert

    from models import Group, Membership, ScimToken, User, UserEmail, db, new_id, utcnow

    app = migrated_app(url, folder)
    with app.app_context():
        now = utcnow()
        user_rows, email_rows = [], []
        for index in range(users):
            user_id = new_id()
            name = f"user{index:05d}@example.com"
            user_rows.append({"id": user_id, "user_name": name, "user_name_key": name, "given_name": "User",
                              "family_name": f"{index:05d}", "display_name": f"User {index:05d}", "extra": {},
                              "active": True, "is_admin": False, "source": "scim", "created_at": now,
                              "updated_at": now, "version": 1, "session_epoch": 0})
            email_rows.append({"user_id": user_id, "value": name, "value_key": name, "type": "work",
                               "primary": True, "position": 0})
        db.session.execute(insert(User), user_rows)
        db.session.execute(insert(UserEmail), email_rows)
        groups = {}
        for name, size in (("Hundred", 100), ("Five thousand", 5000)):
            group = Group(display_name=name, source="scim")
            db.session.add(group)
            db.session.flush()
            members = user_rows[:size] if size == 100 else user_rows[100:100 + size]
            db.session.execute(insert(Membership), [{"group_id": group.id, "user_id": u["id"], "source": "scim",
                                                     "created_at": now} for u in members])
            groups[name] = group.id
        _row, secret = ScimToken.issue("bench", created_by="bench")
        db.session.commit()
        spare = [u["id"] for u in user_rows[5100:]]
        db.engine.dispose()
    return {"token": secret, "groups": groups, "spare_users": spare, "user_names": [u["user_name"] for u in user_rows]}


def durable_commit_ms(url: str) -> float:
    """Median time of one INSERT + durable COMMIT on the bench database: the disk's fsync cost,
    which every created user pays once (its row must survive a crash)."""
    from sqlalchemy import create_engine, text

    from config import normalise_database_url
    engine = create_engine(normalise_database_url(url))
    timings = []
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS scim_bench_probe (x INTEGER)"))
        conn.commit()
        for _ in range(30):
            started = time.perf_counter()
            conn.execute(text("INSERT INTO scim_bench_probe VALUES (1)"))
            conn.commit()
            timings.append((time.perf_counter() - started) * 1000)
        conn.execute(text("DROP TABLE scim_bench_probe"))
        conn.commit()
    engine.dispose()
    return statistics.median(timings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(target: str, port: int, workers: int, threads: int, env: dict,
                   worker_class: str = "gthread") -> subprocess.Popen:
    command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
               "--worker-class", worker_class, "--log-level", "warning", target]
    if worker_class == "gthread":
        command[-3:-3] = ["--threads", str(threads), "--keep-alive", "30"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"gunicorn {target} did not start")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def worker_rss_mb(master_pid: int) -> list[float]:
    children = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


# --- load -----------------------------------------------------------------------------------

class RawConnection:
    """HTTP/1.1 over a bare socket: the request's bytes are built by hand and only the status,
    Content-Length and Connection headers of the answer are read.

    The clients share the two CPUs with the servers they measure; ``http.client`` spends about
    twice this one's CPU per request (header objects, e-mail-style header parsing), time the
    servers then lack. A real IdP sends from elsewhere, so the cheaper client is the truer one.
    A server that says ``Connection: close`` (a sync worker) gets a new connection per request."""

    def __init__(self, port: int, headers: dict):
        self.port = port
        self.headers = "".join(f"{name}: {value}\r\n" for name, value in
                               {"Host": f"127.0.0.1:{port}", **headers}.items()).encode()
        self.sock: socket.socket | None = None
        self.pending = b""

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.pending = b""
        length = b"Content-Length: %d\r\n" % len(body) if body or method in ("POST", "PUT", "PATCH") else b""
        self.sock.sendall(b"%s %s HTTP/1.1\r\n%s%s\r\n%s" % (method.encode(), path.encode(), self.headers,
                                                                length, body))
        data = self.pending
        while b"\r\n\r\n" not in data:
            data += self._receive()
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status, size, close = int(lines[0][9:12]), None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                size = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        if size is None:
            raise RuntimeError(f"{method} {path}: the answer has no Content-Length")
        while len(rest) < size:
            rest += self._receive()
        self.pending = rest[size:]
        if close:
            self.close()
        return status, rest[:size]

    def _receive(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-answer")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class StdlibConnection:
    """The same requests through ``http.client`` (``--client http.client``), for comparison."""

    def __init__(self, port: int, headers: dict):
        self.port, self.headers = port, headers
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        self.connection.request(method, path, body=body or None, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return response.status, data

    def close(self) -> None:
        self.connection.close()


CONNECTIONS = {"raw": RawConnection, "http.client": StdlibConnection}
CLIENT_WORDS = {"raw": "requests built by hand on a bare socket, the least CPU a client can take from the servers",
                "http.client": "requests sent through Python's http.client"}


def _hammer(args) -> list[float]:
    """One client process: requests until the deadline (keep-alive where the server keeps the
    connection open); returns latencies (ms)."""
    port, paths, headers, deadline, seed, kind = args
    rng = random.Random(seed)
    connection = CONNECTIONS[kind](port, headers)
    latencies = []
    while time.time() < deadline:
        path = rng.choice(paths)
        started = time.perf_counter()
        status, _data = connection.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        latencies.append((time.perf_counter() - started) * 1000)
    connection.close()
    return latencies


def throughput(port: int, paths: list[str], headers: dict, seconds: float, clients: int, kind: str) -> dict:
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        # Warm up every worker first, from all clients at once (a worker may still be importing
        # the app when the port opens; a single client reaches only one worker).
        warm_until = time.time() + 2.0
        pool.map(_hammer, [(port, paths, headers, warm_until, -1 - seed, kind) for seed in range(clients)])
        deadline = time.time() + seconds
        started = time.time()
        parts = pool.map(_hammer, [(port, paths, headers, deadline, seed, kind) for seed in range(clients)])
        elapsed = time.time() - started
    latencies = sorted(x for part in parts for x in part)
    return {"requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)]}


class Client:
    def __init__(self, port: int, token: str, kind: str):
        self.connection = CONNECTIONS[kind](port, {
            "Authorization": f"Bearer {token}", "Content-Type": "application/scim+json",
            "Accept": "application/scim+json"})

    def send(self, method: str, path: str, body=None) -> tuple[int, bytes]:
        return self.connection.request(method, PREFIX + path, json.dumps(body).encode() if body is not None else b"")


def add_member_timings(port: int, token: str, group_id: str, users: list[str], query: str, kind: str) -> float:
    client = Client(port, token, kind)
    timings = []
    for index, user_id in enumerate(users):
        body = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}]}
        started = time.perf_counter()
        status, data = client.send("PATCH", f"/Groups/{group_id}{query}", body)
        if status != 200:
            raise RuntimeError(f"PATCH member: {status} {data[:200]!r}")
        if index >= 5:  # the first few warm the worker up
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _push_users(args) -> list[str]:
    port, token, names, kind = args
    client = Client(port, token, kind)
    ids = []
    for name in names:
        status, data = client.send("POST", "/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": True,
            "name": {"givenName": "Pushed", "familyName": name.split("@")[0]},
            "emails": [{"primary": True, "value": name, "type": "work"}], "externalId": name.split("@")[0]})
        if status != 201:
            raise RuntimeError(f"POST /Users: {status} {data[:200]!r}")
        ids.append(json.loads(data)["id"])
    return ids


def _push_groups(args) -> int:
    port, token, groups, kind = args
    client = Client(port, token, kind)
    requests_made = 0
    for name, member_ids in groups:
        status, data = client.send("POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                                       "displayName": name, "members": []})
        if status != 201:
            raise RuntimeError(f"POST /Groups: {status} {data[:200]!r}")
        group_id = json.loads(data)["id"]
        requests_made += 1
        for start in range(0, len(member_ids), 20):
            batch = member_ids[start:start + 20]
            status, data = client.send("PATCH", f"/Groups/{group_id}", {"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": m} for m in batch]}]})
            if status != 200:
                raise RuntimeError(f"PATCH /Groups: {status} {data[:200]!r}")
            requests_made += 1
    return requests_made


def initial_push(port: int, token: str, clients: int, kind: str, users: int = 2000, groups: int = 50) -> dict:
    run = uuid.uuid4().hex[:6]
    names = [f"push-{run}-{i:04d}@example.com" for i in range(users)]
    chunks = [names[i::clients] for i in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        started = time.perf_counter()
        ids = [i for part in pool.map(_push_users, [(port, token, chunk, kind) for chunk in chunks]) for i in part]
        users_done = time.perf_counter()
        plan = [(f"Push {run} {g:02d}", ids[g::groups]) for g in range(groups)]
        group_chunks = [plan[i::clients] for i in range(clients)]
        member_requests = sum(pool.map(_push_groups, [(port, token, chunk, kind) for chunk in group_chunks]))
        finished = time.perf_counter()
    return {"seconds": finished - started, "users_seconds": users_done - started,
            "groups_seconds": finished - users_done, "requests": users + member_requests}


# --- the run ----------------------------------------------------------------------------------

def run(args) -> dict:
    folder = tempfile.mkdtemp(prefix="lobby-scim-bench-")
    url = args.url or f"sqlite:///{folder}/bench.db"
    print(f"preparing {args.users} users on {url.split('@')[-1]} ...", flush=True)
    data = prepare_database(url, args.users, folder)
    env = dict(os.environ, DATABASE_URL=url, BASE_URL="http://127.0.0.1", SECRET_KEY="bench",
               LOBBY_INSTANCE_PATH=folder, SCIM_RATE_LIMIT_PER_MINUTE="100000000")
    lobby_port, trivial_port = free_port(), free_port()
    lobby = start_gunicorn("app:create_app()", lobby_port, args.workers, args.threads, env, args.worker_class)
    trivial = start_gunicorn("bench.trivial_app:app", trivial_port, args.workers, args.threads, env, args.worker_class)
    result = {"backend": "PostgreSQL" if url.startswith("postgres") else "SQLite", "users": args.users,
              "worker_class": args.worker_class, "workers": args.workers, "threads": args.threads,
              "clients": args.clients, "client": args.client, "seconds": args.seconds,
              "pairs": args.pairs,
              # Other work on the machine skews every figure; say how busy it was.
              "load_before": os.getloadavg()[0]}
    try:
        print("lookup ...", flush=True)
        rng = random.Random(1)
        paths = [f"{PREFIX}/Users?filter=" + quote(f'userName eq "{name}"')
                 for name in rng.sample(data["user_names"], 500)]
        headers = {"Authorization": f"Bearer {data['token']}", "Accept": "application/scim+json"}
        # Alternating pairs: the machine's speed drifts between measurements (and which worker
        # each keep-alive client lands on is left to chance), so one pair alone can mislead.
        pairs = []
        for _ in range(args.pairs):
            pairs.append((throughput(lobby_port, paths, headers, args.seconds, args.clients, args.client),
                          throughput(trivial_port, ["/ping"], {}, args.seconds, args.clients, args.client)))
        ratios = sorted(lookup["rps"] / trivial["rps"] for lookup, trivial in pairs)
        result["ratios"] = [lookup["rps"] / trivial["rps"] for lookup, trivial in pairs]
        result["ratio"] = ratios[len(ratios) // 2]
        result["lookup"], result["trivial"] = min(
            pairs, key=lambda pair: abs(pair[0]["rps"] / pair[1]["rps"] - result["ratio"]))

        print("add one member ...", flush=True)
        spare = data["spare_users"]
        for label, query in (("excluded", "?excludedAttributes=members"), ("full", "")):
            small = add_member_timings(lobby_port, data["token"], data["groups"]["Hundred"], spare[:105], query, args.client)
            large = add_member_timings(lobby_port, data["token"], data["groups"]["Five thousand"], spare[:105], query, args.client)
            result[f"add_{label}"] = {"at_100": small, "at_5000": large}
            spare = spare[105:]
            # the next pass adds other users
            data["spare_users"] = spare

        print("initial push ...", flush=True)
        # One push is one sample of a noisy machine: several, each with its own users and groups.
        pushes = [initial_push(lobby_port, data["token"], args.clients, args.client) for _ in range(args.pushes)]
        result["pushes"] = [push["seconds"] for push in pushes]
        result["push"] = sorted(pushes, key=lambda push: push["seconds"])[len(pushes) // 2]
        result["rss"] = worker_rss_mb(lobby.pid)
        result["durable_commit_ms"] = durable_commit_ms(url)
        result["load_after"] = os.getloadavg()[0]
    finally:
        stop(lobby)
        stop(trivial)
    return result


def serving(r: dict) -> str:
    """How gunicorn ran, in words."""
    if r.get("worker_class", "gthread") == "sync":
        return (f"{r['workers']} sync workers (one request per connection: the README's production command, "
                "`gunicorn --workers 4`)")
    return f"{r['workers']} workers × {r['threads']} threads (gthread, keep-alive)"


def write_section(results: list[dict], path: Path, heading: str = HEADING) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    first = results[0]
    backends = [r["backend"] for r in results]

    def row(label: str, cell, target: str) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in results) + f" | {target} |"

    def lookup_cell(r):
        ratios = r.get("ratios") or [r["lookup"]["rps"] / r["trivial"]["rps"]]
        spread = f"; pairs {', '.join(f'{x:.0%}' for x in ratios)}" if len(ratios) > 1 else ""
        return (f"**{r['lookup']['rps']:.0f} req/s** (**{r.get('ratio', ratios[0]):.0%}** of trivial{spread}), "
                f"p50 {r['lookup']['p50']:.1f} ms, p99 {r['lookup']['p99']:.1f} ms")

    def add_cell(key, bold):
        def cell(r):
            small, large = r[key]["at_100"], r[key]["at_5000"]
            ratio = f"{large / small:.2f}×"
            return f"{small:.1f} ms at 100, {large:.1f} ms at 5,000 ({'**' + ratio + '**' if bold else ratio})"
        return cell

    def push_cell(r):
        push = r["push"]
        # What the machine allows: the same number of requests at the trivial endpoint's rate.
        floor = push["requests"] / r["trivial"]["rps"]
        runs = r.get("pushes") or [push["seconds"]]
        label = f"median of {len(runs)} (runs {', '.join(f'{x:.2f}' for x in runs)} s): " if len(runs) > 1 else ""
        return (f"{label}**{push['seconds']:.2f} s** (users {push['users_seconds']:.2f} s, "
                f"groups {push['groups_seconds']:.2f} s); the trivial endpoint would answer as many "
                f"requests in {floor:.2f} s")

    section = "\n".join([
        heading,
        "",
        f"`bench/scim_bench.py` on {' and '.join(backends)} with {first['users']:,} users: gunicorn on 127.0.0.1, "
        f"{serving(first)}, driven by "
        f"{first['clients']} client processes on the same {os.cpu_count()}-CPU machine "
        f"({CLIENT_WORDS[first.get('client', 'http.client')]}) for {first['seconds']} s "
        "per measurement, after 2 s of warm-up from every client. The yardstick is `bench/trivial_app.py` (one "
        "route returning a small JSON object) under the same gunicorn settings, measured right after the lookup, "
        f"in {first.get('pairs', 1)} alternating lookup/trivial pairs: the lookup row gives the median pair's ratio "
        "(its figures shown) and every pair's ratio. "
        "Every SCIM request does its full work: token check, SCIM-enabled check, rate-limit check, the query, "
        "and its request-log row (written in batches, `SCIM_LOG_FLUSH_SECONDS` = 1 s, see docs/scim.md).",
        "",
        "| measurement | " + " | ".join(backends) + " | target |",
        "| --- | " + " | ".join("---" for _ in results) + " | --- |",
        row("trivial Flask JSON endpoint", lambda r: f"{r['trivial']['rps']:.0f} req/s, p50 {r['trivial']['p50']:.1f} ms, "
            f"p99 {r['trivial']['p99']:.1f} ms", "—"),
        row('`GET /Users?filter=userName eq "…"`', lookup_cell, "≥ 40% of trivial"),
        row("add one member, `?excludedAttributes=members` (median)", add_cell("add_excluded", True), "≤ 1.5×"),
        row("add one member, full response listing every member (median)", add_cell("add_full", False), "—"),
        row(f"initial push: 2,000 POST /Users, 50 POST /Groups, members in batches of 20 "
            f"({first['push']['requests']:,} requests)", push_cell, "< 2 s"),
        row("resident memory per Lobby worker after the last push", lambda r: ", ".join(f"{x:.0f} MB" for x in r["rss"]),
            "< 150 MB"),
        row("one durable INSERT + COMMIT (median of 30)", lambda r: f"{r.get('durable_commit_ms', 0):.2f} ms", "—"),
        "",
        *([
            "Creating a user commits once, durably (it must survive a crash); request bookkeeping (the log rows "
            "and the rate-limit count) is written in batches and, on PostgreSQL, without waiting for the disk.",
            "",
            "Adding a member inserts one membership row (`INSERT … ON CONFLICT DO NOTHING`) and bumps the group's "
            "version; it never reads or rewrites the member list, so its cost does not depend on the group's size. "
            "A PATCH answers 200 with the resource, as Okta expects; when the client does not exclude `members`, "
            "that answer lists every member, and producing a 5,000-member list is what the second add-member row "
            "measures.",
            "",
        ] if heading == HEADING else [
            f"The same measurements as in \"{HEADING[3:]}\" above, with gunicorn run another way.",
            "",
        ]),
        f"Measured {when}, Python {platform.python_version()}, {platform.machine()}; 1-minute load average "
        + "; ".join(f"{r['backend']}: {r.get('load_before', 0):.1f} before, {r.get('load_after', 0):.1f} after"
                    for r in results)
        + f" (on {os.cpu_count()} CPUs; the bench itself keeps them busy, so above {os.cpu_count()} means other "
        "work competed).",
        "",
    ])
    replace_section(path, heading, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", action="append", default=None,
                        help="EMPTIED first; repeat for several databases; 'sqlite' is SQLite in a temporary folder "
                             "(the default)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--pairs", type=int, default=3, help="alternating lookup/trivial measurements")
    parser.add_argument("--pushes", type=int, default=3, help="initial pushes, each with new users and groups")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--client", choices=sorted(CONNECTIONS), default="raw",
                        help="how the client processes speak HTTP: hand-built requests on a bare socket (the "
                             "default; the least CPU taken from the servers) or Python's http.client")
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default="sync",
                        help="gunicorn's worker class, for Lobby and the trivial endpoint alike")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (gthread only)")
    parser.add_argument("--heading", default=HEADING, help="the section of docs/performance.md to write")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args()
    results = []
    for url in args.database_url or ["sqlite"]:
        args.url = None if url == "sqlite" else url
        results.append(run(args))
        print(json.dumps(results[-1], indent=2))
    if not args.no_write:
        write_section(results, ROOT / "docs" / "performance.md", args.heading)
        print("written to docs/performance.md")


if __name__ == "__main__":
    main()
