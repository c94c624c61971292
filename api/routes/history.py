"""`GET /cases/{case_id}/history`: the case's Temporal history, audit trail and documents as one
timeline, with a link to the workflow in the Temporal Web UI; `?download=1` as a JSON file."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api import problems
from api.auth import CASE_READING, AccessRoute
from api.case_records import CaseRecords
from api.deps import AppSettings, DbPool, TemporalClient
from api.problems import Problem
from api.timeline import TimelineEntry, build_timeline, workflow_status
from domain.models import case_workflow_id
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
    timeline: list[TimelineEntry]


async def _runs(
    client: Client, workflow_id: str, rpc_timeout: timedelta
) -> tuple[list[tuple[str, WorkflowHistory]], str | None]:
    """Every run of the workflow, oldest first, following continue-as-new back from the latest.

    Raises RPCError NOT_FOUND when Temporal holds no run at all; an older run that is gone ends
    the walk, with a note.
    """
    latest = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=rpc_timeout)
    runs: list[tuple[str, WorkflowHistory]] = []
    run_id: str | None = latest.run_id
    while run_id and len(runs) < MAX_RUNS:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        try:
            history = await handle.fetch_history(rpc_timeout=rpc_timeout)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or not runs:
                raise
            return runs[::-1], f"runs before {runs[-1][0]} are no longer in Temporal"
        runs.append((run_id, history))
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
    note = f"only the latest {MAX_RUNS} runs are shown" if run_id else None
    return runs[::-1], note


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
        timeline=build_timeline(runs, audit, documents),
    )
    log.info("case history read", entries=len(history.timeline), runs=len(runs))
    if download:
        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)
        response.headers["Content-Disposition"] = (
            f'attachment; filename="case-{safe_id}-history.json"'
        )
    return history
