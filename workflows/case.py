"""CaseWorkflow: one enforcement case, from the clue to its outcome, with every deadline.

Two procedures live here. Version 1 (interview → order → report → verification → warning → fine)
is kept unchanged for cases opened before `enforcement-procedure-v2`; every case opened since runs
version 2, the whole procedure of ../docs/case-workflow.md with its policy fixed at opening.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.policy import PolicyActivities
    from activities.register import CaseRegisterActivities
    from domain.models import (
        CaseResult,
        CaseState,
        Deadline,
        DecideFine,
        FineDecision,
        IssuedWarning,
        OpenCaseInput,
        Outcome,
        Stage,
    )
    from domain.procedure_models import CalendarUpdated, CaseProcedure
    from domain.records import CaseOpenedRecord, CasePolicyRequest
    from workflows.case_core import (
        ACTIVITY_RETRY,
        ACTIVITY_TIMEOUT,
        COMMAND_REFUSED,
        SYSTEM,
        CaseCore,
        refuse,
    )
    from workflows.stages_events import EventStages
    from workflows.stages_intake import IntakeStages
    from workflows.stages_penalty import PenaltyStages
    from workflows.stages_rectification import RectificationStages
    from workflows.stages_referral import ReferralStages

__all__ = ["COMMAND_REFUSED", "DEADLINE_ACTOR", "CaseWorkflow", "refuse"]

PROCEDURE_V2 = "enforcement-procedure-v2"
CASE_NOT_OPENED = "CaseNotOpened"
OPENING_REFUSALS = ("UnknownCategory", "NoPolicyInForce")  # what the policy activity refuses
DEADLINE_ACTOR = SYSTEM

WAITING_FOR = {
    Stage.FILING: "the filing decision",
    Stage.OPENED: "an interview to be scheduled",
    Stage.FILED: "an interview, a rectification order or the penalty procedure",
    Stage.INTERVIEW_SCHEDULED: "the interview to be held and recorded",
    Stage.INTERVIEWED: "a rectification order (or another interview)",
    Stage.RECTIFYING: "the party's rectification report, or the deadline",
    Stage.VERIFYING: "an officer's verification of the report",
    Stage.PENALTY_PENDING: "the fine decision",
    Stage.INVESTIGATING: "the investigation report",
    Stage.LEGAL_REVIEW: "the legal review",
    Stage.COLLECTIVE_DECISION: "the leadership's collective decision",
    Stage.NOTICE_PENDING: "the prior notice of the proposed penalty",
    Stage.DEFENCE: "the party's statement, defence or hearing request, or the window to end",
    Stage.HEARING_SCHEDULING: "the hearing to be scheduled",
    Stage.HEARING_SCHEDULED: "the hearing to be held and recorded",
    Stage.DECISION_PENDING: "the penalty decision",
    Stage.SERVICE_PENDING: "service of the decision on the party",
    Stage.PAYMENT_PENDING: "payment of the fine",
    Stage.ENFORCEMENT: "payment, or the court enforcement application",
    Stage.REFERRING: "the other authority's acknowledgement",
    Stage.CLOSED: "nothing: the case is closed",
}


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow(
    IntakeStages, RectificationStages, PenaltyStages, ReferralStages, EventStages, CaseCore
):
    @workflow.init
    def __init__(self, opened: OpenCaseInput) -> None:
        info = workflow.info()
        self._v2 = workflow.patched(PROCEDURE_V2)
        self._state = CaseState(
            case_id=opened.case_id,
            workflow_id=info.workflow_id,
            opened=opened,
            opened_at=info.start_time,
            stage=Stage.FILING if self._v2 else Stage.OPENED,
            waiting_for=WAITING_FOR[Stage.FILING if self._v2 else Stage.OPENED],
        )
        self._procedure: CaseProcedure | None = None
        self._registered = False
        self._calendar_changed = False
        self._open_refused: str | None = None
        self._referral_tasks: list[asyncio.Task[None]] = []
        # Commands and timers change the case one at a time.
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, opened: OpenCaseInput) -> CaseResult:
        if self._v2:
            await self._open_v2()
            if self._open_refused is not None:
                # Commands already waiting are refused with the reason; then the case ends.
                await workflow.wait_condition(workflow.all_handlers_finished)
                raise ApplicationError(self._open_refused, type=CASE_NOT_OPENED, non_retryable=True)
        else:
            await self._register_case_v1()
        while self._state.stage is not Stage.CLOSED:
            stage = self._state.stage
            if stage is Stage.RECTIFYING:
                await self._await_report_or_deadline()
            elif self._v2 and stage in self._timed_stages():
                await self._timed_stages()[stage]()
            else:
                await workflow.wait_condition(self._stage_changed_from(stage))
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and all(t.done() for t in self._referral_tasks)
        )
        assert self._state.outcome is not None and self._state.closed_at is not None
        return CaseResult(
            case_id=self._state.case_id,
            outcome=self._state.outcome,
            closed_at=self._state.closed_at,
        )

    @workflow.query
    def state(self) -> CaseState:
        return self._state

    @workflow.query
    def procedure(self) -> CaseProcedure | None:
        return self._procedure

    @workflow.signal
    def calendar_updated(self, update: CalendarUpdated) -> None:
        """An operator loaded a year's working days: provisional deadlines are recomputed."""
        self._calendar_changed = True

    # --- opening ------------------------------------------------------------------------------

    async def _open_v2(self) -> None:
        async with self._lock:
            opened = self._state.opened
            try:
                policy = await workflow.execute_activity_method(
                    PolicyActivities.case_policy,
                    CasePolicyRequest(
                        case_id=opened.case_id,
                        category=opened.violation_category,
                        subject=opened.subject,
                        opened_at=self._state.opened_at,
                    ),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=ACTIVITY_RETRY,
                )
            except ActivityError as err:
                cause = err.cause
                if isinstance(cause, ApplicationError) and cause.type in OPENING_REFUSALS:
                    self._open_refused = f"case {opened.case_id} cannot open: {cause.message}"
                    return
                raise
            period = policy.limits.filing_decision
            self._procedure = CaseProcedure(
                policy=policy,
                filing_deadline=await self._compute_deadline(period.days, period.kind),
            )
            entry = self._entry(
                "case_opened",
                None,
                Stage.FILING,
                opened.opened_by,
                {
                    "policy_version": policy.version,
                    "prior_cases": policy.prior_cases,
                    **({"acting_key": opened.acting_key} if opened.acting_key else {}),
                },
                None,
            )
            await workflow.execute_activity_method(
                CaseRegisterActivities.record_case_opened,
                CaseOpenedRecord(opened=opened, entry=entry, policy_version=policy.version),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
            self._state.audit_seq = entry.seq
            self._upsert_search_attributes()
            self._registered = True

    async def _register_case_v1(self) -> None:
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

    # --- what the case waits for -----------------------------------------------------------

    def _timed_stages(self) -> dict[Stage, Callable[[], Awaitable[None]]]:
        """Stages with a deadline the workflow itself acts on when it passes."""
        return {
            Stage.FILING: self._await_filing,
            Stage.DEFENCE: self._await_defence_window,
            Stage.SERVICE_PENDING: self._await_service,
            Stage.PAYMENT_PENDING: self._await_payment,
            Stage.ENFORCEMENT: self._await_enforcement,
        }

    def _waiting_for(self, stage: Stage) -> str:
        return WAITING_FOR[stage]

    def _pending_deadline(self, stage: Stage) -> Deadline | None:
        proc = self._procedure
        if proc is None:
            return super()._pending_deadline(stage)
        penalty = proc.penalty
        by_stage: dict[Stage, Deadline | None] = {
            Stage.FILING: proc.filing_deadline,
            Stage.RECTIFYING: self._state.order.deadline if self._state.order else None,
            Stage.DEFENCE: penalty.defence_deadline if penalty else None,
            Stage.SERVICE_PENDING: penalty.service_deadline if penalty else None,
            Stage.PAYMENT_PENDING: penalty.payment_deadline if penalty else None,
            Stage.ENFORCEMENT: penalty.enforcement_deadline if penalty else None,
        }
        if stage in by_stage:
            return by_stage[stage]
        if stage is Stage.REFERRING:
            pending = [
                r.acknowledgement_deadline or r.approval_deadline
                for r in proc.referrals
                if r.status != "acknowledged"
            ]
            dated = [d for d in pending if d is not None]
            return min(dated, key=lambda d: d.due_at) if dated else None
        if stage is Stage.CLOSED or (penalty and penalty.decided_at):
            return None
        return proc.handling_deadline

    # --- version 1 only -----------------------------------------------------------------------

    async def _escalate_v1(self, reason: str, actor: str) -> None:
        """Version 1's ladder: one warning, then a fine decision."""
        self._state.warning = IssuedWarning(issued_at=workflow.now(), reason=reason)
        await self._advance("warning_issued", Stage.PENALTY_PENDING, actor, {"reason": reason})

    @workflow.update
    async def decide_fine(self, cmd: DecideFine) -> CaseState:
        async with self._command(
            "decide a fine", {Stage.PENALTY_PENDING}, lambda: self._validate_fine(cmd), by=cmd
        ):
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
        if self._v2:
            raise refuse("cannot decide a fine this way: use decide_penalty after prior notice")
        self._require_stage("decide a fine", {Stage.PENALTY_PENDING})
