"""POST /events: enforcement systems report detections; each is recorded in the detections
inbox and routed to its office's case for the subject and category (api/intake.py).

- The first detection of an office, category and subject opens the case (201, `opened`): its
  workflow is started, nothing more. Later ones are recorded against it (200, `joined`): one
  INSERT, no call to Temporal; the workflow hears of them coalesced (api/detection_news.py).
- The same key again with the same body is `duplicate`; with another body, 409 naming the key.
- A detection for a case whose run failed or was terminated is refused (409) until an operator
  reopens or closes it: it never silently opens a new run.
- While the worker is behind, a detection that would open a case is answered 429 with
  Retry-After; one that joins an open case is still recorded (it costs the worker nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import structlog
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api import problems
from api.admission import Admission
from api.auth import EVENT, EVENT_BATCH, AccessRoute
from api.case_calls import stamped
from api.deps import AdmissionControl, AppSettings, DbPool, TemporalClient
from api.detection_news import DetectionNews
from api.intake import DetectionInbox, Routed, Sighting, subject_key
from api.problems import Problem, validation_problem
from domain.case import CaseRun
from domain.commands import CaseEvent, EventReceipt, opened_by_event
from domain.models import NonEmpty, OpenCaseInput, Severity, Subject, case_workflow_id
from domain.policy import unknown_category
from wiring.api_keys import ApiKey
from wiring.keys import Keyring
from wiring.policy_files import PolicyNotFound, PolicySet, load_policies, local_date
from wiring.settings import Settings
from workflows.case import CaseWorkflow
from workflows.search import case_search_attributes

router = APIRouter(prefix="/events", tags=["events"], route_class=AccessRoute)
log = structlog.get_logger(__name__)

# Case starts in flight at once for one batch (a batch's joins are one INSERT each, no call).
BATCH_CONCURRENCY = 8
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
    """A detection, and what is needed to open a case for it if none is open."""

    model_config = ConfigDict(json_schema_extra={"examples": [cast(JsonValue, EXAMPLE)]})

    subject: Subject
    violation_category: NonEmpty
    legal_basis: NonEmpty
    office: NonEmpty
    severity: Severity = Severity.GENERAL

    def body(self) -> dict[str, Any]:
        """What the inbox keeps (and hashes): the event as sent, without who sent it."""
        return self.model_dump(mode="json", exclude={"acting_key"})


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


class Intake:
    """What delivering detections needs, built once per app: the inbox, the policies (to
    refuse a category no policy knows before it would open a case that cannot open), and the
    throttle on healing starts."""

    def __init__(self, pool: Any, settings: Settings, keyring: Keyring) -> None:
        self.inbox = DetectionInbox(pool, keyring)
        self.keyring = keyring  # the subject digests of the cases it starts
        self.policies: PolicySet = load_policies(settings.policies_dir)
        self.news: DetectionNews | None = None  # set by the app's lifespan
        self._started: dict[str, float] = {}  # case id → when this process last ensured it

    def refusal(self, event: EventIn) -> Problem | None:
        try:
            # The policy in force today, as the case's opening will ask for.
            policy = self.policies.active(local_date(datetime.now(UTC)))
        except PolicyNotFound as exc:
            return Problem(409, "event-refused", f"no case can open: {exc}")
        reason = unknown_category(policy, event.violation_category)
        return None if reason is None else Problem(409, "event-refused", reason)

    def due_for_start(self, case_id: str) -> bool:
        """At most one healing start per case every few seconds from this process."""
        now = time.monotonic()
        if now - self._started.get(case_id, 0.0) < 5.0:
            return False
        if len(self._started) > 10_000:
            self._started.clear()
        self._started[case_id] = now
        return True


def _intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake  # made by the app's lifespan
    return intake


IntakeDep = Annotated[Intake, Depends(_intake)]


def _opening(event: EventIn, case_id: str) -> OpenCaseInput:
    return OpenCaseInput(
        case_id=case_id,
        subject=event.subject,
        violation_category=event.violation_category,
        legal_basis=event.legal_basis,
        severity=event.severity,
        office=event.office,
        opened_by=opened_by_event(event.idempotency_key),
        acting_key=event.acting_key,
    )


async def start_case(
    client: Client, settings: Settings, keyring: Keyring, opened: OpenCaseInput
) -> None:
    """Start the case's workflow; one already running for it is fine (a healing start)."""
    with contextlib.suppress(WorkflowAlreadyStartedError):
        # A run that ended: the next detection finds it in the register.
        await client.start_workflow(
            CaseWorkflow.run,
            CaseRun.of(opened, history_limit=settings.case_history_limit),
            id=case_workflow_id(opened.case_id),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A case id opens one case: a run that ended is never started again from here.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=case_search_attributes(
                opened, keyring.subject_digests(opened.subject.identifiers)
            ),
        )


async def heal_case(client: Client, settings: Settings, intake: Intake, case_id: str) -> None:
    """Start the case of recorded detections whose workflow never started (its opener's request
    died between recording and starting), from its opening detection."""
    stored = await intake.inbox.opener(case_id)
    if stored is None:
        return
    opener = EventIn.model_validate(stored)
    log.warning("starting a case whose opening detection never started it", case_id=case_id)
    await start_case(client, settings, intake.keyring, _opening(opener, case_id))


def _receipt(event: EventIn, routed: Routed, result: str) -> EventReceipt:
    assert routed.detection is not None
    return EventReceipt.model_validate(
        {
            "case_id": routed.case_id,
            "workflow_id": case_workflow_id(routed.case_id),
            "idempotency_key": event.idempotency_key,
            "result": result,
            "stage": routed.stage or ("filing" if result == "opened" else None),
            "detection": routed.detection,
        }
    )


def interrupted(routed: Routed) -> Problem:
    info = routed.interrupted or {}
    status = info.get("status", "interrupted")
    return Problem(
        409,
        "case-interrupted",
        f"case {routed.case_id} is {status} (its run ended without an outcome"
        f"{', found ' + str(info['detected_at']) if info.get('detected_at') else ''}): "
        f"an operator decides — rectify cases reopen {routed.case_id} --reason … "
        f"or rectify cases close {routed.case_id} --reason …",
        case_id=routed.case_id,
        workflow_id=case_workflow_id(routed.case_id),
        run_status=status,
        run_id=info.get("run_id"),
    )


def _sighting(event: EventIn, refusal: Problem | None, busy: Problem | None) -> Sighting:
    return Sighting(
        key=event.idempotency_key,
        office=event.office,
        category=event.violation_category,
        subject=subject_key(event.subject),
        event=event.body(),
        acting_key=event.acting_key,
        # A category no policy knows never opens a case; the worker behind opens none now.
        may_open=refusal is None and busy is None,
    )


async def deliver(
    client: Client,
    settings: Settings,
    intake: Intake,
    event: EventIn,
    busy: Problem | None,
) -> EventReceipt:
    """Record one detection and route it (one statement), then start its case if it opened
    one. `busy`: the 429 for a detection that would open a case (the worker is behind)."""
    refusal = intake.refusal(event)
    routed = await intake.inbox.record(_sighting(event, refusal, busy))
    return await settle(client, settings, intake, event, routed, refusal or busy)


async def settle(
    client: Client,
    settings: Settings,
    intake: Intake,
    event: EventIn,
    routed: Routed,
    not_now: Problem | None,
) -> EventReceipt:
    """Answer a routed detection: its receipt, or the problem why it went nowhere; start the
    case it opened. `not_now`: why it may not open a case (unknown category, worker behind)."""
    if routed.kind == "reused_key":
        raise Problem(
            409,
            "idempotency-key-reused",
            f"idempotency key {event.idempotency_key!r} was already used for another event; "
            "a key names one event: send this one under a new key",
            idempotency_key=event.idempotency_key,
        )
    if routed.kind == "interrupted":
        raise interrupted(routed)
    if routed.kind == "would_open":
        assert not_now is not None
        raise not_now
    try:
        if routed.kind == "opened":
            await start_case(client, settings, intake.keyring, _opening(event, routed.case_id))
            log.info("case opened by a detection", case_id=routed.case_id)
        elif (
            routed.kind == "duplicate"
            and routed.stage is None
            and intake.due_for_start(routed.case_id)
        ):
            # A retry of a detection whose case is not registered yet: its opener's request
            # may have died before the start. Starting again is harmless (a running case is
            # kept).
            await heal_case(client, settings, intake, routed.case_id)
    except RPCError as exc:
        log.warning("case start failed", case_id=routed.case_id, error=exc.message)
        raise Problem(
            503,
            "temporal-unavailable",
            f"the event was recorded but its case did not start ({exc.message}); "
            "send it again: it counts once",
            headers={"Retry-After": "5"},
        ) from exc
    if intake.news is not None and routed.kind == "joined":
        intake.news.note(routed.case_id)
    return _receipt(event, routed, routed.kind)


async def _busy(admission: Admission) -> Problem | None:
    """The 429 for detections that would open a case while the worker is behind, or None."""
    retry_after = await admission.retry_after()
    return None if retry_after is None else admission.refusal(retry_after)


@router.post(
    "",
    response_model=EventReceipt,
    responses={
        201: {"model": EventReceipt, "description": "the event opened a new case"},
        **problems.responses(
            (409, "the key was used for another event, or the case's run was interrupted"),
            413,
            422,
            (429, "the worker is behind: the event would open a case; retry after"),
        ),
    },
)
async def post_event(
    body: EventIn,
    request: Request,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
    intake: IntakeDep,
    admission: AdmissionControl,
    response: Response,
    caller: Annotated[ApiKey, Depends(EVENT)],
) -> EventReceipt:
    """Deliver one event: 201 when it opened a case, 200 when it joined one or was a duplicate."""
    receipt = await deliver(
        client,
        settings,
        intake,
        stamped(body, caller),
        await _busy(admission),
    )
    response.status_code = 201 if receipt.result == "opened" else 200
    return receipt


@router.post(
    "/batch",
    response_model=BatchResult,
    responses=problems.responses(413, 422),
)
async def post_events(
    body: EventBatch,
    request: Request,
    client: TemporalClient,
    pool: DbPool,
    settings: AppSettings,
    intake: IntakeDep,
    admission: AdmissionControl,
    caller: Annotated[ApiKey, Depends(EVENT_BATCH)],
) -> BatchResult:
    """Deliver up to 500 events; each item is answered on its own (one failing stops none).
    The batch is recorded in three statements; only the items that open a case call Temporal,
    a few at a time, so one batch never holds more than that many case starts."""
    gate = asyncio.Semaphore(BATCH_CONCURRENCY)
    busy = await _busy(admission)
    events: dict[int, tuple[EventIn, Problem | None]] = {}
    answers: dict[int, BatchItem] = {}
    for index, raw in enumerate(body.events):
        try:
            event = stamped(EventIn.model_validate(raw), caller)
        except ValidationError as exc:
            invalid = validation_problem(exc.errors())
            answers[index] = BatchItem(index=index, status=422, problem=invalid.document())
            continue
        except Problem as problem:
            answers[index] = BatchItem(
                index=index, status=problem.status, problem=problem.document()
            )
            continue
        events[index] = (event, intake.refusal(event) or busy)
    routed = await intake.inbox.record_many(
        [_sighting(event, not_now, None) for event, not_now in events.values()]
    )

    async def one(index: int, event: EventIn, not_now: Problem | None, routed: Routed) -> None:
        try:
            receipt = await settle(client, settings, intake, event, routed, not_now)
        except Problem as problem:
            answers[index] = BatchItem(
                index=index, status=problem.status, problem=problem.document()
            )
            return
        status = 201 if receipt.result == "opened" else 200
        answers[index] = BatchItem(index=index, status=status, receipt=receipt)

    async def gated(index: int, event: EventIn, not_now: Problem | None, routed: Routed) -> None:
        async with gate:
            await one(index, event, not_now, routed)

    starts = []
    for (index, (event, not_now)), routed_one in zip(events.items(), routed, strict=True):
        if routed_one.kind == "opened" or (
            routed_one.kind == "duplicate" and routed_one.stage is None
        ):
            starts.append(gated(index, event, not_now, routed_one))  # calls Temporal
        else:
            await one(index, event, not_now, routed_one)  # answered from the inbox alone
    await asyncio.gather(*starts)
    results = [answers[index] for index in range(len(body.events))]
    counts: dict[str, int] = {"opened": 0, "joined": 0, "duplicate": 0}
    for item in results:
        if item.receipt is not None:
            counts[item.receipt.result] += 1
    failed = sum(1 for item in results if item.receipt is None)
    return BatchResult(results=list(results), failed=failed, **counts)
