"""Case endpoints: open a case and read it (commands: api/routes/commands.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Response, status
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Caller
from api.case_calls import PROBLEM_RESPONSES, answer_within, bind_case, stamped
from api.deps import AppSettings, DbPool, TemporalClient
from api.problems import Problem
from api.schemas import CaseView, OpenCaseRequest, OpenedCase
from domain.models import (
    CaseState,
    OpenCaseInput,
)
from wiring.temporal import workflow_ui_url
from workflows.case import CaseWorkflow

router = APIRouter(prefix="/cases", tags=["cases"])
log = structlog.get_logger(__name__)

_REGISTER_COLUMNS = """
    case_id, workflow_id, stage, outcome, office, violation_category, subject_name,
    deadline_at, opened_at, closed_at
"""


def _assign_case_id() -> str:
    return f"RC-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:12]}"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OpenedCase,
    responses={409: PROBLEM_RESPONSES[409], 422: PROBLEM_RESPONSES[422]},
)
async def open_case(
    body: OpenCaseRequest,
    client: TemporalClient,
    settings: AppSettings,
    response: Response,
    caller: Caller,
) -> OpenedCase:
    """Start the case's workflow. The same case id twice is refused: never two workflows."""
    body = stamped(body, caller)  # the opening's audit entry names the key
    case_id = body.case_id or _assign_case_id()
    workflow_id = bind_case(case_id)
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
    workflow_id = bind_case(case_id)
    ui_url = workflow_ui_url(settings.temporal_ui_url, settings.temporal_namespace, workflow_id)
    handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id)
    description = None
    try:
        description = await handle.describe()
        if description.status == WorkflowExecutionStatus.RUNNING:
            async with answer_within(case_id, settings.case_answer_timeout_s):
                state = await handle.query(CaseWorkflow.state)
            return _view_from_state(state, ui_url)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    row = await pool.fetchrow(f"SELECT {_REGISTER_COLUMNS} FROM cases WHERE case_id = $1", case_id)
    if row is None:
        if description is not None and description.status == WorkflowExecutionStatus.FAILED:
            raise Problem(409, "case-not-opened", await _failure(handle), case_id=case_id)
        raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id)
    return CaseView(source="register", temporal_ui_url=ui_url, **dict(row))


async def _failure(handle: WorkflowHandle[Any, Any]) -> str:
    """Why a case's workflow failed before it was registered (e.g. an unknown category)."""
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause
        return cause.message if isinstance(cause, ApplicationError) else str(cause)
    return "the case did not open"


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
