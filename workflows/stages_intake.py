"""Filing decision and interviews (procedure v2; interviews also serve version 1)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.models import (
        CaseState,
        Interview,
        Outcome,
        RecordInterview,
        ScheduleInterview,
        Stage,
    )
    from domain.policy import Authority
    from domain.procedure_models import (
        DecideFiling,
        ExtendFilingDeadline,
        FilingDecision,
        RecordNoShow,
    )
    from domain.records import DocumentKind
    from workflows.case_core import SYSTEM, CaseCore, refuse

_ONE_MINUTE = timedelta(minutes=1)
V1_INTERVIEW_FROM = {Stage.OPENED}
V2_INTERVIEW_FROM = {Stage.FILED, Stage.INTERVIEWED}


class IntakeStages(CaseCore):
    # --- filing -------------------------------------------------------------------------------

    @workflow.update
    async def decide_filing(self, cmd: DecideFiling) -> CaseState:
        async with self._command(
            "decide on filing", {Stage.FILING}, lambda: self._validate_filing(cmd), by=cmd
        ):
            proc = self._require_v2("decide on filing")
            doc = await self._issue_document(
                DocumentKind.FILING_DECISION,
                cmd.actor,
                f"Filing decision: {cmd.decision.value}",
                cmd.model_dump(mode="json", exclude={"actor"}),
            )
            payload: dict[str, Any] = {
                **cmd.model_dump(mode="json", exclude={"actor"}),
                "document": doc.number,
            }
            if cmd.decision is FilingDecision.NOT_FILED:
                await self._advance(
                    "not_filed", Stage.CLOSED, cmd.actor, payload, Outcome.NOT_FILED
                )
            elif cmd.decision is FilingDecision.TRANSFERRED:
                assert cmd.transfer_to is not None
                await self._advance("clue_transferred", Stage.REFERRING, cmd.actor, payload)
                await self._start_referral(
                    cmd.actor, cmd.transfer_to, cmd.reasons, False, Outcome.REFERRED
                )
            else:
                limit = proc.policy.limits.handling
                proc.filed_at = workflow.now()
                proc.handling_deadline = await self._compute_deadline(limit.days, limit.kind)
                self._start_handling_watch()
                if cmd.summary_disposal:
                    await self._advance(
                        "filed_summary_disposal", Stage.REFERRING, cmd.actor, payload
                    )
                    await self._start_referral(
                        cmd.actor, Authority.TELECOM, cmd.reasons, False, Outcome.SHUT_DOWN
                    )
                else:
                    await self._advance("filed", Stage.FILED, cmd.actor, payload)
        return self._state

    @decide_filing.validator
    def _validate_filing(self, cmd: DecideFiling) -> None:
        proc = self._check_v2("decide on filing")
        self._require_stage("decide on filing", {Stage.FILING})
        if proc is not None and cmd.summary_disposal and not proc.policy.rules.summary_disposal:
            raise refuse(
                f"cannot dispose summarily: policy {proc.policy.version} does not allow it for "
                f"category {proc.policy.category}"
            )

    @workflow.update
    async def extend_filing_deadline(self, cmd: ExtendFilingDeadline) -> CaseState:
        """A supervisor grants the filing decision its one extension ."""
        async with self._command(
            "extend the filing deadline",
            {Stage.FILING},
            lambda: self._validate_filing_extension(cmd),
            by=cmd,
        ):
            proc = self._require_v2("extend the filing deadline")
            assert proc.filing_deadline is not None
            old = proc.filing_deadline
            ext = proc.policy.limits.filing_extension
            proc.filing_deadline = await self._compute_deadline(
                ext.days, ext.kind, old.due_at - _ONE_MINUTE
            )
            proc.filing_extended = True
            await self._note(
                "filing_deadline_extended",
                cmd.actor,
                {"reasons": cmd.reasons, "deadline": proc.filing_deadline.model_dump(mode="json")},
            )
        return self._state

    @extend_filing_deadline.validator
    def _validate_filing_extension(self, cmd: ExtendFilingDeadline) -> None:
        proc = self._check_v2("extend the filing deadline")
        self._require_stage("extend the filing deadline", {Stage.FILING})
        if proc is not None and proc.filing_extended:
            raise refuse("cannot extend the filing deadline: it was extended once already")

    async def _await_filing(self) -> None:
        proc = self._procedure
        assert proc is not None and proc.filing_deadline is not None
        in_time = await self._wait_for(
            self._stage_changed_from(Stage.FILING),
            self._slot("filing decision", proc, "filing_deadline"),
        )
        if in_time:
            return
        async with self._lock:
            if self._state.stage is Stage.FILING and "filing_overdue" not in proc.needs_supervisor:
                proc.needs_supervisor.append("filing_overdue")
                await self._note("filing_overdue", SYSTEM, {"due": proc.filing_deadline.last_day})
        # Decided late, or extended: either way the stage or the deadline moves.
        current = proc.filing_deadline
        await workflow.wait_condition(
            lambda: self._state.stage is not Stage.FILING or proc.filing_deadline is not current
        )

    # --- interviews -----------------------------------------------------------------------------

    @workflow.update
    async def schedule_interview(self, cmd: ScheduleInterview) -> CaseState:
        allowed = V2_INTERVIEW_FROM if self._v2 else V1_INTERVIEW_FROM
        async with self._command(
            "schedule an interview", allowed, lambda: self._validate_schedule_interview(cmd), by=cmd
        ):
            self._state.interview = Interview(
                scheduled_for=cmd.scheduled_for,
                place=cmd.place,
                reason=cmd.reason,
                attendees_required=cmd.attendees_required,
            )
            payload = cmd.model_dump(mode="json", exclude={"actor"})
            if self._procedure is not None:
                doc = await self._issue_document(
                    DocumentKind.INTERVIEW_NOTICE, cmd.actor, "Interview notice", payload
                )
                payload |= {"document": doc.number, "repeat": self._procedure.interviews_held > 0}
            await self._advance(
                "interview_scheduled", Stage.INTERVIEW_SCHEDULED, cmd.actor, payload
            )
        return self._state

    @schedule_interview.validator
    def _validate_schedule_interview(self, cmd: ScheduleInterview) -> None:
        allowed = V2_INTERVIEW_FROM if self._v2 else V1_INTERVIEW_FROM
        self._require_stage("schedule an interview", allowed)
        if cmd.scheduled_for <= workflow.now():
            raise refuse("cannot schedule an interview: scheduled_for is in the past")

    @workflow.update
    async def record_interview(self, cmd: RecordInterview) -> CaseState:
        async with self._command(
            "record the interview",
            {Stage.INTERVIEW_SCHEDULED},
            lambda: self._validate_record_interview(cmd),
            by=cmd,
        ):
            assert self._state.interview is not None
            self._state.interview = self._state.interview.model_copy(
                update={
                    "held_at": workflow.now(),
                    "officials": cmd.officials,
                    "attended_by": cmd.attended_by,
                    "summary": cmd.summary,
                }
            )
            payload = cmd.model_dump(mode="json", exclude={"actor"})
            if self._procedure is not None:
                self._procedure.interviews_held += 1
                doc = await self._issue_document(
                    DocumentKind.INTERVIEW_RECORD, cmd.actor, "Interview record", payload
                )
                payload |= {
                    "document": doc.number,
                    "interviews_held": self._procedure.interviews_held,
                }
            await self._advance("interview_recorded", Stage.INTERVIEWED, cmd.actor, payload)
        return self._state

    @record_interview.validator
    def _validate_record_interview(self, cmd: RecordInterview) -> None:
        self._require_stage("record the interview", {Stage.INTERVIEW_SCHEDULED})

    @workflow.update
    async def record_no_show(self, cmd: RecordNoShow) -> CaseState:
        """The party did not attend the interview: the case escalates."""
        async with self._command(
            "record a no-show",
            {Stage.INTERVIEW_SCHEDULED},
            lambda: self._validate_no_show(cmd),
            by=cmd,
        ):
            proc = self._require_v2("record a no-show")
            proc.no_shows += 1
            await self._note("interview_no_show", cmd.actor, {"notes": cmd.notes})
            await self._escalate("the party did not attend the interview", cmd.actor)
        return self._state

    @record_no_show.validator
    def _validate_no_show(self, cmd: RecordNoShow) -> None:
        self._check_v2("record a no-show")
        self._require_stage("record a no-show", {Stage.INTERVIEW_SCHEDULED})
