"""Case endpoints: open a case and read it (commands: api/routes/commands.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Response, status
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import problems
from api.auth import CASE_OPENING, CASE_READING, AccessRoute
from api.case_calls import bind_case, find_interruption, not_answering, stamped
from api.case_records import CaseRecords
from api.deps import Admitted, AppSettings, DbPool, Keys, TemporalClient
from api.intake import DetectionInbox
from api.problems import Problem
from api.read_models import Interruption
from api.schemas import CaseAlert, CaseView, OpenCaseRequest, OpenedCase
from domain.case import CaseRun, Detections
from domain.models import OpenCaseInput
from wiring.api_keys import ApiKey
from wiring.temporal import workflow_ui_url
from workflows.case import CaseWorkflow
from workflows.search import case_search_attributes

router = APIRouter(prefix="/cases", tags=["cases"], route_class=AccessRoute)
log = structlog.get_logger(__name__)


def _assign_case_id() -> str:
    return f"RC-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:12]}"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OpenedCase,
    responses=problems.responses((409, "a case with this id exists"), 413, 422, 429),
)
async def open_case(
    body: OpenCaseRequest,
    client: TemporalClient,
    settings: AppSettings,
    keyring: Keys,
    response: Response,
    caller: Annotated[ApiKey, Depends(CASE_OPENING)],
    _admitted: Admitted,  # after the access rule: 401/403 first, then 429 while behind
) -> OpenedCase:
    """Start the case's workflow. The same case id twice is refused: never two workflows."""
    body = stamped(body, caller)  # the opening's audit entry names the key
    case_id = body.case_id or _assign_case_id()
    workflow_id = bind_case(case_id)
    opened = OpenCaseInput(**{**body.model_dump(), "case_id": case_id})
    try:
        handle = await client.start_workflow(
            CaseWorkflow.run,
            CaseRun.of(opened, history_limit=settings.case_history_limit),
            id=workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=case_search_attributes(
                opened, keyring.subject_digests(opened.subject.identifiers)
            ),
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
    log.info("case workflow started", office=opened.office, category=opened.violation_category)
    response.headers["Location"] = f"/cases/{case_id}"
    return OpenedCase(
        case_id=case_id,
        workflow_id=workflow_id,
        run_id=handle.result_run_id,
        temporal_ui_url=workflow_ui_url(
            settings.temporal_ui_url, settings.temporal_namespace, workflow_id
        ),
    )


@router.get(
    "/{case_id}",
    response_model=CaseView,
    responses=problems.responses(404, (409, "the case did not open, with the reason"), 504),
    dependencies=[Depends(CASE_READING)],
)
async def get_case(
    case_id: str, client: TemporalClient, pool: DbPool, settings: AppSettings
) -> CaseView:
    """The case's whole state from its workflow, open or closed; its register row, documents
    and penalty decision when the workflow cannot answer (failed, terminated, no worker)."""
    workflow_id = bind_case(case_id)
    ui_url = workflow_ui_url(settings.temporal_ui_url, settings.temporal_namespace, workflow_id)
    handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id)
    timed_out = found = False
    try:
        async with asyncio.timeout(settings.case_answer_timeout_s):
            state = await handle.query(CaseWorkflow.state)
        if state.step == 0 and (reason := await _failure(handle)) is not None:
            raise Problem(409, "case-not-opened", reason, case_id=case_id)  # never registered
        view = CaseView.from_state(state, ui_url)
        if not state.closed:
            # A terminated run still answers by replay: say how it ended.
            ended = await find_interruption(client, case_id)
            if ended is not None:
                view.interrupted = Interruption.model_validate(ended.register_value())
        return await _with_records(pool, view)
    except TimeoutError:
        timed_out = found = True
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        found = True
        log.info("case state not answered: reading the register", reason=str(exc))
    except RPCError as exc:
        found = exc.status != RPCStatusCode.NOT_FOUND
        if found:
            log.warning("case state not answered: reading the register", reason=exc.message)

    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        records = CaseRecords(conn)
        row = await records.register(case_id)
        if row is not None:
            view = row.view(
                await records.issued(case_id), await records.decided_penalty(case_id), ui_url
            )
            view.interrupted = await records.interruption(case_id)
            return await _with_records(pool, view)
    if timed_out:
        raise not_answering(case_id, settings.case_answer_timeout_s)
    if found and (reason := await _failure(handle)) is not None:
        raise Problem(409, "case-not-opened", reason, case_id=case_id)
    raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id)


async def _with_records(pool: Any, view: CaseView) -> CaseView:
    """The view with the inbox's count and latest detections (exact, not the workflow's
    coalesced news) and the case's alerts."""
    count, latest = await DetectionInbox(pool).summary(view.case_id)
    view.detections = Detections(count=count, latest=latest)
    rows = await pool.fetch(
        "SELECT kind, raised_at, detail FROM alerts WHERE case_id = $1 ORDER BY id", view.case_id
    )
    view.alerts = [CaseAlert.model_validate(dict(row)) for row in rows]
    return view


async def _failure(handle: WorkflowHandle[Any, Any]) -> str | None:
    """Why a case's workflow failed before it was registered (e.g. an unknown category)."""
    try:
        if (await handle.describe()).status != WorkflowExecutionStatus.FAILED:
            return None
        await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause
        return cause.message if isinstance(cause, ApplicationError) else str(cause)
    except RPCError:
        return None
    return "the case did not open"
