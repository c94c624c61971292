"""Rectification within a time limit: the order, reminders, extensions, the report, verification."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.models import (
        CaseState,
        Deadline,
        IssueRectificationOrder,
        Outcome,
        RecordVerification,
        RectificationOrder,
        RectificationReport,
        Stage,
        SubmitRectificationReport,
        Verification,
    )
    from domain.policy import lenient
    from domain.procedure_models import DecideExtension, ExtensionRequest, RequestExtension
    from domain.records import DocumentKind
    from workflows.case_core import SYSTEM, CaseCore, DeadlineSlot, refuse

V1_ORDER_FROM = {Stage.INTERVIEWED}
V2_ORDER_FROM = {Stage.FILED, Stage.INTERVIEWED}
_ONE_MINUTE = timedelta(minutes=1)


class RectificationStages(CaseCore):
    @workflow.update
    async def issue_rectification_order(self, cmd: IssueRectificationOrder) -> CaseState:
        allowed = V2_ORDER_FROM if self._v2 else V1_ORDER_FROM
        async with self._command(
            "issue a rectification order", allowed, lambda: self._validate_issue_order(cmd), by=cmd
        ):
            proc = self._procedure
            issued_at = workflow.now()
            if proc is None:
                assert cmd.period_days is not None
                days, kind = cmd.period_days, "calendar"
            else:
                period = proc.policy.rules.rectification
                days, kind = cmd.period_days or period.days, period.kind
            deadline = await self._compute_deadline(days, kind, issued_at)
            self._state.order = RectificationOrder(
                issued_at=issued_at,
                issued_by=cmd.actor,
                requirements=cmd.requirements,
                deadline=deadline,
            )
            payload = {
                "requirements": cmd.requirements,
                "period_days": days,
                "deadline": deadline.model_dump(mode="json"),
            }
            if proc is not None:
                proc.rectification_round = 1
                proc.interim_suspension = cmd.interim_suspension
                doc = await self._issue_document(
                    DocumentKind.RECTIFICATION_ORDER, cmd.actor, "Rectification order", payload
                )
                payload |= {"document": doc.number, "interim_suspension": cmd.interim_suspension}
            await self._advance("rectification_ordered", Stage.RECTIFYING, cmd.actor, payload)
        return self._state

    @issue_rectification_order.validator
    def _validate_issue_order(self, cmd: IssueRectificationOrder) -> None:
        allowed = V2_ORDER_FROM if self._v2 else V1_ORDER_FROM
        self._require_stage("issue a rectification order", allowed)
        if not self._v2 and cmd.period_days is None:
            raise refuse("cannot issue a rectification order: period_days is required")
        if not self._v2 and cmd.interim_suspension:
            raise refuse("cannot suspend functions: this case runs the first procedure version")
        proc = self._procedure
        if (
            proc is not None
            and proc.policy.rules.interview_required
            and self._state.stage is Stage.FILED
        ):
            raise refuse(
                "cannot issue a rectification order before an interview: policy "
                f"{proc.policy.version} requires one for category {proc.policy.category}"
            )

    @workflow.update
    async def submit_rectification_report(self, cmd: SubmitRectificationReport) -> CaseState:
        async with self._command(
            "accept a rectification report",
            {Stage.RECTIFYING},
            lambda: self._validate_report(cmd),
            by=cmd,
        ):
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

    # --- extensions --------------------------------------------------------------------------

    @workflow.update
    async def request_extension(self, cmd: RequestExtension) -> CaseState:
        async with self._command(
            "request an extension",
            {Stage.RECTIFYING},
            lambda: self._validate_request_extension(cmd),
            by=cmd,
        ):
            proc = self._require_v2("request an extension")
            proc.extension = ExtensionRequest(
                requested_at=workflow.now(),
                requested_by=cmd.actor,
                days=cmd.days,
                reasons=cmd.reasons,
            )
            proc.needs_supervisor.append("extension_request")
            await self._note(
                "extension_requested", cmd.actor, cmd.model_dump(mode="json", exclude={"actor"})
            )
        return self._state

    @request_extension.validator
    def _validate_request_extension(self, cmd: RequestExtension) -> None:
        proc = self._check_v2("request an extension")
        self._require_stage("request an extension", {Stage.RECTIFYING})
        if proc is not None and proc.extension is not None and not proc.extension.decided:
            raise refuse("cannot request an extension: one is already awaiting a decision")

    @workflow.update
    async def decide_extension(self, cmd: DecideExtension) -> CaseState:
        async with self._command(
            "decide on the extension",
            {Stage.RECTIFYING},
            lambda: self._validate_decide_extension(cmd),
            by=cmd,
        ):
            proc = self._require_v2("decide on the extension")
            request, order = proc.extension, self._state.order
            assert request is not None and order is not None
            request.decided, request.approved = True, cmd.approved
            if "extension_request" in proc.needs_supervisor:
                proc.needs_supervisor.remove("extension_request")
            payload: dict[str, object] = {"approved": cmd.approved, "reasons": cmd.reasons}
            if cmd.approved:
                old = order.deadline
                days = cmd.days or request.days
                new = await self._compute_deadline(days, old.kind, old.due_at - _ONE_MINUTE)
                order.deadline = new  # in place: the deadline wait reads it afresh
                payload |= {
                    "days": days,
                    "old_deadline": old.last_day,
                    "deadline": new.model_dump(mode="json"),
                }
            await self._note(
                "extension_approved" if cmd.approved else "extension_denied", cmd.actor, payload
            )
        return self._state

    @decide_extension.validator
    def _validate_decide_extension(self, cmd: DecideExtension) -> None:
        proc = self._check_v2("decide on the extension")
        self._require_stage("decide on the extension", {Stage.RECTIFYING})
        if proc is not None and (proc.extension is None or proc.extension.decided):
            raise refuse("cannot decide on an extension: none was requested")

    # --- the deadline ----------------------------------------------------------------------

    async def _await_report_or_deadline(self) -> None:
        if self._v2:
            await self._await_rectification_v2()
            return
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
                    SYSTEM,
                )

    async def _await_rectification_v2(self) -> None:
        proc = self._procedure
        assert proc is not None and self._state.order is not None
        in_time = await self._wait_for(
            self._stage_changed_from(Stage.RECTIFYING),
            DeadlineSlot(
                "rectification deadline", self._get_order_deadline, self._set_order_deadline
            ),
            proc.policy.reminders.days_before_deadline,
        )
        if in_time:
            return
        extension = proc.extension
        if extension is not None and not extension.decided:
            # The party asked in time: the supervisor's answer comes first.
            await workflow.wait_condition(
                lambda: extension.decided or self._state.stage is not Stage.RECTIFYING
            )
            return
        async with self._lock:
            if (
                self._state.stage is Stage.RECTIFYING
                and workflow.now() >= self._get_order_deadline().due_at
            ):
                last_day = self._get_order_deadline().last_day
                await self._escalate(
                    f"the rectification deadline ({last_day}) passed without a report", SYSTEM
                )

    def _get_order_deadline(self) -> Deadline:
        assert self._state.order is not None
        return self._state.order.deadline

    def _set_order_deadline(self, deadline: Deadline) -> None:
        assert self._state.order is not None
        self._state.order = self._state.order.model_copy(update={"deadline": deadline})

    # --- verification --------------------------------------------------------------------------

    @workflow.update
    async def record_verification(self, cmd: RecordVerification) -> CaseState:
        async with self._command(
            "record a verification",
            {Stage.VERIFYING},
            lambda: self._validate_verification(cmd),
            by=cmd,
        ):
            self._state.verification = Verification(
                at=workflow.now(), by=cmd.actor, passed=cmd.passed, findings=cmd.findings
            )
            payload = cmd.model_dump(mode="json", exclude={"actor"})
            proc = self._procedure
            if cmd.passed and not cmd.penalize:
                if proc is not None:
                    payload["lenient"] = lenient(proc.policy, self._state.opened.severity, True)
                await self._advance(
                    "verification_passed", Stage.CLOSED, cmd.actor, payload, Outcome.RECTIFIED
                )
            elif cmd.passed:
                await self._advance("verification_passed", Stage.VERIFYING, cmd.actor, payload)
                await self._escalate("rectified, but the violation calls for a penalty", cmd.actor)
            elif (
                proc is not None
                and proc.rectification_round < proc.policy.rules.verification_rounds
            ):
                await self._advance("verification_failed", Stage.VERIFYING, cmd.actor, payload)
                await self._further_round(cmd.actor)
            else:
                await self._advance("verification_failed", Stage.VERIFYING, cmd.actor, payload)
                await self._escalate("the rectification failed verification", cmd.actor)
        return self._state

    @record_verification.validator
    def _validate_verification(self, cmd: RecordVerification) -> None:
        self._require_stage("record a verification", {Stage.VERIFYING})
        if cmd.penalize:
            proc = self._check_v2("open the penalty procedure after a passed verification")
            if not cmd.passed:
                raise refuse("penalize goes with a passed verification; a failure escalates anyway")
            if proc is not None and lenient(proc.policy, self._state.opened.severity, True):
                raise refuse(
                    f"cannot penalize: {proc.policy.leniency.article} — a first "
                    f"{self._state.opened.severity.value} violation corrected in time is not "
                    "penalized"
                )

    async def _further_round(self, actor: str) -> None:
        proc, order = self._procedure, self._state.order
        assert proc is not None and order is not None
        proc.rectification_round += 1
        period = proc.policy.rules.rectification
        deadline = await self._compute_deadline(period.days, period.kind)
        self._state.order = order.model_copy(
            update={"issued_at": workflow.now(), "deadline": deadline}
        )
        self._state.report = None
        await self._advance(
            "rectification_round",
            Stage.RECTIFYING,
            actor,
            {"round": proc.rectification_round, "deadline": deadline.model_dump(mode="json")},
        )
