"""`GET /cases/{case_id}/history`: the case's Temporal history, audit trail and documents as one
timeline, with a link to the workflow in the Temporal Web UI; `?download=1` as a JSON file."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import asyncpg
import structlog
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppSettings, DbPool, TemporalClient
from api.problems import Problem
from api.timeline import AuditRow, DocumentRow, TimelineEntry, build_timeline, workflow_status
from domain.models import case_workflow_id
from wiring.temporal import workflow_ui_url

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

router = APIRouter(prefix="/cases", tags=["cases"])
log = structlog.get_logger(__name__)

MAX_RUNS = 100  # continue-as-new chains followed back at most this far

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such case", "content": {"application/problem+json": {}}},
    503: {
        "description": "the Temporal server did not answer",
        "content": {"application/problem+json": {}},
    },
}


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


class _CaseRecords:
    """What PostgreSQL holds about a case: its register row, audit trail and documents."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def register(self, case_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._conn.fetchrow(
            "SELECT stage, outcome FROM cases WHERE case_id = $1", case_id
        )
        return row

    async def audit(self, case_id: str) -> list[AuditRow]:
        rows = await self._conn.fetch(
            """SELECT seq, action, from_stage, to_stage, actor, occurred_at, payload
                 FROM case_audit WHERE case_id = $1 ORDER BY seq""",
            case_id,
        )
        return [AuditRow.model_validate(dict(row)) for row in rows]

    async def documents(self, case_id: str) -> list[DocumentRow]:
        rows = await self._conn.fetch(
            """SELECT kind, number, title, actor, issued_at, step
                 FROM documents WHERE case_id = $1 ORDER BY issued_at, id""",
            case_id,
        )
        return [DocumentRow.model_validate(dict(row)) for row in rows]


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
    responses=_PROBLEMS,
    summary="The case's timeline: commands, timers, side effects, audit trail and documents",
)
async def case_history(
    case_id: str,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
    response: Response,
    file_format: Literal["json"] = Query("json", alias="format", description="JSON only, so far"),
    download: bool = Query(False, description="answer as an attachment (a JSON file)"),
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
        records = _CaseRecords(conn)
        register = await records.register(case_id)
        if register is None and not runs:
            raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id)
        audit, documents = await records.audit(case_id), await records.documents(case_id)

    history = CaseHistory(
        case_id=case_id,
        workflow_id=workflow_id,
        stage=register["stage"] if register else None,
        outcome=register["outcome"] if register else None,
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
