"""Talking to a case's workflow from a route: bounded waits, refusals as problem details."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import structlog
from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.problems import Problem
from domain.case import Receipt
from domain.models import CaseCommand, case_workflow_id
from wiring.api_keys import ApiKey
from wiring.settings import Settings
from workflows.case import COMMAND_REFUSED

CommandT = TypeVar("CommandT", bound=BaseModel)


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
        if reason is None:
            raise
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
