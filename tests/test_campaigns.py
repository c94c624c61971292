"""Campaigns: hundreds of cases opened in paced waves; the CSV import and its errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from ops.cli import main as rectify
from tests.test_api_integration import api_client

pytestmark = pytest.mark.usefixtures("ts_worker")


@pytest.fixture
async def api(
    ts_env: WorkflowEnvironment, pg_dsn: str, task_queue: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(ts_env, pg_dsn, task_queue) as client:
        yield client


def campaign(n: int, campaign_id: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    return {
        "campaign_id": campaign_id,
        "title": "Qinglang: apps processing personal information unlawfully",
        "office": "campaign-office",
        "violation_category": "personal_information",
        "legal_basis": "Personal Information Protection Law art. 66",
        "opened_by": "officer.li",
        "subjects": [
            {
                "kind": "app",
                "name": f"App {i}",
                "identifiers": {"app_package": f"com.c{tag}.app{i}"},
            }
            for i in range(n)
        ],
    }


async def test_campaign_of_hundreds_opens_every_case(
    api: httpx.AsyncClient, ts_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    campaign_id = f"QL-{uuid.uuid4().hex[:8]}"
    response = await api.post("/campaigns", json=campaign(250, campaign_id))
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/campaigns/{campaign_id}"

    view: dict[str, Any] = {}
    give_up = asyncio.get_running_loop().time() + 180  # real seconds, for a loaded machine
    while asyncio.get_running_loop().time() < give_up:
        view = (await api.get(f"/campaigns/{campaign_id}")).json()
        if view["progress"] and view["progress"]["done"] and view["opened"] == 250:
            break
        await ts_env.sleep(1)  # the pauses between waves pass in no time
    assert view["status"] == "COMPLETED"
    assert view["progress"]["started"] == 250 and view["progress"]["already_open"] == 0
    assert (view["opened"], view["open"], view["closed_by_outcome"]) == (250, 250, {})
    ids = await pool.fetch(
        "SELECT case_id FROM cases WHERE campaign_id = $1 ORDER BY case_id", campaign_id
    )
    assert [r["case_id"] for r in ids] == [f"{campaign_id}-{n:04d}" for n in range(1, 251)]

    again = await api.post("/campaigns", json=campaign(1, campaign_id))
    assert again.status_code == 409 and campaign_id in again.json()["detail"]


async def test_campaign_errors(api: httpx.AsyncClient) -> None:
    assert (await api.get("/campaigns/NOPE-1")).status_code == 404
    empty = await api.post("/campaigns", json=campaign(0, "QL-empty"))
    assert empty.status_code == 422 and "subjects" in empty.json()["detail"]


def import_args(path: Path) -> list[str]:
    """`rectify campaign import` of a file that must be refused before anything is started."""
    return [
        "campaign",
        "import",
        str(path),
        "--title",
        "t",
        "--office",
        "o",
        "--category",
        "c",
        "--legal-basis",
        "b",
        "--by",
        "u",
    ]


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("kind,name,app_package,domain\n" + "\n".join(rows) + "\n")
    return path


async def test_csv_import_with_progress(
    ts_env: WorkflowEnvironment,
    tmp_path: Path,
    task_queue: str,
    pg_dsn: str,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag = uuid.uuid4().hex[:6]
    rows = [f"app,App {i},com.csv{tag}.a{i}," for i in range(30)]
    path = write_csv(tmp_path / "apps.csv", rows)
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    monkeypatch.setenv("TEMPORAL_ADDRESS", ts_env.client.service_client.config.target_host)
    monkeypatch.setenv("TASK_QUEUE", task_queue)
    campaign_id = f"CSV-{tag}"
    args = [
        "campaign",
        "import",
        str(path),
        "--title",
        "CSV campaign",
        "--office",
        "csv-office",
        "--category",
        "personal_information",
        "--legal-basis",
        "PIPL art. 66",
        "--by",
        "officer.li",
        "--id",
        campaign_id,
    ]
    assert await asyncio.to_thread(rectify, args) == 0
    captured = capsys.readouterr()
    assert f"campaign {campaign_id}: 30 cases opened" in captured.out
    assert "[##############################] 30/30 cases started" in captured.err
    for _ in range(100):
        count = await pool.fetchval(
            "SELECT count(*) FROM cases WHERE campaign_id = $1", campaign_id
        )
        if count == 30:
            break
        await asyncio.sleep(0.1)
    assert count == 30


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["app,Good,com.ok.app,", "planet,Bad kind,com.bad.app,"], "line 3: kind"),
        (["app,No identifier,,"], "line 2: identifiers"),  # at least one identifier
        (["website,Bad domain,,NOT A DOMAIN"], "line 2: domain"),
    ],
)
def test_csv_errors_name_line_and_column_and_start_nothing(
    tmp_path: Path,
    rows: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # nothing may be contacted
    path = write_csv(tmp_path / "bad.csv", rows)
    args = import_args(path)
    assert rectify(args) == 1
    assert f"bad.csv: {message}" in capsys.readouterr().err


def test_csv_with_unknown_columns_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("kind,name,phone\napp,X,123\n")
    args = import_args(path)
    assert rectify(args) == 1
    assert "unknown column 'phone'" in capsys.readouterr().err
