"""Case endpoints: open a case, read it, and give it the main-path commands."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Response, status
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppSettings, DbPool, TemporalClient
from api.problems import Problem
from api.schemas import CaseView, OpenCaseRequest, OpenedCase
from wiring.settings import Settings
from wiring.temporal import workflow_ui_url
from workflows.case import CaseWorkflow
from workflows.case_models import (
    CaseState,
    DecideFine,
    IssueRectificationOrder,
    OpenCaseInput,
    RecordInterview,
    RecordVerification,
    ScheduleInterview,
    SubmitRectificationReport,
    case_workflow_id,
)
from workflows.procedure_models import DecideFiling

router = APIRouter(prefix="/cases", tags=["cases"])
log = structlog.get_logger(__name__)

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such case", "content": {"application/problem+json": {}}},
    409: {
        "description": "the case refused the command",
        "content": {"application/problem+json": {}},
    },
    504: {
        "description": "the case did not answer in time",
        "content": {"application/problem+json": {}},
    },
    422: {"description": "invalid body", "content": {"application/problem+json": {}}},
}

_REGISTER_COLUMNS = """
    case_id, workflow_id, stage, outcome, office, violation_category, subject_name,
    deadline_at, opened_at, closed_at
"""


def _bind(case_id: str) -> str:
    workflow_id = case_workflow_id(case_id)
    structlog.contextvars.bind_contextvars(case_id=case_id, workflow_id=workflow_id)
    return workflow_id


def _assign_case_id() -> str:
    return f"RC-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:12]}"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OpenedCase,
    responses={409: PROBLEM_RESPONSES[409], 422: PROBLEM_RESPONSES[422]},
)
async def open_case(
    body: OpenCaseRequest, client: TemporalClient, settings: AppSettings, response: Response
) -> OpenedCase:
    """Start the case's workflow. The same case id twice is refused: never two workflows."""
    case_id = body.case_id or _assign_case_id()
    workflow_id = _bind(case_id)
    opened = OpenCaseInput(**{**body.model_dump(), "case_id": case_id})
    try:
        handle = await client.start_workflow(
            CaseWorkflow.run,
            opened,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError as exc:
        raise Problem(
            409,
            "case-exists",
            f"case {case_id} already exists (workflow {workflow_id}); "
            "a case id opens one case only",
            case_id=case_id,
            workflow_id=workflow_id,
        ) from exc
    log.info("case opened", office=opened.office, category=opened.violation_category)
    response.headers["Location"] = f"/cases/{case_id}"
    return OpenedCase(
        case_id=case_id,
        workflow_id=workflow_id,
        run_id=handle.result_run_id,
        temporal_ui_url=workflow_ui_url(
            settings.temporal_ui_url, settings.temporal_namespace, workflow_id
        ),
    )


@router.get("/{case_id}", response_model=CaseView, responses={404: PROBLEM_RESPONSES[404]})
async def get_case(
    case_id: str, client: TemporalClient, pool: DbPool, settings: AppSettings
) -> CaseView:
    """The live state while the case runs; the register row once it is closed."""
    workflow_id = _bind(case_id)
    ui_url = workflow_ui_url(settings.temporal_ui_url, settings.temporal_namespace, workflow_id)
    handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id)
    try:
        description = await handle.describe()
        if description.status == WorkflowExecutionStatus.RUNNING:
            async with _answer_within(case_id, settings.case_answer_timeout_s):
                state = await handle.query(CaseWorkflow.state)
            return _view_from_state(state, ui_url)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    row = await pool.fetchrow(f"SELECT {_REGISTER_COLUMNS} FROM cases WHERE case_id = $1", case_id)
    if row is None:
        raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id)
    return CaseView(source="register", temporal_ui_url=ui_url, **dict(row))


def _view_from_state(state: CaseState, ui_url: str | None) -> CaseView:
    order = state.order
    return CaseView(
        case_id=state.case_id,
        workflow_id=state.workflow_id,
        source="workflow",
        stage=state.stage,
        outcome=state.outcome,
        office=state.opened.office,
        violation_category=state.opened.violation_category,
        subject_name=state.opened.subject.name,
        deadline_at=order.deadline.due_at if order and state.stage == "rectifying" else None,
        opened_at=state.opened_at,
        closed_at=state.closed_at,
        waiting_for=state.waiting_for,
        temporal_ui_url=ui_url,
        live=state,
    )


@asynccontextmanager
async def _answer_within(case_id: str, seconds: float) -> AsyncIterator[None]:
    """A case whose workflow does not answer (no worker polling) is a 504, not a hung request."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        raise Problem(
            504,
            "case-not-answering",
            f"case {case_id} did not answer within {seconds:g} s (is a worker running?); "
            "a command may still take effect: read the case before sending it again",
            case_id=case_id,
        ) from exc


async def _command(
    client: Client, pool: Any, settings: Settings, case_id: str, update: Any, cmd: Any
) -> CaseState:
    """Send one update; a refusal becomes 409 with the workflow's reason, no case 404."""
    workflow_id = _bind(case_id)
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    try:
        async with _answer_within(case_id, settings.case_answer_timeout_s):
            state: CaseState = await handle.execute_update(update, cmd)
        return state
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise Problem(409, "command-refused", reason, case_id=case_id) from exc
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        closed = await pool.fetchrow(
            "SELECT outcome FROM cases WHERE case_id = $1 AND closed_at IS NOT NULL", case_id
        )
        if closed is not None:
            raise Problem(
                409,
                "command-refused",
                f"case {case_id} is closed (outcome: {closed['outcome']})",
                case_id=case_id,
            ) from exc
        raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id) from exc


_COMMAND_RESPONSES: dict[int | str, dict[str, Any]] = {
    k: PROBLEM_RESPONSES[k] for k in (404, 409, 422, 504)
}


@router.post("/{case_id}/filing-decision", responses=_COMMAND_RESPONSES)
async def decide_filing(
    case_id: str,
    body: DecideFiling,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
) -> CaseState:
    """File the case, decline it, or transfer the clue; summary disposal for illegal sites."""
    return await _command(client, pool, settings, case_id, CaseWorkflow.decide_filing, body)


@router.post("/{case_id}/interview/schedule", responses=_COMMAND_RESPONSES)
async def schedule_interview(
    case_id: str,
    body: ScheduleInterview,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
) -> CaseState:
    """Give notice of the interview: time, place, reason, who from the party must attend."""
    return await _command(client, pool, settings, case_id, CaseWorkflow.schedule_interview, body)


@router.post("/{case_id}/interview/record", responses=_COMMAND_RESPONSES)
async def record_interview(
    case_id: str,
    body: RecordInterview,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
) -> CaseState:
    """Record the interview held (two officials at least)."""
    return await _command(client, pool, settings, case_id, CaseWorkflow.record_interview, body)


@router.post("/{case_id}/rectification-order", responses=_COMMAND_RESPONSES)
async def issue_rectification_order(
    case_id: str,
    body: IssueRectificationOrder,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
) -> CaseState:
    """Order rectification within a time limit; the deadline timer starts."""
    return await _command(
        client, pool, settings, case_id, CaseWorkflow.issue_rectification_order, body
    )


@router.post("/{case_id}/rectification-report", responses=_COMMAND_RESPONSES)
async def submit_rectification_report(
    case_id: str,
    body: SubmitRectificationReport,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
) -> CaseState:
    """The party's rectification report, with its evidence."""
    return await _command(
        client, pool, settings, case_id, CaseWorkflow.submit_rectification_report, body
    )


@router.post("/{case_id}/verification", responses=_COMMAND_RESPONSES)
async def record_verification(
    case_id: str,
    body: RecordVerification,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
) -> CaseState:
    """An officer's verification: pass closes the case as rectified, fail escalates."""
    return await _command(client, pool, settings, case_id, CaseWorkflow.record_verification, body)


@router.post("/{case_id}/fine-decision", responses=_COMMAND_RESPONSES)
async def decide_fine(
    case_id: str,
    body: DecideFine,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
) -> CaseState:
    """Decide the fine on an escalated case; closes it as penalized."""
    return await _command(client, pool, settings, case_id, CaseWorkflow.decide_fine, body)
