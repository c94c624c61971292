"""Every command over HTTP: the whole penalty path, referrals, and each kind of error. A
command answers the workflow's small receipt; GET /cases/{id} the whole state.

The API talks to the time-skipping server here (a normal Temporal frontend), so the test can skip
the statement-and-defence window with `env.sleep` between HTTP calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from domain.procedure import COMMANDS
from tests.conftest import new_case_id
from tests.test_api_integration import api_client, case_body
from workflows.case import CaseWorkflow

pytestmark = pytest.mark.usefixtures("ts_worker")


@pytest.fixture
async def api(
    ts_env: WorkflowEnvironment, pg_dsn: str, pool: asyncpg.Pool, task_queue: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(ts_env, pg_dsn, task_queue) as client:
        yield client


async def call(api: httpx.AsyncClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    response = await api.post(path, json=body)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
    return response.json()


async def opened(api: httpx.AsyncClient, **overrides: Any) -> str:
    """Open a case and wait until its opening step is written (policy, filing deadline)."""
    case_id = new_case_id()
    await call(api, "/cases", case_body(case_id, **overrides), 201)
    for _ in range(200):
        view = (await api.get(f"/cases/{case_id}")).json()
        if view.get("state") and view["state"]["step"] >= 1:
            break
        await asyncio.sleep(0.02)
    return f"/cases/{case_id}"


OFFICER = {"actor": "officer.chen"}


async def test_penalty_path_over_http(api: httpx.AsyncClient, ts_env: WorkflowEnvironment) -> None:
    case = await opened(api, severity="general")
    await call(api, f"{case}/filing-decision", OFFICER | {"decision": "filed", "reasons": "r"})
    await call(api, f"{case}/penalty-procedure", OFFICER | {"reasons": "serious harm"})
    state = await call(
        api, f"{case}/investigation-report", OFFICER | {"facts": "f", "evidence": ["e1"]}
    )
    assert state["stage"] == "notice_pending"
    early = await call(
        api,
        f"{case}/penalty-decision",
        OFFICER | {"measure": "warning", "reasons": "r", "legal_basis": "PIPL art. 66"},
        409,
    )
    assert "without prior notice to the party (APL 44)" in early["detail"]
    notice = OFFICER | {
        "measure": "warning",
        "facts": "f",
        "reasons": "r",
        "legal_basis": "PIPL art. 66",
    }
    state = await call(api, f"{case}/penalty-notice", notice)
    assert state["stage"] == "defence"
    refused = await call(
        api,
        f"{case}/penalty-decision",
        OFFICER | {"measure": "warning", "reasons": "r", "legal_basis": "PIPL art. 66"},
        409,
    )
    assert "before the statement-and-defence window ends" in refused["detail"]
    await call(api, f"{case}/statements", {"actor": "party:rep", "statement": "We object."})
    await ts_env.sleep(timedelta(days=12))  # past 5 working days
    decided = await call(
        api,
        f"{case}/penalty-decision",
        OFFICER | {"measure": "warning", "reasons": "r", "legal_basis": "PIPL art. 66"},
    )
    assert decided["stage"] == "service_pending"
    view = (await api.get(case)).json()
    assert (view["source"], view["deadline"]["name"]) == ("workflow", "service")
    assert view["penalty"]["measure"] == "warning"
    assert view["penalty"]["legal_basis"] == "PIPL art. 66"
    assert decided["documents"] == [view["documents"][-1]["number"]]
    served_at = (await ts_env.get_current_time()).isoformat()
    closed = await call(
        api, f"{case}/service", OFFICER | {"served_at": served_at, "method": "direct"}
    )
    assert (closed["stage"], closed["outcome"]) == ("closed", "warned")
    # A closed case still answers from its workflow, with the whole state.
    view = (await api.get(case)).json()
    assert (view["source"], view["stage"], view["outcome"]) == ("workflow", "closed", "warned")
    assert view["deadline"] is None and view["state"]["penalty"]["measure"] == "warning"


async def test_a_command_answers_a_receipt_and_the_case_its_state(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    case = await opened(api)
    opened_view = (await api.get(case)).json()
    assert opened_view["deadline"]["name"] == "filing"
    receipt = await call(
        api, f"{case}/filing-decision", OFFICER | {"decision": "filed", "reasons": "r"}
    )
    case_id = case.rsplit("/", 1)[1]
    numbers = await pool.fetch(
        "SELECT number FROM documents WHERE case_id = $1 ORDER BY id", case_id
    )
    assert receipt == {
        "case_id": case_id,
        "stage": "filed",
        "step": 2,
        "waiting_for": receipt["waiting_for"],
        "documents": [row["number"] for row in numbers],
        "outcome": None,
    }
    assert receipt["waiting_for"]
    view = (await api.get(case)).json()
    assert (view["stage"], view["waiting_for"]) == ("filed", receipt["waiting_for"])
    assert view["state"]["step"] == 2 and view["state"]["filing"]["decision"] == "filed"
    assert [d["number"] for d in view["documents"]] == receipt["documents"]
    assert view["deadline"]["name"] == "handling"  # filed: the 90-day limit is pending
    assert view["opened_at"] == opened_view["opened_at"]


async def test_referral_steps_over_http(api: httpx.AsyncClient) -> None:
    case = await opened(api)
    await call(api, f"{case}/filing-decision", OFFICER | {"decision": "filed", "reasons": "r"})
    await call(
        api,
        f"{case}/referrals",
        OFFICER | {"authority": "police", "criminal": True, "reasons": "fraud"},
    )
    missing = await call(api, f"{case}/referrals/7/approval", {"actor": "head"}, 409)
    assert missing["detail"].endswith("no referral 7")
    await call(api, f"{case}/referrals/1/approval", {"actor": "agency.head"})
    await call(api, f"{case}/referrals/1/transfer", OFFICER)
    receipt = await call(
        api, f"{case}/referrals/1/acknowledgement", {"actor": "police", "notes": "received"}
    )
    assert receipt["stage"] == "filed"
    [referral] = (await api.get(case)).json()["state"]["referrals"]
    assert (referral["referral_id"], referral["status"]) == (1, "acknowledged")
    bad = await call(api, f"{case}/referrals/0/approval", {"actor": "head"}, 422)
    assert "referral_id" in bad["detail"]


async def test_every_command_is_routed_and_unknown_cases_are_404(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    routes = set(schema["paths"])
    for command in COMMANDS:
        assert f"/cases/{{case_id}}/{command.path}" in routes
        assert hasattr(CaseWorkflow, command.name)
    assert "/cases/{case_id}/fine-decision" not in routes
    missing = f"/cases/{new_case_id()}"
    problem = await call(
        api, f"{missing}/withdrawal", OFFICER | {"ground": "no_violation", "reasons": "r"}, 404
    )
    assert problem["type"].endswith("/case-not-found")


async def test_bad_bodies_are_422_naming_the_field(api: httpx.AsyncClient) -> None:
    case = await opened(api)
    problem = await call(
        api,
        f"{case}/penalty-notice",
        OFFICER | {"measure": "caning", "facts": "f", "reasons": "r", "legal_basis": "b"},
        422,
    )
    assert "measure" in [error["field"] for error in problem["errors"]]
    problem = await call(
        api,
        f"{case}/appeals",
        OFFICER | {"kind": "reconsideration", "event": "filed", "at": "2026-12-01T10:00:00"},
        422,
    )
    assert "at" in [error["field"] for error in problem["errors"]]
    assert "timezone" in problem["detail"]


async def test_oversized_body_is_413(api: httpx.AsyncClient) -> None:
    case = await opened(api)
    huge = OFFICER | {"statement": "x" * 2_000_000}
    response = await api.post(f"{case}/statements", json=huge)
    assert response.status_code == 413
    assert response.json()["type"].endswith("/body-too-large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 50_000

    chunked = await api.post(
        f"{case}/statements", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
