"""Schemathesis against docs/openapi-scim.yaml, over real HTTP to Lobby under gunicorn.

Runs the ``schemathesis`` command (its pytest plugin would fight ``filterwarnings = error``
and cannot use a live server per database) with a fixed seed in deterministic mode and a
small example count, so it stays bounded: every documented operation gets schema-driven
requests plus stateful sequences (POST then GET/PUT/PATCH/DELETE by the returned id). The
"coverage" phase (boundary and schema-violating values for every parameter) also passes but
takes three minutes per database here, so it is left to a manual run (see docs/performance.md
is not the place: README "Benchmarks" says how).

Every schemathesis check runs (no 5xx; status codes, content types, headers and bodies as
documented; schema-violating requests refused) except ``positive_data_acceptance``: a
request can match the schema and still be refused with a correct 400, because a SCIM
filter's grammar, a PATCH path's meaning, whether a member id exists, NUL characters and
If-Match versions are beyond what JSON Schema can say. /Bulk is excluded because it
answers 501 by design (ServiceProviderConfig says so); the hypothesis suite in
test_scim_fuzz.py checks the shape of every error body.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..live import LiveServer
from ..scim.conftest import issue_token

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_schemathesis_finds_no_server_error_and_no_departure_from_the_description(app, database_url, make_app, tmp_path):
    token = issue_token(app, "schemathesis")
    make_app()  # the wipe afterwards
    with LiveServer(database_url, tmp_path / "st", env={"SCIM_RATE_LIMIT_PER_MINUTE": "1000000",
                                                        "GUNICORN_CMD_ARGS": "--worker-class gthread --threads 4"}) as server:
        result = subprocess.run(
            [str(SCHEMATHESIS), "run", str(ROOT / "docs" / "openapi-scim.yaml"), "--url", server.url + "/api/scim/v2",
             "-H", f"Authorization: Bearer {token}", "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--exclude-path", "/Bulk",
             "--max-examples", "5", "--generation-deterministic", "--phases", "fuzzing,stateful",
             "--request-timeout", "30", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
        log = server.output()
    # The summary counts the operations it tested: a run that reached nothing proves nothing.
    assert "Tested: 17" in result.stdout or "Tested: 16" in result.stdout, result.stdout[-3000:]
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Traceback" not in log, log[-3000:]
