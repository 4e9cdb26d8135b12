"""Schemathesis against a live server: every operation, with and without a token, gives no 5xx and no response off the schema.

It runs schemathesis' own command line (coverage, fuzzing and stateful phases) in a
subprocess against /api/openapi.json, derandomized and with a fixed example count, so
a run is repeatable and bounded. The counts it ran are printed (`pytest -s`) and kept in
its JSON report under the test's tmp_path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Api, ServerProcess

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = 10
RUN_TIMEOUT_S = 150

# Each run is bounded by RUN_TIMEOUT_S; the with-token test makes two on a shared 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2 * RUN_TIMEOUT_S + 60)]


def _schemathesis(server: ServerProcess, workdir: Path, name: str, *args: str) -> dict[str, Any]:
    """Run schemathesis once; fail with its output on any failure or error; return its JSON report."""
    report = workdir / f"{name}.json"
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.url}/api/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",  # derandomized, and no example database
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *args,
    ]
    # cwd: schemathesis and hypothesis may write their own files where they run.
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert report.exists(), proc.stdout[-4000:] + proc.stderr[-4000:]
    data: dict[str, Any] = json.loads(report.read_text())
    ok = proc.returncode == 0 and not data["failures"] and not data["errors"]
    assert ok, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert data["operations"]["errored"] == 0 and data["test_cases"]["with_failures"] == 0
    print(
        f"schemathesis {name}: {data['operations']['tested']} operations, "
        f"{data['test_cases']['generated']} test cases, {data['running_time']:.1f} s"
    )
    return data


def _token(api: Api) -> str:
    return api.new_user("st").token


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[ServerProcess]:
    """A server of its own: the runs create many rooms and users, which no other test should page through."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("schemathesis"),
        {
            "GREENROOM_REGISTER_MAX_PER_ADDRESS": "100000",
            "GREENROOM_ROOM_CREATE_MAX": "100000",
            "GREENROOM_MAX_ROOMS_OWNED": "100000",
        },
        database=database,
    ).start()
    yield proc
    proc.stop()


def test_every_operation_with_a_token(target: ServerProcess, tmp_path: Path) -> None:
    """With a valid token, every operation (logout last, on a token of its own) keeps to the schema."""
    api = Api(target)
    data = _schemathesis(
        target,
        tmp_path,
        "with-token",
        "--header",
        f"Authorization: Bearer {_token(api)}",
        "--exclude-operation-id",
        "logout",
    )
    logout = _schemathesis(
        target,
        tmp_path,
        "logout",
        "--header",
        f"Authorization: Bearer {_token(api)}",
        "--include-operation-id",
        "logout",
    )
    total = data["operations"]["total"]
    assert data["operations"]["tested"] + logout["operations"]["tested"] == total


def test_every_operation_without_a_token(target: ServerProcess, tmp_path: Path) -> None:
    """Without a token, every operation answers as documented: 401 where auth is needed, never a 5xx.

    The fuzzing phase only: the auth check comes before any input is read, so the
    coverage phase's boundary values would all meet the same 401 (register and login,
    the public routes, get them in the run with a token).
    """
    data = _schemathesis(target, tmp_path, "without-token", "--phases", "fuzzing")
    assert data["operations"]["tested"] == data["operations"]["total"]
