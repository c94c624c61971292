"""The API and the worker against a real Temporal dev server and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from tests.conftest import MIGRATIONS, new_case_id
from wiring.api_keys import ApiKeyRepository, KeySpec
from wiring.logs import configure_logging, flush_logs
from wiring.migrate import migrate
from wiring.settings import Settings

pytestmark = pytest.mark.integration


def case_body(case_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": {
            "kind": "app",
            "name": "Chaofan Cleanup Manager",
            "identifiers": {"app_package": "com.chaofan.cleanup"},
        },
        "violation_category": "personal_information",
        "legal_basis": "PIPL art. 66",
        "severity": "serious",
        "office": "shanghai",
        "opened_by": "officer.chen",
    }
    if case_id is not None:
        body["case_id"] = case_id
    body.update(overrides)
    return body


INTERVIEW = {
    "actor": "officer.chen",
    "scheduled_for": "2099-01-05T09:30:00+08:00",
    "place": "Shanghai office",
    "reason": "unlawful collection of personal information",
    "attendees_required": ["person in charge"],
}
INTERVIEW_RECORD = {
    "actor": "officer.chen",
    "officials": ["officer.chen", "officer.zhou"],
    "attended_by": ["CEO Wang"],
    "summary": "Admitted; will stop the collection.",
}
FILING = {"actor": "officer.chen", "decision": "filed", "reasons": "Monitoring evidence."}
ORDER = {"actor": "officer.chen", "period_days": 10, "requirements": "Stop the collection."}
REPORT = {"actor": "party:chaofan", "summary": "SDK removed.", "evidence": ["v2.1 build"]}


async def hold_interview(api: httpx.AsyncClient, base: str) -> None:
    """Give notice of an interview a second ahead, and record it once its time has come: the
    dev server's clock is the real one, and an interview is recorded only after its time."""
    at = datetime.now(UTC) + timedelta(seconds=1)
    await post(
        api, f"{base}/interview/schedule", INTERVIEW | {"scheduled_for": at.isoformat()}, 200
    )
    await asyncio.sleep((at - datetime.now(UTC)).total_seconds() + 0.3)
    await post(api, f"{base}/interview/record", INTERVIEW_RECORD, 200)


async def create_key(pg_dsn: str, role: str, office: str | None = None) -> str:
    """A new API key in the test database, as `rectify keys create` makes one."""
    await migrate(pg_dsn, MIGRATIONS)  # a no-op once the session's `pool` has migrated
    conn = await asyncpg.connect(pg_dsn)
    try:
        spec = KeySpec.checked(role, office, f"test {role} key", "pytest")
        return (await ApiKeyRepository(conn).create(spec)).key
    finally:
        await conn.close()


@asynccontextmanager
async def api_client(
    dev_env: WorkflowEnvironment,
    pg_dsn: str,
    task_queue: str,
    *,
    role: str | None = "admin",
    office: str | None = None,
    **settings: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process; its requests carry a new key of `role` (None: no key at all)."""
    headers = {"Authorization": f"Bearer {await create_key(pg_dsn, role, office)}"} if role else {}
    app = create_app(
        Settings(
            _env_file=None,
            database_url=pg_dsn,
            temporal_address=dev_env.client.service_client.config.target_host,
            task_queue=task_queue,
            temporal_ui_url="http://localhost:8233",
            **settings,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://rectify", headers=headers
        ) as client:
            yield client


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment,
    dev_worker: Worker,
    pg_dsn: str,
    pool: asyncpg.Pool,
    task_queue: str,
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(dev_env, pg_dsn, task_queue) as client:
        yield client


async def post(api: httpx.AsyncClient, path: str, body: dict[str, Any], status: int) -> Any:
    response = await api.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


async def test_health_checks_both_servers(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"postgres": "ok", "temporal": "ok"}}


async def test_case_driven_to_closed_through_the_api(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    case_id = new_case_id()
    response = await api.post("/cases", json=case_body(case_id))
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/cases/{case_id}"
    opened = response.json()
    assert opened["workflow_id"] == f"case:{case_id}"
    assert opened["temporal_ui_url"].endswith(f"/workflows/case%3A{case_id}")

    base = f"/cases/{case_id}"
    filed = await post(api, f"{base}/filing-decision", FILING, 200)
    assert filed["stage"] == "filed"
    await hold_interview(api, base)
    ordered = await post(api, f"{base}/rectification-order", ORDER, 200)
    assert ordered["stage"] == "rectifying" and len(ordered["documents"]) == 1

    live = (await api.get(base)).json()
    assert (live["source"], live["stage"]) == ("workflow", "rectifying")
    deadline = live["state"]["deadlines"]["rectification"]
    assert deadline["days"] == 10
    assert live["deadline"]["name"] == "rectification"
    assert live["deadline"]["due_at"] == deadline["due_at"]
    assert "rectification report" in live["waiting_for"]
    register = await pool.fetchrow(
        "SELECT opened_at, deadline_at FROM cases WHERE case_id = $1", case_id
    )
    assert register is not None
    assert datetime.fromisoformat(live["deadline"]["due_at"]) == register["deadline_at"]
    assert datetime.fromisoformat(live["opened_at"]) == register["opened_at"]  # one opening time

    await post(api, f"{base}/rectification-report", REPORT, 200)
    closed = await post(
        api,
        f"{base}/verification",
        {"actor": "officer.zhou", "passed": True, "findings": "Collection stopped."},
        200,
    )
    assert (closed["stage"], closed["outcome"]) == ("closed", "rectified")

    # Closed, the case still answers from its workflow (a worker replays it for the query).
    view = (await api.get(base)).json()
    assert (view["source"], view["stage"], view["outcome"]) == ("workflow", "closed", "rectified")
    assert view["deadline"] is None and view["closed_at"] is not None

    row = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    assert row is not None
    assert (row["office"], row["subject_kind"], row["outcome"]) == ("shanghai", "app", "rectified")
    assert row["policy_version"] == "2026.1"
    trail = await pool.fetch(
        "SELECT action, actor FROM case_audit WHERE case_id = $1 ORDER BY seq", case_id
    )
    assert [(r["action"], r["actor"]) for r in trail] == [
        ("case_opened", "officer.chen"),
        ("filed", "officer.chen"),
        ("interview_scheduled", "officer.chen"),
        ("interview_recorded", "officer.chen"),
        ("rectification_ordered", "officer.chen"),
        ("rectification_reported", "party:chaofan"),
        ("verification_passed", "officer.zhou"),
    ]
    documents = await pool.fetch(
        "SELECT kind, number, actor FROM documents WHERE case_id = $1 ORDER BY id", case_id
    )
    assert [d["kind"] for d in documents] == [
        "filing_decision",
        "interview_notice",
        "interview_record",
        "rectification_order",
    ]
    assert all(
        d["number"].startswith("shanghai-") and d["actor"] == "officer.chen" for d in documents
    )
    assert [(d["kind"], d["number"]) for d in view["documents"]] == [
        (d["kind"], d["number"]) for d in documents
    ]

    # A report on the closed case: 409 naming why.
    refused = await post(api, f"{base}/rectification-report", REPORT, 409)
    assert refused["detail"] == f"case {case_id} is closed (outcome: rectified)"


async def forget_workflow(env: WorkflowEnvironment, case_id: str) -> None:
    """Delete the case's workflow from Temporal (as retention would), and wait until it is."""
    await env.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace="default", workflow_execution=WorkflowExecution(workflow_id=f"case:{case_id}")
        )
    )
    handle = env.client.get_workflow_handle(f"case:{case_id}")
    for _ in range(100):  # deletion is asynchronous
        try:
            await handle.describe()
        except RPCError as exc:
            assert exc.status == RPCStatusCode.NOT_FOUND
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the workflow was not deleted")


async def test_a_case_its_workflow_cannot_answer_for_is_read_from_the_register(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    case_id = new_case_id()
    await post(api, "/cases", case_body(case_id, severity="general"), 201)
    base = f"/cases/{case_id}"
    await post(api, f"{base}/filing-decision", FILING, 200)
    await post(api, f"{base}/penalty-procedure", {"actor": "officer.chen", "reasons": "r"}, 200)
    report = {"actor": "officer.chen", "facts": "f", "evidence": ["e1"]}
    assert (await post(api, f"{base}/investigation-report", report, 200))["stage"] == (
        "notice_pending"
    )
    terms = {"measure": "fine", "fine_yuan": "20000", "legal_basis": "PIPL art. 66"}
    notice = {"actor": "officer.chen", "facts": "f", "reasons": "r", **terms}
    await post(api, f"{base}/penalty-notice", notice, 200)
    waiver = {"actor": "party:chaofan", "statement": "We waive.", "waive_rights": True}
    await post(api, f"{base}/statements", waiver, 200)
    decision = {"actor": "director.wang", "reasons": "r", **terms}
    decided = await post(api, f"{base}/penalty-decision", decision, 200)
    assert decided["stage"] == "service_pending"
    live = (await api.get(base)).json()
    assert live["source"] == "workflow"

    await forget_workflow(dev_env, case_id)
    view = (await api.get(base)).json()
    assert (view["source"], view["state"]) == ("register", None)
    assert (view["stage"], view["outcome"], view["office"]) == ("service_pending", None, "shanghai")
    assert view["waiting_for"]  # the stage table's words
    assert view["deadline"]["due_at"] == live["deadline"]["due_at"]
    assert view["deadline"]["name"] is None
    penalty, decided_live = view["penalty"], live["penalty"]
    assert (penalty["measure"], Decimal(penalty["fine_yuan"])) == ("fine", Decimal(20000))
    assert Decimal(decided_live["fine_yuan"]) == Decimal(20000)
    for same in ("measure", "decided_by", "decided_at"):
        assert penalty[same] == decided_live[same], same
    assert view["documents"] == live["documents"]
    assert view["opened_at"] == live["opened_at"]


async def test_same_case_id_twice_is_409_and_one_workflow(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    case_id = new_case_id()
    await post(api, "/cases", case_body(case_id), 201)
    problem = await post(api, "/cases", case_body(case_id), 409)
    assert problem["type"].endswith("/case-exists")
    assert case_id in problem["detail"] and problem["workflow_id"] == f"case:{case_id}"
    runs = [wf async for wf in dev_env.client.list_workflows(f"WorkflowId = 'case:{case_id}'")]
    assert len(runs) == 1


async def test_case_id_is_assigned_when_missing(api: httpx.AsyncClient) -> None:
    opened = await post(api, "/cases", case_body(), 201)
    assert opened["case_id"].startswith("RC-")
    assert (await api.get(f"/cases/{opened['case_id']}")).status_code == 200


async def test_refused_command_is_409_with_the_reason(api: httpx.AsyncClient) -> None:
    case_id = new_case_id()
    await post(api, "/cases", case_body(case_id), 201)
    problem = await post(api, f"/cases/{case_id}/rectification-report", REPORT, 409)
    assert problem["type"].endswith("/command-refused")
    assert "cannot accept a rectification report" in problem["detail"]
    assert "stage filing" in problem["detail"]


async def test_unknown_case_is_404(api: httpx.AsyncClient) -> None:
    missing = new_case_id()
    for response in (
        await api.get(f"/cases/{missing}"),
        await api.post(f"/cases/{missing}/interview/schedule", json=INTERVIEW),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == f"no case {missing}"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/cases",
            case_body(subject={"kind": "app", "name": "x", "identifiers": {}}),
            "subject.identifiers",
        ),
        ("/cases", case_body(severity="catastrophic"), "severity"),
        ("/cases", case_body(case_id="bad id with spaces"), "case_id"),
        (
            "/cases",
            case_body(
                subject={"kind": "app", "name": "x", "identifiers": {"domain": "Not A Domain"}}
            ),
            "subject.identifiers.domain",
        ),
        ("/cases", {**case_body(), "unexpected": 1}, "unexpected"),
        (
            "/cases/X-1/interview/record",
            {**INTERVIEW_RECORD, "officials": ["only.one"]},
            "officials",
        ),
        ("/cases/X-1/rectification-order", {**ORDER, "period_days": 0}, "period_days"),
        (
            "/cases/X-1/interview/schedule",
            {**INTERVIEW, "scheduled_for": "2099-01-05T09:30"},
            "scheduled_for",
        ),
        (
            "/cases/X-1/penalty-decision",
            {
                "actor": "a",
                "measure": "fine",
                "fine_yuan": "-5",
                "legal_basis": "b",
                "reasons": "c",
            },
            "fine_yuan",
        ),
        ("/cases/X-1/referrals/0/approval", {"actor": "head"}, "path.referral_id"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = await api.post(path, json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["status"] == 422
    assert field in [error["field"] for error in problem["errors"]], problem
    assert field in problem["detail"]


async def test_malformed_json_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/cases", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/invalid-request")


async def test_log_lines_carry_case_and_workflow_ids(
    api: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")
    try:
        case_id = new_case_id()
        await post(api, "/cases", case_body(case_id), 201)
        await post(api, f"/cases/{case_id}/filing-decision", FILING, 200)
    finally:
        flush_logs()  # lines are written off the event loop
        lines = capsys.readouterr().err.splitlines()
        configure_logging("console", "INFO", stream=sys.__stderr__)
    events = [json.loads(line) for line in lines if line.startswith("{")]
    ours = [e for e in events if e.get("case_id") == case_id]
    names = {e["event"] for e in ours}
    # The API started the workflow, the opening activity registered the case, a step followed.
    assert {"case workflow started", "case opened", "case step recorded", "request handled"} <= (
        names
    )
    for event in ours:
        assert event["workflow_id"] == f"case:{case_id}"
    requests = [e for e in ours if e["event"] in ("case workflow started", "request handled")]
    assert requests and all("request_id" in e for e in requests)


async def test_case_without_a_worker_is_504_not_a_hung_request(
    dev_env: WorkflowEnvironment, pg_dsn: str, pool: asyncpg.Pool
) -> None:
    """Nobody polls this task queue: reads and commands give up after the configured time."""
    async with api_client(dev_env, pg_dsn, "tq-nobody-polls", case_answer_timeout_s=1.0) as client:
        case_id = new_case_id()
        await post(client, "/cases", case_body(case_id), 201)
        for response in (
            await client.get(f"/cases/{case_id}"),
            await client.post(f"/cases/{case_id}/filing-decision", json=FILING),
        ):
            assert response.status_code == 504, response.text
            problem = response.json()
            assert problem["type"].endswith("/case-not-answering")
            assert "is a worker running?" in problem["detail"]
