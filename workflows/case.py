"""CaseWorkflow: one enforcement case, from opening to its outcome, with its deadline timer.

Deterministic: time from `workflow.now()`, every side effect in an activity, every value that may
change later (the deadline) computed by an activity and kept in state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.deadlines import DeadlineActivities
    from activities.register import CaseRegisterActivities
    from workflows.case_models import (
        CaseResult,
        CaseState,
        Deadline,
        DecideFine,
        FineDecision,
        Interview,
        IssuedWarning,
        IssueRectificationOrder,
        OpenCaseInput,
        Outcome,
        RecordInterview,
        RecordVerification,
        RectificationOrder,
        RectificationReport,
        ScheduleInterview,
        Stage,
        SubmitRectificationReport,
        Verification,
    )
    from workflows.records import AuditEntry, CaseOpenedRecord, DeadlineRequest

COMMAND_REFUSED = "CommandRefused"
DEADLINE_ACTOR = "system:deadline"

# Database outages are waited out; only a record that can never be written stops retrying.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["ValidationError", "DataError"],
)
ACTIVITY_TIMEOUT = timedelta(seconds=30)

WAITING_FOR = {
    Stage.OPENED: "an interview to be scheduled",
    Stage.INTERVIEW_SCHEDULED: "the interview to be held and recorded",
    Stage.INTERVIEWED: "a rectification order",
    Stage.RECTIFYING: "the party's rectification report, or the deadline",
    Stage.VERIFYING: "an officer's verification of the report",
    Stage.PENALTY_PENDING: "the fine decision",
    Stage.CLOSED: "nothing: the case is closed",
}


def refuse(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=COMMAND_REFUSED, non_retryable=True)


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    @workflow.init
    def __init__(self, opened: OpenCaseInput) -> None:
        info = workflow.info()
        self._state = CaseState(
            case_id=opened.case_id,
            workflow_id=info.workflow_id,
            opened=opened,
            opened_at=info.start_time,
            waiting_for=WAITING_FOR[Stage.OPENED],
        )
        self._registered = False
        # Commands and the deadline timer change state one at a time.
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, opened: OpenCaseInput) -> CaseResult:
        await self._register_case()
        while self._state.stage is not Stage.CLOSED:
            if self._state.stage is Stage.RECTIFYING:
                await self._await_report_or_deadline()
            else:
                await workflow.wait_condition(self._stage_changed_from(self._state.stage))
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._state.outcome is not None and self._state.closed_at is not None
        return CaseResult(
            case_id=self._state.case_id,
            outcome=self._state.outcome,
            closed_at=self._state.closed_at,
        )

    @workflow.query
    def state(self) -> CaseState:
        return self._state

    # --- commands ------------------------------------------------------------------------

    @workflow.update
    async def schedule_interview(self, cmd: ScheduleInterview) -> CaseState:
        async with self._command("schedule an interview", {Stage.OPENED}):
            self._state.interview = Interview(
                scheduled_for=cmd.scheduled_for,
                place=cmd.place,
                reason=cmd.reason,
                attendees_required=cmd.attendees_required,
            )
            await self._advance(
                "interview_scheduled",
                Stage.INTERVIEW_SCHEDULED,
                cmd.actor,
                cmd.model_dump(mode="json", exclude={"actor"}),
            )
        return self._state

    @schedule_interview.validator
    def _validate_schedule_interview(self, cmd: ScheduleInterview) -> None:
        self._require_stage("schedule an interview", {Stage.OPENED})
        if cmd.scheduled_for <= workflow.now():
            raise refuse("cannot schedule an interview: scheduled_for is in the past")

    @workflow.update
    async def record_interview(self, cmd: RecordInterview) -> CaseState:
        async with self._command("record the interview", {Stage.INTERVIEW_SCHEDULED}):
            assert self._state.interview is not None
            self._state.interview = self._state.interview.model_copy(
                update={
                    "held_at": workflow.now(),
                    "officials": cmd.officials,
                    "attended_by": cmd.attended_by,
                    "summary": cmd.summary,
                }
            )
            await self._advance(
                "interview_recorded",
                Stage.INTERVIEWED,
                cmd.actor,
                cmd.model_dump(mode="json", exclude={"actor"}),
            )
        return self._state

    @record_interview.validator
    def _validate_record_interview(self, cmd: RecordInterview) -> None:
        self._require_stage("record the interview", {Stage.INTERVIEW_SCHEDULED})

    @workflow.update
    async def issue_rectification_order(self, cmd: IssueRectificationOrder) -> CaseState:
        async with self._command("issue a rectification order", {Stage.INTERVIEWED}):
            issued_at = workflow.now()
            deadline: Deadline = await workflow.execute_activity_method(
                DeadlineActivities.compute_deadline,
                DeadlineRequest(start=issued_at, days=cmd.period_days),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
            self._state.order = RectificationOrder(
                issued_at=issued_at,
                issued_by=cmd.actor,
                requirements=cmd.requirements,
                deadline=deadline,
            )
            await self._advance(
                "rectification_ordered",
                Stage.RECTIFYING,
                cmd.actor,
                {
                    "requirements": cmd.requirements,
                    "period_days": cmd.period_days,
                    "deadline": deadline.model_dump(mode="json"),
                },
            )
        return self._state

    @issue_rectification_order.validator
    def _validate_issue_order(self, cmd: IssueRectificationOrder) -> None:
        self._require_stage("issue a rectification order", {Stage.INTERVIEWED})

    @workflow.update
    async def submit_rectification_report(self, cmd: SubmitRectificationReport) -> CaseState:
        async with self._command("accept a rectification report", {Stage.RECTIFYING}):
            self._state.report = RectificationReport(
                submitted_at=workflow.now(),
                submitted_by=cmd.actor,
                summary=cmd.summary,
                evidence=cmd.evidence,
            )
            await self._advance(
                "rectification_reported",
                Stage.VERIFYING,
                cmd.actor,
                cmd.model_dump(mode="json", exclude={"actor"}),
            )
        return self._state

    @submit_rectification_report.validator
    def _validate_report(self, cmd: SubmitRectificationReport) -> None:
        self._require_stage("accept a rectification report", {Stage.RECTIFYING})

    @workflow.update
    async def record_verification(self, cmd: RecordVerification) -> CaseState:
        async with self._command("record a verification", {Stage.VERIFYING}):
            self._state.verification = Verification(
                at=workflow.now(), by=cmd.actor, passed=cmd.passed, findings=cmd.findings
            )
            payload = cmd.model_dump(mode="json", exclude={"actor"})
            if cmd.passed:
                await self._advance(
                    "verification_passed", Stage.CLOSED, cmd.actor, payload, Outcome.RECTIFIED
                )
            else:
                await self._advance("verification_failed", Stage.VERIFYING, cmd.actor, payload)
                await self._escalate("the rectification failed verification", cmd.actor)
        return self._state

    @record_verification.validator
    def _validate_verification(self, cmd: RecordVerification) -> None:
        self._require_stage("record a verification", {Stage.VERIFYING})

    @workflow.update
    async def decide_fine(self, cmd: DecideFine) -> CaseState:
        async with self._command("decide a fine", {Stage.PENALTY_PENDING}):
            self._state.fine = FineDecision(
                decided_at=workflow.now(),
                decided_by=cmd.actor,
                amount_yuan=cmd.amount_yuan,
                legal_basis=cmd.legal_basis,
                reasons=cmd.reasons,
            )
            await self._advance(
                "fine_decided",
                Stage.CLOSED,
                cmd.actor,
                cmd.model_dump(mode="json", exclude={"actor"}),
                Outcome.PENALIZED,
            )
        return self._state

    @decide_fine.validator
    def _validate_fine(self, cmd: DecideFine) -> None:
        self._require_stage("decide a fine", {Stage.PENALTY_PENDING})

    # --- the deadline ----------------------------------------------------------------------

    async def _await_report_or_deadline(self) -> None:
        assert self._state.order is not None
        deadline = self._state.order.deadline
        remaining = deadline.due_at - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: self._state.stage is not Stage.RECTIFYING,
                    timeout=remaining,
                    timeout_summary=f"rectification deadline {deadline.last_day} 24:00",
                )
                return
            except TimeoutError:
                pass
        async with self._lock:
            # A report may have been accepted while the timer fired.
            if self._state.stage is Stage.RECTIFYING:
                await self._escalate(
                    f"the rectification deadline ({deadline.last_day}) passed without a report",
                    DEADLINE_ACTOR,
                )

    async def _escalate(self, reason: str, actor: str) -> None:
        """For now the ladder has one rung before the fine: a warning, then a fine decision."""
        self._state.warning = IssuedWarning(issued_at=workflow.now(), reason=reason)
        await self._advance("warning_issued", Stage.PENALTY_PENDING, actor, {"reason": reason})

    # --- helpers -----------------------------------------------------------------------------

    def _require_stage(self, what: str, allowed: Collection[Stage]) -> None:
        state = self._state
        if state.stage is Stage.CLOSED:
            raise refuse(
                f"cannot {what}: case {state.case_id} is closed"
                f" (outcome: {state.outcome.value if state.outcome else 'none'})"
            )
        if state.stage not in allowed:
            needed = " or ".join(sorted(stage.value for stage in allowed))
            raise refuse(
                f"cannot {what}: case {state.case_id} is at stage {state.stage.value},"
                f" this needs stage {needed}"
            )

    def _stage_changed_from(self, stage: Stage) -> Callable[[], bool]:
        return lambda: self._state.stage is not stage

    def _command(self, what: str, allowed: Collection[Stage]) -> _Command:
        return _Command(self, what, allowed)

    async def _register_case(self) -> None:
        async with self._lock:
            entry = self._entry(
                "case_opened", None, Stage.OPENED, self._state.opened.opened_by, {}, None
            )
            await workflow.execute_activity_method(
                CaseRegisterActivities.record_case_opened,
                CaseOpenedRecord(opened=self._state.opened, entry=entry),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
            self._state.audit_seq = entry.seq
            self._registered = True

    async def _advance(
        self,
        action: str,
        to_stage: Stage,
        actor: str,
        payload: dict[str, Any],
        outcome: Outcome | None = None,
    ) -> None:
        """Record the step (audit trail + register), then move the case to `to_stage`."""
        entry = self._entry(action, self._state.stage, to_stage, actor, payload, outcome)
        await workflow.execute_activity_method(
            CaseRegisterActivities.record_transition,
            entry,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        state = self._state
        state.audit_seq = entry.seq
        state.stage = to_stage
        state.waiting_for = WAITING_FOR[to_stage]
        if outcome is not None:
            state.outcome = outcome
            state.closed_at = entry.occurred_at

    def _entry(
        self,
        action: str,
        from_stage: Stage | None,
        to_stage: Stage,
        actor: str,
        payload: dict[str, Any],
        outcome: Outcome | None,
    ) -> AuditEntry:
        order = self._state.order
        pending_deadline = (
            order.deadline.due_at if order is not None and to_stage is Stage.RECTIFYING else None
        )
        return AuditEntry(
            case_id=self._state.case_id,
            workflow_id=self._state.workflow_id,
            seq=self._state.audit_seq + 1,
            action=action,
            from_stage=from_stage,
            to_stage=to_stage,
            actor=actor,
            occurred_at=workflow.now(),
            payload=payload,
            outcome=outcome,
            deadline_at=pending_deadline,
        )


class _Command:
    """Runs a command under the case lock once the case is registered, re-checking its stage."""

    def __init__(self, wf: CaseWorkflow, what: str, allowed: Collection[Stage]) -> None:
        self._wf, self._what, self._allowed = wf, what, allowed

    async def __aenter__(self) -> None:
        wf = self._wf
        await workflow.wait_condition(lambda: wf._registered)
        await wf._lock.acquire()
        try:
            # The validator saw the stage before an earlier command or the timer changed it.
            wf._require_stage(self._what, self._allowed)
        except BaseException:
            wf._lock.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._wf._lock.release()
