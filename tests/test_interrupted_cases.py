"""A case whose run ended without an outcome (terminated, failed…) is never reopened silently:
commands answer 409 naming the case and how its run ended, the register shows it, and only an
operator's `rectify cases reopen|close` carries it on or closes it. Real Temporal dev server,
real worker, real PostgreSQL; the CLI runs in-process (its `main` in a thread)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ops.cli import main
from tests.conftest import new_case_id
from tests.test_api_history import case_body
from tests.test_api_integration import api_client

pytestmark = pytest.mark.integration

FILING = {"actor": "officer.chen", "decision": "filed", "reasons": "Monitoring evidence."}
INTERVIEW = {
    "actor": "officer.chen",
    "scheduled_for": "2099-01-05T09:30:00+08:00",
    "place": "Shanghai office",
    "reason": "unlawful collection of personal information",
    "attendees_required": ["person in charge"],
}


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment,
    dev_worker: Worker,
    pg_dsn: str,
    pool: asyncpg.Pool,
    task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[httpx.AsyncClient]:
    # What `rectify cases` connects to (it reads the same settings the other commands do).
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    async with api_client(dev_env, pg_dsn, task_queue) as client:
        yield client


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")  # the API's and worker's logs


async def rectify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `rectify ARGV`: its exit code, and what it printed (less the logs of the API and the
    worker running in this process)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = (
        "".join(line for line in text.splitlines(keepends=True) if not LOG_LINE.match(line))
        for text in capsys.readouterr()
    )
    return code, out, err


async def post(api: httpx.AsyncClient, path: str, body: dict[str, Any], status: int) -> Any:
    response = await api.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


async def opened_and_filed(api: httpx.AsyncClient, body: dict[str, Any] | None = None) -> str:
    body = body or case_body(new_case_id())
    case_id = body["case_id"]
    await post(api, "/cases", body, 201)
    await post(api, f"/cases/{case_id}/filing-decision", FILING, 200)
    return str(case_id)


async def terminate(dev_env: WorkflowEnvironment, case_id: str, reason: str) -> str:
    handle = dev_env.client.get_workflow_handle(f"case:{case_id}")
    run_id = (await handle.describe()).run_id
    await handle.terminate(reason=reason)
    return run_id


async def register_row(pool: asyncpg.Pool, case_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    assert row is not None
    return row


async def interrupted_in_register(pool: asyncpg.Pool, case_id: str) -> dict[str, Any]:
    for _ in range(100):  # the API starts a workflow that marks it: not at once
        value = (await register_row(pool, case_id))["interrupted"]
        if value is not None:
            return dict(value)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the register never showed case {case_id} interrupted")


async def audit(pool: asyncpg.Pool, case_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT seq, action, actor, payload FROM case_audit WHERE case_id = $1 ORDER BY seq",
        case_id,
    )


async def test_a_command_for_a_terminated_case_is_409_and_the_register_shows_it(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    body = case_body(new_case_id())
    case_id = await opened_and_filed(api, body)
    run_id = await terminate(dev_env, case_id, "worker stuck: test")

    response = await api.post(f"/cases/{case_id}/interview/schedule", json=INTERVIEW)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/case-interrupted")
    assert (problem["case_id"], problem["run_status"], problem["run_id"]) == (
        case_id,
        "terminated",
        run_id,
    )
    assert problem["status"] == 409
    detail = problem["detail"]
    assert detail.startswith(f"case {case_id} is terminated (its run ended ")
    assert f"run id {run_id}" in detail and "worker stuck: test" in detail
    assert f"rectify cases reopen {case_id} --reason" in detail
    assert f"rectify cases close {case_id} --reason" in detail

    marked = await interrupted_in_register(pool, case_id)
    assert (marked["status"], marked["run_id"]) == ("terminated", run_id)
    assert marked["detected_at"] and marked["ended_at"] and "worker stuck" in marked["detail"]

    # Found again: the same answer, and still one marking (one workflow per run).
    again = await api.post(f"/cases/{case_id}/interview/schedule", json=INTERVIEW)
    assert again.status_code == 409 and again.json()["run_id"] == run_id
    mark = dev_env.client.get_workflow_handle(f"interrupted:{case_id}:{run_id}")
    assert (await mark.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert (await register_row(pool, case_id))["interrupted"]["detected_at"] == (
        marked["detected_at"]
    )

    # The register's list shows it too; nothing was written to the audit trail.
    package = body["subject"]["identifiers"]["app_package"]
    listed = await api.get("/cases", params={"subject": package})
    assert listed.status_code == 200, listed.text
    [item] = [i for i in listed.json()["items"] if i["case_id"] == case_id]
    assert (item["interrupted"]["status"], item["interrupted"]["run_id"]) == ("terminated", run_id)
    assert [r["action"] for r in await audit(pool, case_id)] == ["case_opened", "filed"]


async def test_reopen_carries_the_case_on_from_the_register_in_a_new_run(
    api: httpx.AsyncClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case_id = await opened_and_filed(api)
    old_run = await terminate(dev_env, case_id, "bad deploy: test")
    await post(api, f"/cases/{case_id}/interview/schedule", INTERVIEW, 409)
    await interrupted_in_register(pool, case_id)

    code, out, err = await rectify(
        capsys,
        "cases",
        "reopen",
        case_id,
        "--reason",
        "worker fixed; carry on",
        "--actor",
        "ops.wang",
    )
    assert code == 0, err
    assert out.startswith(f"case {case_id} reopened by ops.wang: step 3 case_reopened, run 2")
    assert "stage filed" in out

    row = await register_row(pool, case_id)
    assert row["interrupted"] is None and row["last_seq"] == 3 and row["stage"] == "filed"
    trail = await audit(pool, case_id)
    assert [(r["seq"], r["action"]) for r in trail] == [
        (1, "case_opened"),
        (2, "filed"),
        (3, "case_reopened"),
    ]
    reopened = trail[2]
    assert reopened["actor"] == "ops.wang"
    assert reopened["payload"]["reason"] == "worker fixed; carry on"
    assert reopened["payload"]["interrupted"] == "terminated"

    # The new run has the carried state: the next command is taken, as step 4.
    receipt = await post(api, f"/cases/{case_id}/interview/schedule", INTERVIEW, 200)
    assert (receipt["step"], receipt["stage"]) == (4, "interview_scheduled")
    seqs = [r["seq"] for r in await audit(pool, case_id)]
    assert seqs == [1, 2, 3, 4]
    new_run = (await dev_env.client.get_workflow_handle(f"case:{case_id}").describe()).run_id
    assert new_run != old_run

    # Its history shows both runs as one: the terminated one, then the operator's.
    history = await api.get(f"/cases/{case_id}/history")
    assert history.status_code == 200, history.text
    body = history.json()
    assert body["run_ids"] == [old_run, new_run]
    assert [(r["run"], r["begins"], r["status"]) for r in body["runs"]] == [
        (1, "opened", "terminated"),
        (2, "reopened", "running"),
    ]
    starts = [e for e in body["timeline"] if e["step"] == "workflow_started"]
    assert [(e["run_id"], e["who"], e["data"]["begins"]) for e in starts] == [
        (old_run, "officer.chen", "opened"),
        (new_run, "ops.wang", "reopened"),
    ]
    assert "worker fixed; carry on" in starts[1]["detail"]
    audited = [e["seq"] for e in body["timeline"] if e["kind"] == "audit"]
    assert audited == [1, 2, 3, 4]

    # Running again: nothing to reopen.
    code, _, err = await rectify(
        capsys, "cases", "reopen", case_id, "--reason", "again", "--actor", "ops.wang"
    )
    assert code == 2
    assert f"case {case_id} is running (run id {new_run})" in err


async def test_close_closes_a_terminated_case_with_the_operators_outcome(
    api: httpx.AsyncClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case_id = await opened_and_filed(api)
    await terminate(dev_env, case_id, "subject dissolved: test")

    code, out, err = await rectify(
        capsys, "cases", "close", case_id, "--reason", "subject dissolved", "--actor", "ops.li"
    )
    assert code == 0, err
    assert out.startswith(f"case {case_id} closed by ops.li: outcome closed_by_operator (step 3")

    row = await register_row(pool, case_id)
    assert (row["stage"], row["outcome"], row["interrupted"]) == (
        "closed",
        "closed_by_operator",
        None,
    )
    assert row["closed_at"] is not None
    last = (await audit(pool, case_id))[-1]
    assert (last["seq"], last["action"], last["actor"]) == (3, "case_closed_by_operator", "ops.li")
    assert last["payload"]["reason"] == "subject dissolved"
    result = await dev_env.client.get_workflow_handle(f"case:{case_id}").result()
    assert result["outcome"] == "closed_by_operator"

    # Closed with an outcome: commands keep their 409, and the CLI refuses both decisions.
    refused = await api.post(f"/cases/{case_id}/interview/schedule", json=INTERVIEW)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == f"case {case_id} is closed (outcome: closed_by_operator)"
    for action in ("reopen", "close"):
        code, _, err = await rectify(
            capsys, "cases", action, case_id, "--reason", "again", "--actor", "ops.li"
        )
        assert code == 2
        assert f"case {case_id} is closed (outcome: closed_by_operator)" in err


async def test_reopen_without_a_state_in_the_register_refuses_and_close_still_works(
    api: httpx.AsyncClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A case whose steps were written before the register kept the state (migration 0007)."""
    case_id = await opened_and_filed(api)
    await terminate(dev_env, case_id, "test")
    await pool.execute("UPDATE cases SET state = NULL WHERE case_id = $1", case_id)

    code, _, err = await rectify(
        capsys, "cases", "reopen", case_id, "--reason", "carry on", "--actor", "ops.li"
    )
    assert code == 2
    assert "nothing to reopen from" in err and f"rectify cases close {case_id}" in err
    assert (await register_row(pool, case_id))["last_seq"] == 2  # nothing started

    code, out, err = await rectify(
        capsys, "cases", "close", case_id, "--reason", "cannot carry on", "--actor", "ops.li"
    )
    assert code == 0, err
    assert "outcome closed_by_operator" in out
    assert [r["action"] for r in await audit(pool, case_id)] == [
        "case_opened",
        "filed",
        "case_closed_by_operator",
    ]


async def test_the_cli_refuses_an_unknown_case_and_a_running_one(
    api: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = new_case_id()
    code, out, err = await rectify(
        capsys, "cases", "reopen", missing, "--reason", "r", "--actor", "ops.li"
    )
    assert (code, out) == (2, "")
    assert err.strip() == f"rectify cases reopen: no case {missing} in the register"

    case_id = await opened_and_filed(api)
    code, _, err = await rectify(
        capsys, "cases", "close", case_id, "--reason", "r", "--actor", "ops.li"
    )
    assert code == 2
    assert f"case {case_id} is running" in err and "nothing to reopen or close" in err


async def test_a_case_that_never_opened_is_not_interrupted(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    """Its opening was refused (unknown category): a command finds no case (404), not 409."""
    case_id = new_case_id()
    await post(api, "/cases", case_body(case_id) | {"violation_category": "no_such_thing"}, 201)
    handle = dev_env.client.get_workflow_handle(f"case:{case_id}")
    for _ in range(100):
        if (await handle.describe()).status == WorkflowExecutionStatus.FAILED:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the case's opening was not refused")
    response = await api.post(f"/cases/{case_id}/filing-decision", json=FILING)
    assert response.status_code == 404, response.text
    assert response.json()["type"].endswith("/case-not-found")
