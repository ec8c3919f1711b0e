"""The benchmark's hand-built HTTP client reads answers correctly, with and without keep-alive.

bench/scim_bench.py measures with it; if it misread an answer (or left bytes of one for the
next), the figures in docs/performance.md would be of something else."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.scim_bench import CONNECTIONS


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    close_after_each = False

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.connections.add(self.client_address)
        status = 404 if self.path.endswith("/missing") else 200
        payload = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                              "auth": self.headers.get("Authorization")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_after_each:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(params=[False, True], ids=["keep-alive", "close"])
def echo_server(request):
    handler = type("Handler", (_Echo,), {"close_after_each": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.connections = set()
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, request.param
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("kind", sorted(CONNECTIONS))
def test_each_client_reads_every_answer_whole(echo_server, kind):
    server, closes = echo_server
    connection = CONNECTIONS[kind](server.server_address[1], {"Authorization": "Bearer t0ken"})
    try:
        answers = [connection.request("GET", "/a?x=1"),
                   connection.request("POST", "/b", json.dumps({"userName": "ü@example.com"}).encode()),
                   connection.request("GET", "/missing"),
                   connection.request("PATCH", "/c", b"x" * 100_000)]
    finally:
        connection.close()
    assert [status for status, _ in answers] == [200, 200, 404, 200]
    bodies = [json.loads(data) for _, data in answers]
    assert [(b["method"], b["path"]) for b in bodies] == [("GET", "/a?x=1"), ("POST", "/b"), ("GET", "/missing"),
                                                          ("PATCH", "/c")]
    assert json.loads(bodies[1]["body"]) == {"userName": "ü@example.com"}
    assert len(bodies[3]["body"]) == 100_000
    assert {b["auth"] for b in bodies} == {"Bearer t0ken"}
    # A server that closes after each answer gets a connection per request; one that keeps
    # the connection open serves all four on one.
    assert len(server.connections) == (4 if closes else 1)
