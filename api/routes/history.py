"""`GET /cases/{case_id}/history`: the case's Temporal history, audit trail and documents as one
timeline, with a link to the workflow in the Temporal Web UI; `?download=1` as a JSON file.
A case with several runs (continued as new, or carried on by an operator) shows them all, as one
history, oldest first."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecution, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api import problems
from api.auth import CASE_READING, AccessRoute
from api.case_records import CaseRecords
from api.deps import AppSettings, DbPool, TemporalClient
from api.problems import Problem
from api.timeline import (
    RunShown,
    TimelineEntry,
    build_timeline,
    run_begins,
    run_shown,
    workflow_status,
)
from domain.models import case_workflow_id
from wiring.codec import decrypt_with
from wiring.temporal import workflow_ui_url

router = APIRouter(prefix="/cases", tags=["cases"], route_class=AccessRoute)
log = structlog.get_logger(__name__)

MAX_RUNS = 100  # continue-as-new chains followed back at most this far


class CaseHistory(BaseModel):
    case_id: str
    workflow_id: str
    stage: str | None = Field(description="from the register; null before the case registered")
    outcome: str | None
    temporal_ui_url: str | None
    temporal_history_available: bool = Field(
        description="false when Temporal no longer holds the workflow (retention): the timeline "
        "then comes from the audit trail and documents only"
    )
    temporal_history_note: str | None = Field(
        None, description="why the Temporal history is missing or incomplete"
    )
    workflow_status: str | None = Field(
        None, description="running, completed, failed... (latest run)"
    )
    run_ids: list[str] = Field(default_factory=list, description="runs shown, oldest first")
    runs: list[RunShown] = Field(
        default_factory=list,
        description="the runs shown, oldest first: how each began (opened, continued, reopened "
        "or closed by an operator) and how it ended; each run's first timeline entry is its "
        "`workflow_started`",
    )
    timeline: list[TimelineEntry]


async def _runs(
    client: Client, workflow_id: str, rpc_timeout: timedelta
) -> tuple[list[tuple[str, WorkflowHistory]], str | None]:
    """Every run of the case's workflow, oldest first: back from the latest through each
    continue-as-new (the first event names the run before), and past a run an operator started
    after one that ended without an outcome (nothing names that one: the runs listed by
    workflow id do, the latest to start before it).

    Raises RPCError NOT_FOUND when Temporal holds no run at all; an older run that is gone ends
    the walk, with a note.
    """
    latest = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=rpc_timeout)
    runs: list[tuple[str, WorkflowHistory]] = []
    listed: list[WorkflowExecution] | None = None
    run_id: str | None = latest.run_id
    while run_id and len(runs) < MAX_RUNS:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        try:
            history = await handle.fetch_history(rpc_timeout=rpc_timeout)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or not runs:
                raise
            return runs[::-1], f"runs before {runs[-1][0]} are no longer in Temporal"
        for event in history.events:
            decrypt_with(client.data_converter, event)
        runs.append((run_id, history))
        first = history.events[0]
        run_id = first.workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id and run_begins(first) in ("reopened", "closed_by_operator"):
            if listed is None:
                listed = await _listed_runs(client, workflow_id, rpc_timeout)
            run_id = _started_before(listed, _started_at(first), {r for r, _ in runs})
            if run_id is None:
                return runs[::-1], f"the run {runs[-1][0]} carried on is no longer in Temporal"
        run_id = run_id or None
    note = f"only the latest {MAX_RUNS} runs are shown" if run_id else None
    return runs[::-1], note


async def _listed_runs(
    client: Client, workflow_id: str, rpc_timeout: timedelta
) -> list[WorkflowExecution]:
    """The runs Temporal's visibility lists for the workflow id (case ids need no quoting)."""
    query = f"WorkflowId = '{workflow_id}'"
    try:
        return [
            run
            async for run in client.list_workflows(
                query, limit=MAX_RUNS * 2, rpc_timeout=rpc_timeout
            )
        ]
    except RPCError as exc:
        log.warning("runs of the case not listed", reason=exc.message)
        return []


def _started_before(
    listed: list[WorkflowExecution], started: datetime, seen: set[str]
) -> str | None:
    earlier = [r for r in listed if r.run_id not in seen and r.start_time < started]
    return max(earlier, key=lambda r: r.start_time).run_id if earlier else None


def _started_at(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


@router.get(
    "/{case_id}/history",
    response_model=CaseHistory,
    responses=problems.responses(404, 503),
    dependencies=[Depends(CASE_READING)],
    summary="The case's timeline: commands, timers, side effects, audit trail and documents",
)
async def case_history(
    case_id: str,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
    response: Response,
    file_format: Annotated[
        Literal["json"], Query(alias="format", description="JSON only, so far")
    ] = "json",
    download: Annotated[bool, Query(description="answer as an attachment (a JSON file)")] = False,
) -> CaseHistory:
    workflow_id = case_workflow_id(case_id)
    structlog.contextvars.bind_contextvars(case_id=case_id, workflow_id=workflow_id)
    timeout = timedelta(seconds=settings.case_answer_timeout_s)
    runs: list[tuple[str, WorkflowHistory]] = []
    note: str | None = None
    try:
        runs, note = await _runs(client, workflow_id, timeout)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise Problem(
                503,
                "temporal-unavailable",
                f"the Temporal server did not give the history of case {case_id}: {exc.message}",
                case_id=case_id,
            ) from exc
        note = "Temporal no longer holds this workflow (retention): audit trail and documents only"

    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        records = CaseRecords(conn)
        register = await records.register(case_id)
        if register is None and not runs:
            raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id)
        audit, documents = await records.audit(case_id), await records.documents(case_id)

    history = CaseHistory(
        case_id=case_id,
        workflow_id=workflow_id,
        stage=register.stage if register else None,
        outcome=register.outcome if register else None,
        temporal_ui_url=workflow_ui_url(
            settings.temporal_ui_url, settings.temporal_namespace, workflow_id
        ),
        temporal_history_available=bool(runs),
        temporal_history_note=note,
        workflow_status=workflow_status(runs[-1][1]) if runs else None,
        run_ids=[run_id for run_id, _ in runs],
        runs=[run_shown(run_id, run_history) for run_id, run_history in runs],
        timeline=build_timeline(runs, audit, documents),
    )
    log.info("case history read", entries=len(history.timeline), runs=len(runs))
    if download:
        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)
        response.headers["Content-Disposition"] = (
            f'attachment; filename="case-{safe_id}-history.json"'
        )
    return history
