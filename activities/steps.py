"""One activity per step of a case: its audit row, its register row, the documents it issues and
the deadlines it sets, all in one PostgreSQL transaction.

A step is written once under `{case_id}/{seq}`: the case and the step's number, never the run, so
a retry after a crash, or a later run of the same case, finds the step already written and gets
back what it wrote (the same deadlines, the same document numbers) without writing anything
again. Deadlines are counted here, on the calendar as it is when the step happens, and stored in
the step's audit row, so the workflow keeps them and replay never recounts them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deadlines import compute_deadline_on
from activities.documents import DocumentRepository
from activities.policy import (
    NO_POLICY_IN_FORCE,
    PolicyNotFound,
    PolicySet,
    PriorCasesRepository,
    case_policy,
    policy_slice,
)
from activities.register import CaseRegisterRepository
from domain.case import CaseState, apply_step
from domain.models import Deadline, Stage
from domain.records import (
    UNSTORABLE,
    DeadlineRequest,
    IssueDocumentRequest,
    OpeningRequest,
    OpeningResult,
    PeriodRequest,
    StepRecord,
    StepResult,
)

log = structlog.get_logger(__name__)

OPENED = "case_opened"
FILING_PERIOD = "filing"


def _deadlines_payload(deadlines: dict[str, Deadline]) -> dict[str, Any]:
    return {name: deadline.model_dump(mode="json") for name, deadline in deadlines.items()}


def _stored_deadlines(payload: dict[str, Any]) -> dict[str, Deadline]:
    stored = payload.get("deadlines") or {}
    return {name: Deadline.model_validate(value) for name, value in stored.items()}


def _latest(deadlines: dict[str, Deadline], names: list[str]) -> Deadline | None:
    chosen = [deadlines[name] for name in names if name in deadlines]
    return max(chosen, key=lambda d: d.due_at) if chosen else None


class StepActivities:
    """The activities every case step runs; registered on the worker as bound methods."""

    def __init__(self, pool: asyncpg.Pool, policies: PolicySet) -> None:
        self._pool = pool
        self._policies = policies

    @activity.defn(name="open_case")
    async def open_case(self, request: OpeningRequest) -> OpeningResult:
        """The opening step (below); data the database refuses fails it for good."""
        try:
            return await self._open_case(request)
        except asyncpg.DataError as exc:
            raise await self._refused(exc, request.opened.case_id, 1, OPENED) from None

    @activity.defn(name="record_step")
    async def record_step(self, step: StepRecord) -> StepResult:
        """One step (below); data the database refuses fails it for good."""
        try:
            return await self._record_step(step)
        except asyncpg.DataError as exc:
            raise await self._refused(exc, step.case_id, step.seq, step.action) from None

    async def _refused(
        self, exc: asyncpg.DataError, case_id: str, seq: int, action: str
    ) -> ApplicationError:
        """The step's transaction rolled back; the alert is written on its own, once (a retry
        after a crash finds it), so operators see what no retry can fix."""
        failure = unstorable(exc, case_id, seq, action)
        await self._pool.execute(
            "INSERT INTO alerts (idempotency_key, case_id, kind, detail) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            f"{case_id}:{seq}:{action}:{UNSTORABLE}",
            case_id,
            UNSTORABLE,
            {
                "seq": seq,
                "action": action,
                "error": type(exc).__name__,
                "sqlstate": exc.sqlstate,
                "message": failure.message,
            },
        )
        return failure

    async def _open_case(self, request: OpeningRequest) -> OpeningResult:
        """Fix the policy slice (with the subject's prior cases), count the filing deadline,
        write the register row and the first audit entry: one transaction."""
        opened = request.opened
        step = StepRecord(
            case_id=opened.case_id,
            workflow_id=request.workflow_id,
            office=opened.office,
            seq=1,
            action=OPENED,
            from_stage=None,
            to_stage=Stage.FILING,
            actor=opened.opened_by,
            occurred_at=request.opened_at,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            register = CaseRegisterRepository(conn)
            await register.lock_case(opened.case_id)
            stored = await register.find_step(step.idempotency_key)
            if stored is not None:
                try:
                    written_under = self._policies.get(stored["policy_version"])
                except PolicyNotFound as exc:  # the worker lost the version the case opened under
                    raise ApplicationError(
                        str(exc), type=NO_POLICY_IN_FORCE, non_retryable=True
                    ) from exc
                policy = policy_slice(
                    written_under, opened.violation_category, int(stored["prior_cases"])
                )
                return OpeningResult(
                    policy=policy,
                    filing_deadline=_stored_deadlines(stored)[FILING_PERIOD],
                    duplicate=True,
                )
            policy = case_policy(self._policies, request.opened_at, opened.violation_category, 0)
            lookback = timedelta(days=policy.repeat_offender.lookback_days)
            prior = await PriorCasesRepository(conn).count_prior_cases(
                opened.subject.identifiers,
                since=request.opened_at - lookback,
                before=request.opened_at,
                excluding_case_id=opened.case_id,
            )
            policy.prior_cases = prior
            period = policy.limits.filing_decision
            filing = await compute_deadline_on(
                conn, DeadlineRequest(start=request.opened_at, days=period.days, kind=period.kind)
            )
            payload: dict[str, Any] = {
                "policy_version": policy.version,
                "prior_cases": prior,
                "deadlines": _deadlines_payload({FILING_PERIOD: filing}),
            }
            if opened.acting_key:
                payload["acting_key"] = opened.acting_key
            await register.insert_case(
                opened, request.workflow_id, request.opened_at, policy.version
            )
            await register.append_audit(step, payload)
            snapshot = CaseState.new(opened, request.workflow_id, request.opened_at)
            snapshot.open_with(policy, filing)
            await register.advance_case(step, filing, snapshot.model_dump(mode="json"))
        log.info(
            "case opened",
            case_id=opened.case_id,
            policy_version=policy.version,
            prior_cases=prior,
        )
        return OpeningResult(policy=policy, filing_deadline=filing)

    async def _record_step(self, step: StepRecord) -> StepResult:
        """Write one step: deadlines counted, documents numbered, audit row, register row."""
        async with self._pool.acquire() as conn, conn.transaction():
            register = CaseRegisterRepository(conn)
            await register.lock_case(step.case_id)
            stored = await register.find_step(step.idempotency_key)
            documents = DocumentRepository(conn)
            if stored is not None:
                written = await documents.for_step(step.case_id, step.seq)
                log.info("case step found written", action=step.action, seq=step.seq)
                return StepResult(
                    seq=step.seq,
                    documents=written,
                    deadlines=_stored_deadlines(stored),
                    duplicate=True,
                )
            deadlines = {p.name: await _count(conn, p) for p in step.periods}
            issued = [
                await documents.issue_in_step(_document_request(step, draft_index, deadlines))
                for draft_index in range(len(step.documents))
            ]
            payload = dict(step.payload)
            if deadlines:
                payload["deadlines"] = _deadlines_payload(deadlines)
            if issued:
                payload["documents"] = [record.number for record in issued]
                payload["document"] = issued[0].number
            await register.append_audit(step, payload)
            pending = step.pending or _latest(deadlines, step.pending_periods)
            result = StepResult(seq=step.seq, documents=issued, deadlines=deadlines)
            await register.advance_case(step, pending, _after(step, result))
        log.info(
            "case step recorded",
            action=step.action,
            stage=step.to_stage.value,
            seq=step.seq,
            documents=[record.number for record in issued],
        )
        return result


def unstorable(exc: asyncpg.DataError, case_id: str, seq: int, action: str) -> ApplicationError:
    """A step the database refuses as data (text it cannot store, a number out of range): no
    retry can write it, so it fails at once instead of holding the case's lock for ever. Named
    by its class and SQLSTATE, never by its values (they may be personal data)."""
    kind = type(exc).__name__
    log.error(
        "case step refused by the database",
        case_id=case_id,
        seq=seq,
        action=action,
        error=kind,
        sqlstate=exc.sqlstate,
    )
    return ApplicationError(
        f"case {case_id} step {seq} ({action}) cannot be stored: the database refused its data"
        f" ({kind}, SQLSTATE {exc.sqlstate}); retrying cannot fix it",
        type=UNSTORABLE,
        non_retryable=True,
    )


def _after(step: StepRecord, result: StepResult) -> dict[str, Any] | None:
    """The case as of the step: the state it was given with the step applied."""
    if step.state is None:
        return None
    state = CaseState.model_validate(step.state)
    apply_step(state, step, result)
    return state.model_dump(mode="json")


async def _count(conn: Any, period: PeriodRequest) -> Deadline:
    return await compute_deadline_on(
        conn, DeadlineRequest(start=period.start, days=period.days, kind=period.kind)
    )


def _document_request(
    step: StepRecord, index: int, deadlines: dict[str, Deadline]
) -> IssueDocumentRequest:
    draft = step.documents[index]
    # `{seq}/{kind}`, and `{seq}/{kind}/{n}` for the n-th document of one kind in one step.
    same_kind = sum(1 for d in step.documents[: index + 1] if d.kind is draft.kind)
    name = f"{step.seq}/{draft.kind.value}" + (f"/{same_kind}" if same_kind > 1 else "")
    content = dict(draft.content)
    if deadlines:
        # What the party must know of the periods this step set: the last day and how it counts.
        content["deadlines"] = {
            name: {"last_day": d.last_day, "explanation": d.explanation}
            for name, d in deadlines.items()
        }
    return IssueDocumentRequest(
        case_id=step.case_id,
        workflow_id=step.workflow_id,
        step=name,
        kind=draft.kind,
        office=step.office,
        actor=step.actor,
        issued_at=step.occurred_at,
        title=draft.title,
        content=content,
    )
