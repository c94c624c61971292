"""Talking to a case's workflow from a route: bounded waits, refusals as problem details, and
no silent reopening: a case whose run ended without an outcome answers 409 until an operator
reopens or closes it, and the register is told (through a workflow: the API never writes it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import structlog
from pydantic import BaseModel
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistoryEventFilterType,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.problems import Problem
from domain.case import Receipt
from domain.models import CaseCommand, case_workflow_id
from domain.operator_models import CaseInterruption, InterruptedStatus
from domain.records import UNSTORABLE
from wiring.api_keys import ApiKey
from wiring.codec import decrypt_with
from wiring.settings import Settings
from workflows.case import CASE_NOT_OPENED, COMMAND_REFUSED
from workflows.operator import MarkCaseInterruptedWorkflow, interrupted_workflow_id

CommandT = TypeVar("CommandT", bound=BaseModel)
log = structlog.get_logger(__name__)

# How a run can end without an outcome. COMPLETED has one (closed), CONTINUED_AS_NEW goes on.
INTERRUPTED: dict[WorkflowExecutionStatus, InterruptedStatus] = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.CANCELED: "canceled",
}


def stamped(cmd: CommandT, by: ApiKey) -> CommandT:
    """The command with the caller's key prefix as `acting_key`; a body may not name one."""
    if "acting_key" in cmd.model_fields_set:
        message = "is set by the API from the key the request is sent with; leave it out"
        raise Problem.invalid([("acting_key", message)])
    return cmd.model_copy(update={"acting_key": by.prefix})


def bind_case(case_id: str) -> str:
    """Bind the case to every log line of this request; return its workflow id."""
    workflow_id = case_workflow_id(case_id)
    structlog.contextvars.bind_contextvars(case_id=case_id, workflow_id=workflow_id)
    return workflow_id


def not_answering(case_id: str, seconds: float) -> Problem:
    return Problem(
        504,
        "case-not-answering",
        f"case {case_id} did not answer within {seconds:g} s (is a worker running?); "
        "a command may still take effect: read the case before sending it again",
        case_id=case_id,
    )


@asynccontextmanager
async def answer_within(case_id: str, seconds: float) -> AsyncIterator[None]:
    """A case whose workflow does not answer (no worker polling) is a 504, not a hung request."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        raise not_answering(case_id, seconds) from exc


def refusal(exc: WorkflowUpdateFailedError) -> str | None:
    """The reason a validator or handler refused an update with; None: it failed otherwise."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type == COMMAND_REFUSED:
        return cause.message
    return None


def unstorable(exc: WorkflowUpdateFailedError) -> str | None:
    """Why the database refused the command's step as data (nothing was written), or None."""
    cause: BaseException | None = exc.cause
    while isinstance(cause, FailureError):
        if isinstance(cause, ApplicationError) and cause.type == UNSTORABLE:
            return cause.message
        cause = cause.cause
    return None


async def send_command(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    case_id: str,
    name: str,
    cmd: CaseCommand,
    *,
    by: ApiKey,
) -> Receipt:
    """Send the update `name` as the key `by`; a refusal becomes 409 with the workflow's
    reason, no case 404. The workflow audits the key's prefix: a body cannot name another key."""
    cmd = stamped(cmd, by)
    workflow_id = bind_case(case_id)
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    try:
        async with answer_within(case_id, settings.case_answer_timeout_s):
            receipt: Receipt = await handle.execute_update(name, cmd, result_type=Receipt)
        return receipt
    except WorkflowUpdateFailedError as exc:
        reason = refusal(exc)
        if reason is not None:
            raise Problem(409, "command-refused", reason, case_id=case_id) from exc
        if (refused := unstorable(exc)) is not None:
            raise Problem(422, "unstorable-data", refused, case_id=case_id) from exc
        if (problem := await interrupted_problem(client, case_id)) is not None:
            raise problem from exc  # the run ended while the command was on its way
        raise
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
        if (problem := await interrupted_problem(client, case_id)) is not None:
            raise problem from exc
        raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id) from exc


# --- a case whose run ended without an outcome ------------------------------------------------


async def interrupted_problem(client: Client, case_id: str) -> Problem | None:
    """409 `case-interrupted` when the case's latest run failed, was terminated, timed out or
    was cancelled (the register is then marked, once per run); None when it is running, closed
    with an outcome, never opened, or unknown to Temporal."""
    interruption = await find_interruption(client, case_id)
    return None if interruption is None else interrupted(interruption)


def interrupted(interruption: CaseInterruption) -> Problem:
    """The 409 for a case an operator must decide on, naming the case, how and when its run
    ended, and the two commands that decide."""
    case_id, status = interruption.case_id, interruption.status
    ended = (
        f"its run ended {interruption.ended_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, "
        if interruption.ended_at is not None
        else "its run ended, "
    )
    why = f": {interruption.detail}" if interruption.detail else ""
    return Problem(
        409,
        "case-interrupted",
        f"case {case_id} is {status.replace('_', ' ')} ({ended}run id {interruption.run_id}"
        f"{why}): an operator decides — rectify cases reopen {case_id} --reason TEXT --actor NAME"
        f" or rectify cases close {case_id} --reason TEXT --actor NAME",
        case_id=case_id,
        workflow_id=case_workflow_id(case_id),
        run_status=status,
        run_id=interruption.run_id,
        ended_at=None if interruption.ended_at is None else interruption.ended_at.isoformat(),
    )


async def find_interruption(client: Client, case_id: str) -> CaseInterruption | None:
    """How the case's latest run ended, if without an outcome; recorded in the register (by
    `MarkCaseInterruptedWorkflow`) when found. None: running, completed, continued, never
    opened (its opening refused: a later detection may open it afresh), or no run at all."""
    workflow_id = case_workflow_id(case_id)
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    status = INTERRUPTED.get(described.status) if described.status is not None else None
    if status is None:
        return None
    run = client.get_workflow_handle(workflow_id, run_id=described.run_id)
    detail, never_opened = await _how_it_ended(client, run)
    if never_opened:
        return None
    interruption = CaseInterruption(
        case_id=case_id,
        run_id=described.run_id,
        status=status,
        ended_at=described.close_time,
        detected_at=datetime.now(UTC),
        detail=detail,
    )
    await _mark(client, interruption, described.task_queue)
    return interruption


async def _how_it_ended(client: Client, run: WorkflowHandle[Any, Any]) -> tuple[str | None, bool]:
    """The run's close event: the reason or failure it ended with, and whether it is a case
    that never opened (its opening refused, e.g. an unknown category)."""
    try:
        async for event in run.fetch_history_events(
            event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
        ):
            return _close_detail(decrypt_with(client.data_converter, event))
    except RPCError as exc:
        log.warning("case run's end not read", reason=exc.message)
    return None, False


def _close_detail(event: HistoryEvent) -> tuple[str | None, bool]:
    if event.HasField("workflow_execution_failed_event_attributes"):
        failure = event.workflow_execution_failed_event_attributes.failure
        kind = (
            failure.application_failure_info.type
            if failure.HasField("application_failure_info")
            else ""
        )
        message = failure.message
        if failure.HasField("cause") and failure.cause.message:
            message = f"{message}: {failure.cause.message}"
        return message or None, kind == CASE_NOT_OPENED
    if event.HasField("workflow_execution_terminated_event_attributes"):
        attrs = event.workflow_execution_terminated_event_attributes
        by = f" (by {attrs.identity})" if attrs.identity else ""
        return (f"{attrs.reason}{by}" if attrs.reason else None), False
    if event.HasField("workflow_execution_timed_out_event_attributes"):
        return "the run's execution timeout passed", False
    return None, False


async def _mark(client: Client, interruption: CaseInterruption, task_queue: str) -> None:
    """Start the workflow that records it in the register: one per run, however often it is
    found (a finding of a run marked before starts nothing). Best effort: the 409 stands
    whether or not the register can be told now; the next finding tries again."""
    try:
        await client.start_workflow(
            MarkCaseInterruptedWorkflow.run,
            interruption,
            id=interrupted_workflow_id(interruption.case_id, interruption.run_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return  # this run was marked before
    except RPCError as exc:
        log.warning("case interruption not recorded", reason=exc.message)
        return
    log.info(
        "case interrupted: recording it in the register",
        run_id=interruption.run_id,
        status=interruption.status,
    )
