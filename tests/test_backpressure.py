"""Backpressure: while the worker is behind, new work is refused with 429 and Retry-After, and
campaigns wait between waves; the measure is the task queue's backlog from a real dev server.

A backlog is made the real way: workflows started on a task queue nobody polls. It is drained
by a worker that runs them. The server caches its task queue stats for about five seconds, so
the tests wait for figures with a deadline instead of expecting them at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from activities.admission import PacingActivities
from api.admission import Admission
from api.app import create_app
from domain.models import OpenCaseInput, Subject, case_workflow_id
from tests.conftest import POLICIES, new_case_id
from tests.keys import CONVERTER, TEST_KEYRING
from tests.test_api_integration import case_body, create_key
from wiring.backlog import Backlog, BacklogBound, measure_backlog
from wiring.settings import Settings
from worker.main import WORKFLOWS, activities_for, workflow_runner
from workflows.campaign import (
    PACING_PATCH,
    CampaignInput,
    CampaignProgress,
    CampaignWorkflow,
    campaign_case_id,
    campaign_workflow_id,
)
from workflows.search import case_search_attributes

pytestmark = pytest.mark.integration

FIGURES_WITHIN = 15.0  # seconds: the server's stats cache (~5 s) and a loaded machine


@workflow.defn(name="Backlogged", sandboxed=False)
class Backlogged:
    """A task waiting in the backlog until a worker that knows it drains the queue."""

    @workflow.run
    async def run(self) -> None:
        return None


async def build_backlog(
    client: Client, task_queue: str, tasks: int
) -> list[WorkflowHandle[Any, Any]]:
    """`tasks` workflow tasks waiting on `task_queue`, once the server reports them."""
    handles = [
        await client.start_workflow(
            "Backlogged", id=f"backlog-{uuid.uuid4().hex[:10]}", task_queue=task_queue
        )
        for _ in range(tasks)
    ]
    await figures(client, task_queue, lambda backlog: backlog.tasks >= tasks)
    return handles


async def drain(client: Client, task_queue: str, handles: list[WorkflowHandle[Any, Any]]) -> None:
    """Run the backlog's workflows to their end, and wait until the server counts none."""
    async with Worker(client, task_queue=task_queue, workflows=[Backlogged]):
        await asyncio.gather(*(handle.result() for handle in handles))
    await figures(client, task_queue, lambda backlog: backlog.tasks == 0)


async def figures(client: Client, task_queue: str, until: Any) -> Backlog:
    give_up = asyncio.get_running_loop().time() + FIGURES_WITHIN
    while True:
        backlog = await measure_backlog(client, task_queue)
        if until(backlog):
            return backlog
        assert asyncio.get_running_loop().time() < give_up, f"backlog stays at {backlog}"
        await asyncio.sleep(0.5)


@asynccontextmanager
async def app_client(
    dev_env: WorkflowEnvironment, pg_dsn: str, task_queue: str, **settings: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app in-process (its state at hand), its requests carrying a new admin key."""
    key = await create_key(pg_dsn, "admin")
    app = create_app(
        Settings(
            _env_file=None,
            database_url=pg_dsn,
            temporal_address=dev_env.client.service_client.config.target_host,
            task_queue=task_queue,
            **settings,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://rectify",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            yield app, client


async def exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def admitted_again(admission: Admission) -> None:
    give_up = asyncio.get_running_loop().time() + FIGURES_WITHIN
    while await admission.retry_after() is not None:
        assert asyncio.get_running_loop().time() < give_up, "the admission never admits again"
        await asyncio.sleep(0.2)


def campaign_body(campaign_id: str, subjects: int) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "title": "Qinglang: paced",
        "office": "campaign-office",
        "violation_category": "personal_information",
        "legal_basis": "Personal Information Protection Law art. 66",
        "opened_by": "officer.li",
        "subjects": [
            {"kind": "app", "name": f"App {i}", "identifiers": {"app_package": f"com.p{i}.app"}}
            for i in range(subjects)
        ],
    }


BEHIND = {"admission_max_backlog": 3, "admission_retry_after_s": 2, "admission_refresh_s": 0.2}


async def test_case_opening_is_refused_429_while_behind_then_admitted_once_drained(
    dev_env: WorkflowEnvironment, pg_dsn: str, pool: asyncpg.Pool, task_queue: str
) -> None:
    client = dev_env.client
    handles = await build_backlog(client, task_queue, 5)
    async with app_client(dev_env, pg_dsn, task_queue, **BEHIND) as (app, api):
        case_id = new_case_id()
        refused = await api.post("/cases", json=case_body(case_id))
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "2"  # nothing dispatched: the least wait
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert problem["type"].endswith("/worker-behind") and problem["status"] == 429
        assert f"5 tasks waiting on task queue {task_queue}" in problem["detail"]
        assert "(5 workflow, 0 activity; limit 3); retry after 2 s" in problem["detail"]
        assert (problem["backlog"], problem["limit"], problem["task_queue"]) == (5, 3, task_queue)
        assert not await exists(client, case_workflow_id(case_id))  # nothing was started

        await drain(client, task_queue, handles)
        await admitted_again(app.state.admission)
        opened = await api.post("/cases", json=case_body(case_id))
        assert opened.status_code == 201, opened.text
        assert await exists(client, case_workflow_id(case_id))


async def test_campaign_is_refused_429_while_behind_and_accepted_under_a_raised_bound(
    dev_env: WorkflowEnvironment, pg_dsn: str, task_queue: str
) -> None:
    client = dev_env.client
    await build_backlog(client, task_queue, 5)
    campaign_id = f"QL-{uuid.uuid4().hex[:8]}"
    async with app_client(dev_env, pg_dsn, task_queue, **BEHIND) as (_, api):
        refused = await api.post("/campaigns", json=campaign_body(campaign_id, 2))
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "2"
        assert "the worker is behind: 5 tasks waiting" in refused.json()["detail"]
        assert not await exists(client, campaign_workflow_id(campaign_id))
        assert (await api.get(f"/campaigns/{campaign_id}")).status_code == 404

    raised = {**BEHIND, "admission_max_backlog": 100}
    async with app_client(dev_env, pg_dsn, task_queue, **raised) as (_, api):
        accepted = await api.post("/campaigns", json=campaign_body(campaign_id, 2))
        assert accepted.status_code == 202, accepted.text
        assert await exists(client, campaign_workflow_id(campaign_id))

    never = {**BEHIND, "admission_max_backlog": 0}  # 0: never refuses, never measures
    async with app_client(dev_env, pg_dsn, task_queue, **never) as (app, api):
        opened = await api.post("/cases", json=case_body(new_case_id()))
        assert opened.status_code == 201, opened.text
        assert app.state.admission.measurements == 0


async def test_concurrent_requests_share_one_measure(
    dev_env: WorkflowEnvironment, pg_dsn: str, task_queue: str
) -> None:
    client = dev_env.client
    await build_backlog(client, task_queue, 5)
    cached = {**BEHIND, "admission_refresh_s": 3.0}
    async with app_client(dev_env, pg_dsn, task_queue, **cached) as (app, api):
        admission: Admission = app.state.admission
        case_ids = [new_case_id() for _ in range(20)]
        answers = await asyncio.gather(*(api.post("/cases", json=case_body(c)) for c in case_ids))
        assert [a.status_code for a in answers] == [429] * 20
        assert admission.measurements == 1  # twenty requests, one pair of describe calls
        started = await asyncio.gather(*(exists(client, case_workflow_id(c)) for c in case_ids))
        assert not any(started)

        await asyncio.gather(*(admission.retry_after() for _ in range(50)))
        assert admission.measurements == 1  # still within admission_refresh_s
        await asyncio.sleep(3.1)
        assert (await api.post("/cases", json=case_body(new_case_id()))).status_code == 429
        assert admission.measurements == 2  # the figure is refreshed once it is stale


async def test_an_unmeasurable_backlog_admits(ts_env: WorkflowEnvironment) -> None:
    # The time-skipping server has no DescribeTaskQueue; nothing listens on port 1.
    unreachable = await Client.connect("127.0.0.1:1", data_converter=CONVERTER, lazy=True)
    for client in (ts_env.client, unreachable):
        admission = Admission(client, "any-queue", BacklogBound(1, 1.0), refresh_s=5.0)
        assert await admission.retry_after() is None
        assert await admission.retry_after() is None
        assert admission.measurements == 1  # a failed measure is cached too: no storm of calls
        await admission.close()


def test_retry_after_follows_the_servers_dispatch_rate() -> None:
    bound = BacklogBound(max_backlog=200, retry_after_s=5.0)

    def backlog(tasks: int, rate: float) -> Backlog:
        return Backlog("q", tasks, 0, dispatch_rate=rate, oldest_s=1.0)

    assert bound.retry_after(backlog(200, 10.0)) is None  # at the bound: not behind
    assert bound.retry_after(backlog(300, 10.0)) == 10.0  # 100 tasks over, 10 a second
    assert bound.retry_after(backlog(220, 10.0)) == 5.0  # never less than the configured wait
    assert bound.retry_after(backlog(201, 0.0)) == 5.0  # nothing dispatched: no estimate
    assert bound.retry_after(backlog(100_000, 1.0)) == 60.0  # capped
    assert BacklogBound(0, 5.0).retry_after(backlog(100_000, 1.0)) is None  # 0: never behind


def test_429_is_documented_with_retry_after() -> None:
    paths = create_app(Settings(_env_file=None)).openapi()["paths"]
    for path in ("/cases", "/campaigns"):
        answer = paths[path]["post"]["responses"]["429"]
        assert "application/problem+json" in answer["content"]
        assert answer["headers"]["Retry-After"]["schema"]["type"] == "integer"


async def test_campaign_waits_while_the_worker_is_behind_and_resumes_after(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    client = dev_env.client
    watched = f"{task_queue}-watched"  # the queue whose backlog counts: nobody polls it yet
    handles = await build_backlog(client, watched, 3)
    pacing = PacingActivities(client, watched, BacklogBound(max_backlog=1, retry_after_s=1.0))
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[*activities_for(pool, POLICIES), pacing.worker_backlog],
        workflow_runner=workflow_runner(),
    )
    campaign_id = f"PACE-{uuid.uuid4().hex[:8]}"
    campaign = CampaignInput.model_validate(
        campaign_body(campaign_id, 3) | {"concurrency": 1, "pause_seconds": 0}
    )
    async with worker:
        handle = await client.start_workflow(  # as `rectify campaign import` does: no API
            CampaignWorkflow.run,
            campaign,
            id=campaign_workflow_id(campaign_id),
            task_queue=task_queue,
        )
        progress = await progress_until(handle, lambda p: p.worker_waits >= 2)
        assert progress.started == 0  # not one case while the worker is behind
        assert progress.waiting_for_worker is not None
        assert f"3 tasks waiting on task queue {watched}" in progress.waiting_for_worker

        await drain(client, watched, handles)
        result = await asyncio.wait_for(handle.result(), timeout=30)
    assert (result.done, result.started, result.waiting_for_worker) == (True, 3, None)
    assert result.worker_waits >= 2
    for n in (1, 2, 3):
        assert await exists(client, case_workflow_id(campaign_case_id(campaign_id, n)))
    markers = [  # the pacing is in the new history: the patch marker guards it on replay
        b"".join(
            payload.data
            for payloads in event.marker_recorded_event_attributes.details.values()
            for payload in payloads.payloads
        )
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert any(PACING_PATCH.encode() in marker for marker in markers)


async def progress_until(handle: WorkflowHandle[Any, Any], until: Any) -> CampaignProgress:
    give_up = asyncio.get_running_loop().time() + FIGURES_WITHIN
    while True:
        progress: CampaignProgress = await handle.query(CampaignWorkflow.progress)
        if until(progress):
            return progress
        assert asyncio.get_running_loop().time() < give_up, f"campaign stays at {progress}"
        await asyncio.sleep(0.2)


@workflow.defn(name="CampaignWorkflow", sandboxed=False)
class CampaignBeforePacing:
    """CampaignWorkflow as it was before pacing: a campaign running since then replays."""

    @workflow.run
    async def run(self, campaign: CampaignInput) -> None:
        numbered = list(enumerate(campaign.subjects, start=1))
        for first in range(0, len(numbered), campaign.concurrency):
            wave = numbered[first : first + campaign.concurrency]
            await asyncio.gather(*(self._open_case(campaign, n, s) for n, s in wave))
            if first + campaign.concurrency < len(numbered) and campaign.pause_seconds:
                await workflow.sleep(timedelta(seconds=campaign.pause_seconds))

    async def _open_case(self, campaign: CampaignInput, number: int, subject: Subject) -> None:
        case_id = campaign_case_id(campaign.campaign_id, number)
        opened = OpenCaseInput(
            case_id=case_id,
            subject=subject,
            violation_category=campaign.violation_category,
            legal_basis=campaign.legal_basis,
            severity=campaign.severity,
            office=campaign.office,
            opened_by=campaign.opened_by,
            campaign_id=campaign.campaign_id,
        )
        await workflow.start_child_workflow(
            "CaseWorkflow",
            opened,
            id=case_workflow_id(case_id),
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            search_attributes=case_search_attributes(
                opened, TEST_KEYRING.subject_digests(opened.subject.identifiers)
            ),
        )


async def test_a_campaign_started_before_pacing_replays_on_todays_code(
    ts_env: WorkflowEnvironment, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = f"OLD-{uuid.uuid4().hex[:8]}"
    campaign = CampaignInput.model_validate(
        campaign_body(campaign_id, 3) | {"concurrency": 2, "pause_seconds": 1}
    )
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[CampaignBeforePacing]):
        handle = await ts_env.client.start_workflow(
            "CampaignWorkflow",
            campaign,
            id=campaign_workflow_id(campaign_id),
            task_queue=task_queue,
        )
        await handle.result()
    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[CampaignWorkflow],
        data_converter=CONVERTER,
        workflow_runner=workflow_runner(),
    )
    assert (await replayer.replay_workflow(history)).replay_failure is None

    # The same pacing without its `patched` guard: the old history must not replay.
    monkeypatch.setattr(workflow, "patched", lambda patch_id: True)
    unguarded = Replayer(
        workflows=[CampaignWorkflow],
        data_converter=CONVERTER,
        workflow_runner=UnsandboxedWorkflowRunner(),  # sees the patched-out `patched`
    )
    with pytest.raises(workflow.NondeterminismError):
        await unguarded.replay_workflow(history)


def detection(domain: str) -> dict[str, Any]:
    return {
        "idempotency_key": f"k-{uuid.uuid4().hex}",
        "type": "violation_detected",
        "source": "monitoring",
        "occurred_at": "2026-11-28T09:30:00+08:00",
        "subject": {"kind": "website", "name": "Example", "identifiers": {"domain": domain}},
        "violation_category": "prohibited_information",
        "legal_basis": "Cybersecurity Law art. 61",
        "office": "events-office",
    }


async def test_detections_that_would_open_a_case_are_429_while_joins_are_recorded(
    dev_env: WorkflowEnvironment, pg_dsn: str, pool: asyncpg.Pool, task_queue: str
) -> None:
    client = dev_env.client
    known, new, other = (f"s{uuid.uuid4().hex[:12]}.example.cn" for _ in range(3))
    async with app_client(dev_env, pg_dsn, task_queue, **BEHIND) as (app, api):
        opened = await api.post("/events", json=detection(known))
        assert opened.status_code == 201, opened.text
        handles = await build_backlog(client, task_queue, 5)
        give_up = asyncio.get_running_loop().time() + FIGURES_WITHIN
        while await app.state.admission.retry_after() is None:  # its cached figure catches up
            assert asyncio.get_running_loop().time() < give_up, "never behind"
            await asyncio.sleep(0.2)
        batch = await api.post("/events/batch", json={"events": [detection(known), detection(new)]})
        assert batch.status_code == 200, batch.text
        joined, refused = batch.json()["results"]
        assert (joined["status"], joined["receipt"]["result"]) == (200, "joined")
        assert refused["status"] == 429 and refused["problem"]["type"].endswith("/worker-behind")
        assert refused["problem"]["retry_after_s"] >= 2
        single = await api.post("/events", json=detection(other))
        assert single.status_code == 429 and single.headers["retry-after"] == "2"
        for domain in (new, other):  # nothing half-written: no row, no case
            assert not await pool.fetchval(
                "SELECT count(*) FROM detections WHERE subject_key = $1", f"domain={domain}"
            )
        # Drain the backlog (the first case's own task stays: nobody runs cases here).
        async with Worker(client, task_queue=task_queue, workflows=[Backlogged]):
            await asyncio.gather(*(handle.result() for handle in handles))
        await admitted_again(app.state.admission)
        again = await api.post("/events", json=detection(other))
        assert again.status_code == 201, again.text
        assert await exists(client, case_workflow_id(again.json()["case_id"]))
