"""Lobby as a real server process (gunicorn) for tests that need one: browsers, several processes.

    with LiveServer(database_url, tmp_path) as server:
        requests.get(server.url + "/login")
        server.output()   # what the server printed (e.g. the set-up code)
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
# Every process of one deployment shares the key: sessions made by one are read by another.
LIVE_SECRET_KEY = "live-server-test-key-shared-by-all-processes"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, database_url: str, workdir: Path, *, workers: int = 2, port: int | None = None,
                 base_url: str | None = None, env: dict[str, str] | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = base_url or self.url
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"gunicorn-{self.port}.log"
        self.workers = workers
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "WERKZEUG_"))},
            "DATABASE_URL": database_url,
            "BASE_URL": self.base_url,
            "SECRET_KEY": LIVE_SECRET_KEY,
            "LOBBY_INSTANCE_PATH": str(self.workdir / "instance"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> "LiveServer":
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
             "--access-logfile", "-", "--error-logfile", "-", "--graceful-timeout", "2", "app:create_app()"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.output()}")
                try:
                    requests.get(self.url + "/login", timeout=5, allow_redirects=False)
                    return self
                except requests.RequestException:  # not listening yet, or workers still booting
                    time.sleep(0.2)
            raise RuntimeError(f"gunicorn did not answer within {timeout} s:\n{self.output()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
