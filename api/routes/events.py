"""POST /events: enforcement systems report facts; each is routed to the subject's open case.

Routing: the subject's primary identifier and the violation category name the case. The case id
is `EV-{hash}-{n}`, n counting the cases for that subject and category already closed in the
register, so a repeated detection joins the open case and one after it closed opens a new case.
Delivery is update-with-start (`record_event`): the case starts if it is not running, and the
workflow answers at once whether this event opened it, joined it, or was a duplicate of a key it
has seen — so concurrent duplicates take effect once, and a batch answers per item. (Signal-with-
start would deliver the event too, but could not say which of the three happened.)
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any, cast

import asyncpg
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from api import problems
from api.auth import EVENT, EVENT_BATCH, AccessRoute
from api.case_calls import answer_within, bind_case, stamped
from api.deps import AppSettings, DbPool, TemporalClient
from api.problems import Problem, validation_problem
from domain.commands import CaseEvent, EventReceipt, opened_by_event
from domain.models import NonEmpty, OpenCaseInput, Severity, Subject
from wiring.api_keys import ApiKey
from wiring.settings import Settings
from workflows.case import CaseWorkflow
from workflows.search import case_search_attributes

router = APIRouter(prefix="/events", tags=["events"], route_class=AccessRoute)

IDENTIFIER_PRIORITY = (
    "unified_social_credit_code",
    "app_package",
    "domain",
    "icp_filing",
    "account_id",
)
BATCH_CONCURRENCY = 16
EXAMPLE: dict[str, Any] = {
    "idempotency_key": "monitoring-2026-11-28-000123",
    "type": "violation_detected",
    "source": "monitoring",
    "occurred_at": "2026-11-28T09:30:00+08:00",
    "payload": {"url": "https://news.example.cn/item/1", "evidence": "snapshot-123"},
    "subject": {
        "kind": "website",
        "name": "Example News",
        "identifiers": {"domain": "news.example.cn"},
    },
    "violation_category": "prohibited_information",
    "legal_basis": "Cybersecurity Law art. 61",
    "office": "beijing",
}


class EventIn(CaseEvent):
    """An event, and what is needed to open a case for it if none is open."""

    model_config = ConfigDict(json_schema_extra={"examples": [cast(JsonValue, EXAMPLE)]})

    subject: Subject
    violation_category: NonEmpty
    legal_basis: NonEmpty
    office: NonEmpty
    severity: Severity = Severity.GENERAL

    def event(self) -> CaseEvent:
        return CaseEvent.model_validate(self.model_dump(include=set(CaseEvent.model_fields)))


class EventBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [cast(JsonValue, {"events": [EXAMPLE]})]}
    )

    # Each item is validated on its own, so one bad event is answered 422 in its place and the
    # others still go through; the schema shows the item's shape.
    events: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=500,
        json_schema_extra={"items": {"$ref": "#/components/schemas/EventIn"}},
    )


class BatchItem(BaseModel):
    index: int
    status: int
    receipt: EventReceipt | None = None
    problem: dict[str, Any] | None = Field(None, description="a problem document (RFC 9457)")


class BatchResult(BaseModel):
    results: list[BatchItem]
    opened: int
    joined: int
    duplicate: int
    failed: int


def case_prefix(event: EventIn) -> str:
    """`EV-{hash}`: the subject's primary identifier and the category, hashed."""
    identifiers = event.subject.identifiers.model_dump(exclude_none=True)
    name = next(key for key in IDENTIFIER_PRIORITY if key in identifiers)
    digest = hashlib.sha256(
        f"{event.violation_category}|{name}={identifiers[name]}".encode()
    ).hexdigest()
    return f"EV-{digest[:16]}"


async def _closed_before(pool: asyncpg.Pool, prefix: str) -> int:
    count = await pool.fetchval(
        "SELECT count(*) FROM cases WHERE case_id LIKE $1 AND closed_at IS NOT NULL",
        f"{prefix}-%",
    )
    return int(count)


async def deliver(
    client: Client, pool: asyncpg.Pool, settings: Settings, event: EventIn
) -> EventReceipt:
    prefix = case_prefix(event)
    for _ in range(3):  # a case that closes meanwhile moves the event to the next one
        case_id = f"{prefix}-{await _closed_before(pool, prefix) + 1}"
        workflow_id = bind_case(case_id)
        opened = OpenCaseInput(
            case_id=case_id,
            subject=event.subject,
            violation_category=event.violation_category,
            legal_basis=event.legal_basis,
            severity=event.severity,
            office=event.office,
            opened_by=opened_by_event(event.idempotency_key),
            acting_key=event.acting_key,
        )
        start = WithStartWorkflowOperation(
            CaseWorkflow.run,
            opened,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A case that never opened (e.g. unknown category) may be tried again.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=case_search_attributes(opened),
        )
        try:
            async with answer_within(case_id, settings.case_answer_timeout_s):
                receipt: EventReceipt = await client.execute_update_with_start_workflow(
                    CaseWorkflow.record_event, event.event(), start_workflow_operation=start
                )
            return receipt
        except WorkflowAlreadyStartedError:
            continue  # closed after we counted: count again
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
            if "is closed" in reason:  # closed after we counted: count again
                continue
            raise Problem(409, "event-refused", reason, case_id=case_id) from exc
    raise Problem(409, "event-refused", f"cases of {prefix} keep closing; send the event again")


@router.post(
    "",
    response_model=EventReceipt,
    responses={
        201: {"model": EventReceipt, "description": "the event opened a new case"},
        **problems.responses((409, "the case refused the event, with the reason"), 413, 422, 504),
    },
)
async def post_event(
    body: EventIn,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
    response: Response,
    caller: Annotated[ApiKey, Depends(EVENT)],
) -> EventReceipt:
    """Deliver one event: 201 when it opened a case, 200 when it joined one or was a duplicate."""
    receipt = await deliver(client, pool, settings, stamped(body, caller))
    response.status_code = 201 if receipt.result == "opened" else 200
    return receipt


@router.post(
    "/batch",
    response_model=BatchResult,
    responses=problems.responses(413, 422),
)
async def post_events(
    body: EventBatch,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
    caller: Annotated[ApiKey, Depends(EVENT_BATCH)],
) -> BatchResult:
    """Deliver up to 500 events; each item is answered on its own (one failing stops none)."""
    gate = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def one(index: int, raw: dict[str, Any]) -> BatchItem:
        try:
            event = EventIn.model_validate(raw)
        except ValidationError as exc:
            invalid = validation_problem(exc.errors())
            return BatchItem(index=index, status=422, problem=invalid.document())
        async with gate:
            try:
                receipt = await deliver(client, pool, settings, stamped(event, caller))
            except Problem as problem:
                return BatchItem(index=index, status=problem.status, problem=problem.document())
            return BatchItem(
                index=index, status=201 if receipt.result == "opened" else 200, receipt=receipt
            )

    results = await asyncio.gather(*(one(i, e) for i, e in enumerate(body.events)))
    counts: dict[str, int] = {"opened": 0, "joined": 0, "duplicate": 0}
    for item in results:
        if item.receipt is not None:
            counts[item.receipt.result] += 1
    failed = sum(1 for item in results if item.receipt is None)
    return BatchResult(results=list(results), failed=failed, **counts)
