"""`make run` as a developer uses it: start, open a case, Ctrl-C, start again, Ctrl-C.

Ctrl-C at a terminal sends SIGINT to the whole foreground process group (make and its child);
the test does exactly that. Every process the stack started carries a marker in its
environment, so survivors are found whatever their name.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from wiring.embedded import free_port
from wiring.settings import REPO_ROOT

pytestmark = pytest.mark.slow

MARK = "RECTIFY_TEST_STACK"


def survivors(mark: str, settle: float = 0.0) -> list[str]:
    """Processes carrying the stack's marker, after up to `settle` seconds for them to exit."""
    deadline = time.monotonic() + settle
    while True:
        found = _marked(mark)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def _marked(mark: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get(MARK) == mark:
                found.append(f"{proc.pid} {proc.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


class Stack:
    def __init__(self, tmp_path: Path, argv: list[str]) -> None:
        self.mark = uuid.uuid4().hex
        self.api_port = free_port()
        self.temporal_port = free_port()
        self.ui_port = free_port()
        self.log = tmp_path / "stack.log"
        self.argv = argv
        # Without the suite's keys: `make run` makes its own into DATA_DIR/keys.json.
        named = ("DATABASE_URL", "TEMPORAL_ADDRESS", "PAYLOAD_KEYS", "SUBJECT_HASH_KEY")
        self.env = {k: v for k, v in os.environ.items() if k not in named}
        self.env.update(
            {
                MARK: self.mark,
                "DATA_DIR": str(tmp_path / ".data"),
                "API_PORT": str(self.api_port),
                "EMBEDDED_POSTGRES_PORT": str(free_port()),
                "EMBEDDED_TEMPORAL_PORT": str(self.temporal_port),
                "EMBEDDED_TEMPORAL_UI_PORT": str(self.ui_port),
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 120) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"stack exited early:\n{self.output()}"
            try:
                healthy = httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and "Ctrl-C stops everything" in self.output():
                return
            time.sleep(0.5)
        raise AssertionError(f"no healthy API within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def ctrl_c(self, timeout: float = 60) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        return self.proc.wait(timeout)

    @property
    def dev_keys_file(self) -> Path:
        return Path(self.env["DATA_DIR"]) / "dev-keys.json"

    def headers(self, role: str = "admin") -> dict[str, str]:
        """The dev key `rectify run` printed for `role`, as a request header."""
        keys = json.loads(self.dev_keys_file.read_text())
        return {"Authorization": f"Bearer {keys[role]}"}

    def kill_leftovers(self) -> None:
        for line in survivors(self.mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


def post(stack: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{stack.url}{path}", json=body, headers=stack.headers(), timeout=30)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


async def started_input(address: str, workflow_id: str) -> dict[str, Any]:
    """The case's first payload as the server stores it (no codec), in the codec's wire form."""
    client = await Client.connect(address)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    [payload] = history.events[0].workflow_execution_started_event_attributes.input.payloads
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def decoded_in_the_web_ui(stack: Stack, workflow_id: str) -> str:
    """What the Web UI shows a signed-in supervisor: it was started with the API's codec, the
    sign-in page sets the cookie, the UI's decode call (with credentials) answers plain JSON."""
    ui = httpx.get(f"http://127.0.0.1:{stack.ui_port}/api/v1/settings", timeout=10).json()
    endpoint = ui["Codec"]["Endpoint"]
    assert endpoint == f"http://localhost:{stack.api_port}/codec", ui["Codec"]
    payload = asyncio.run(started_input(f"127.0.0.1:{stack.temporal_port}", workflow_id))
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"binary/encrypted"
    origin = f"http://localhost:{stack.ui_port}"
    with httpx.Client(base_url=stack.url, timeout=10) as browser:
        # make run's supervisor key is for office beijing: its admin key acts for every office.
        signed_in = browser.post("/codec/session", headers=stack.headers("admin"))
        assert signed_in.status_code == 200, signed_in.text
        answer = browser.post(
            "/codec/decode",
            json={"payloads": [payload]},
            headers={"Origin": origin, "X-Namespace": "default"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == origin
        return base64.b64decode(answer.json()["payloads"][0]["data"]).decode()


async def timer_pending(address: str, workflow_id: str) -> bool:
    client = await Client.connect(address)  # event types only: no payload is read
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds = [event.event_type for event in history.events]
    return (
        EventType.EVENT_TYPE_TIMER_STARTED in kinds
        and EventType.EVENT_TYPE_TIMER_FIRED not in kinds
    )


def test_make_run_keeps_cases_across_restarts_and_ctrl_c_leaves_no_orphan(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path, ["make", "--no-print-directory", "run"])
    try:
        stack.start()
        output = stack.output()
        for line in ("API docs", "/docs", "Temporal UI", "Ctrl-C stops everything"):
            assert line in output
        # One dev key per role, printed with the URLs, kept in a file only its owner reads.
        keys = json.loads(stack.dev_keys_file.read_text())
        assert set(keys) == {"enforcement-system", "officer", "supervisor", "admin"}
        assert "Dev API keys" in output and all(key in output for key in keys.values())
        assert stack.dev_keys_file.stat().st_mode & 0o777 == 0o600
        assert httpx.get(f"{stack.url}/cases/none", timeout=10).status_code == 401

        case_id = f"MR-{uuid.uuid4().hex[:8]}"
        post(
            stack,
            "/cases",
            {
                "case_id": case_id,
                "subject": {
                    "kind": "website",
                    "name": "Counterfeit Embassy Office",
                    "identifiers": {"domain": "fake-embassy.example.com"},
                },
                "violation_category": "counterfeit_site",
                "legal_basis": "CSL art. 61",
                "severity": "serious",
                "office": "national",
                "opened_by": "officer.li",
            },
        )
        post(
            stack,
            f"/cases/{case_id}/filing-decision",
            {"actor": "officer.li", "decision": "filed", "reasons": "monitoring evidence"},
        )
        post(
            stack,
            f"/cases/{case_id}/interview/schedule",
            {
                "actor": "officer.li",
                "scheduled_for": (datetime.now(UTC) + timedelta(seconds=2)).isoformat(),
                "place": "room 1",
                "reason": "counterfeit",
                "attendees_required": ["operator"],
            },
        )
        time.sleep(2.5)  # an interview is recorded once it has been held
        post(
            stack,
            f"/cases/{case_id}/interview/record",
            {
                "actor": "officer.li",
                "officials": ["li", "wang"],
                "attended_by": ["operator"],
                "summary": "held",
            },
        )
        ordered = post(
            stack,
            f"/cases/{case_id}/rectification-order",
            {
                "actor": "officer.li",
                "period_days": 30,
                "requirements": "take the site down",
            },
        )
        assert ordered["stage"] == "rectifying"
        case = httpx.get(f"{stack.url}/cases/{case_id}", headers=stack.headers(), timeout=10).json()
        due_at = case["state"]["deadlines"]["rectification"]["due_at"]
        assert "Counterfeit Embassy Office" in decoded_in_the_web_ui(stack, f"case:{case_id}")
        keys_file = Path(stack.env["DATA_DIR"]) / "keys.json"
        assert keys_file.stat().st_mode & 0o777 == 0o600
        assert Path(stack.env["DATA_DIR"]).stat().st_mode & 0o077 in (0, 0o010)  # 0700 (0710)

        # make re-raises the SIGINT after its child has ended: exit status -2.
        assert stack.ctrl_c() == -signal.SIGINT
        assert survivors(stack.mark, settle=30) == [], "processes outlived Ctrl-C"
        assert "Rectify stopped" in stack.output()

        stack.start()
        assert json.loads(stack.dev_keys_file.read_text()) == keys, "dev keys are reused"
        # The same codec keys again: the case's encrypted history still reads.
        case = httpx.get(f"{stack.url}/cases/{case_id}", headers=stack.headers(), timeout=10).json()
        assert (case["source"], case["stage"]) == ("workflow", "rectifying")
        assert case["state"]["deadlines"]["rectification"]["due_at"] == due_at
        address = f"127.0.0.1:{stack.temporal_port}"
        assert asyncio.run(timer_pending(address, f"case:{case_id}"))

        assert stack.ctrl_c() == -signal.SIGINT
        assert survivors(stack.mark, settle=30) == [], "processes outlived Ctrl-C"
    finally:
        stack.kill_leftovers()


def test_a_dying_child_stops_the_whole_stack(tmp_path: Path) -> None:
    stack = Stack(tmp_path, [str(Path(sys.executable).parent / "rectify"), "run"])
    try:
        stack.start()
        worker = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"]
            and p.info["cmdline"][-2:] == ["-m", "worker"]
            and p.environ().get(MARK) == stack.mark
        )
        worker.kill()
        assert stack.proc is not None
        assert stack.proc.wait(60) == 1
        assert "worker exited unexpectedly" in stack.output()
        assert survivors(stack.mark, settle=30) == []
    finally:
        stack.kill_leftovers()


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """Even `kill -9` of the supervisor leaves no orphan: children get a parent-death signal."""
    stack = Stack(tmp_path, [str(Path(sys.executable).parent / "rectify"), "run"])
    try:
        stack.start()
        assert stack.proc is not None
        assert len(survivors(stack.mark)) >= 4  # supervisor, postgres, temporal, worker, api
        stack.proc.kill()
        stack.proc.wait(10)
        assert survivors(stack.mark, settle=30) == []
    finally:
        stack.kill_leftovers()


async def test_named_servers_are_used_instead_of_embedded_ones(
    tmp_path: Path, pg_dsn: str, pool: asyncpg.Pool, dev_env: WorkflowEnvironment
) -> None:
    """DATABASE_URL and TEMPORAL_ADDRESS set: no embedded server starts, worker and API use them."""
    stack = Stack(tmp_path, [str(Path(sys.executable).parent / "rectify"), "run"])
    address = dev_env.client.service_client.config.target_host
    stack.env.update(DATABASE_URL=pg_dsn, TEMPORAL_ADDRESS=address)
    try:
        await asyncio.to_thread(stack.start)
        names = " ".join(survivors(stack.mark))
        assert "postgres" not in names and "temporal" not in names
        assert not (tmp_path / ".data" / "postgres").exists()
        case_id = f"EXT-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(
            post,
            stack,
            "/cases",
            {
                "case_id": case_id,
                "subject": {
                    "kind": "account",
                    "name": "Some account",
                    "identifiers": {"account_id": "weibo:123"},
                },
                "violation_category": "prohibited_information",
                "legal_basis": "CSL art. 61",
                "severity": "minor",
                "office": "national",
                "opened_by": "officer.li",
            },
        )
        # The case runs on the named Temporal server; the stack's worker registered it in the
        # named PostgreSQL.
        handle = dev_env.client.get_workflow_handle(f"case:{case_id}")
        assert (await handle.describe()).task_queue == "rectify-cases"
        stage = None
        for _ in range(100):
            stage = await pool.fetchval("SELECT stage FROM cases WHERE case_id = $1", case_id)
            if stage is not None:
                break
            await asyncio.sleep(0.1)
        assert stage == "filing"
        assert await asyncio.to_thread(stack.ctrl_c) == 0
        assert survivors(stack.mark, settle=30) == []
    finally:
        stack.kill_leftovers()
