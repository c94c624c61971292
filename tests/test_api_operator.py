"""Operator endpoints: load and read a year's working days, and the policy in force (admin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from tests.conftest import POLICIES, scratch_database
from tests.test_api_integration import api_client, create_key
from wiring.db import create_pool
from wiring.settings import REPO_ROOT
from worker.main import build_worker

pytestmark = pytest.mark.integration
EXAMPLE_2027: dict[str, Any] = yaml.safe_load(
    (REPO_ROOT / "ops" / "examples" / "calendar-2027.yaml").read_text()
)


@pytest.fixture
async def scratch(pg_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A database of its own: loading 2027 must not reach the shared one."""
    async with scratch_database(pg_dsn, seeded=True) as dsn:
        yield dsn


@pytest.fixture
async def admin(
    dev_env: WorkflowEnvironment, scratch: str, task_queue: str
) -> AsyncIterator[httpx.AsyncClient]:
    scratch_pool = await create_pool(scratch)
    try:
        async with (
            build_worker(dev_env.client, scratch_pool, task_queue, POLICIES),
            api_client(dev_env, scratch, task_queue, role="admin") as client,
        ):
            yield client
    finally:
        await scratch_pool.close()


async def test_load_a_year_then_read_it(admin: httpx.AsyncClient) -> None:
    body = {k: v for k, v in EXAMPLE_2027.items()}
    body["holidays"] = [h | {"from": str(h["from"]), "to": str(h["to"])} for h in body["holidays"]]
    body["makeup_workdays"] = [m | {"date": str(m["date"])} for m in body["makeup_workdays"]]
    missing = await admin.get("/calendar/2027")
    assert missing.status_code == 404 and "provisional" in missing.json()["detail"]

    loaded = await admin.put("/calendar/2027", json=body)
    assert loaded.status_code == 200, loaded.text
    assert (loaded.json()["revision"], loaded.json()["unchanged"]) == (1, False)
    again = await admin.put("/calendar/2027", json=body)
    assert (again.json()["revision"], again.json()["unchanged"]) == (1, True)

    year = (await admin.get("/calendar/2027")).json()
    spring = next(h for h in year["holidays"] if h["name"] == "Spring Festival")
    assert (spring["first"], spring["last"]) == ("2027-02-06", "2027-02-14")
    assert "2027-02-20" in year["makeup_workdays"]
    assert year["loaded_by"].startswith("key:")


async def test_calendar_input_errors(admin: httpx.AsyncClient) -> None:
    wrong = await admin.put(
        "/calendar/2028", json={"year": 2027, "source": "s", "holidays": [], "makeup_workdays": []}
    )
    assert wrong.status_code == 422 and "year" in wrong.json()["detail"]
    weekday = await admin.put(
        "/calendar/2027",
        json={
            "year": 2027,
            "source": "s",
            "holidays": [],
            "makeup_workdays": [{"date": "2027-02-09", "for": "Spring Festival"}],
        },
    )
    assert weekday.status_code == 422 and "Saturday or Sunday" in weekday.text
    assert (await admin.get("/calendar/1999")).status_code == 422


async def test_policy_in_force(admin: httpx.AsyncClient) -> None:
    summary = (await admin.get("/policy")).json()
    assert summary["active_version"] == "2026.1"
    assert "personal_information" in summary["categories"]


async def test_operator_endpoints_are_for_admins(
    dev_env: WorkflowEnvironment, scratch: str, task_queue: str, admin: httpx.AsyncClient
) -> None:
    officer = await create_key(scratch, "officer", "beijing")
    response = await admin.get("/policy", headers={"Authorization": f"Bearer {officer}"})
    assert response.status_code == 403
