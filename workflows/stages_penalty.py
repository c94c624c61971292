"""The penalty procedure and its safeguards: investigation, legal review, collective decision,
prior notice, statement and defence, hearing, decision, service, payment and enforcement."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.models import CaseState, Deadline, Outcome, Stage
    from domain.policy import (
        Authority,
        Measure,
        Rung,
        fine_range,
        hearing_right,
        heavier_than_notice,
        late_surcharge,
        persons_heavier_than_notice,
        surcharge_days,
    )
    from domain.procedure_models import (
        DecidePenalty,
        NotifyPenalty,
        OpenPenaltyProcedure,
        PenaltyProcedure,
        PenaltyTerms,
        RecordAppeal,
        RecordHearing,
        RecordInvestigationReport,
        RecordPayment,
        RecordReview,
        RecordStatement,
        RequestHearing,
        ScheduleHearing,
        ServeDecision,
    )
    from domain.records import DocumentKind
    from workflows.case_core import SYSTEM, CaseCore, local_day, refuse, yuan

OPEN_PROCEDURE_FROM = {Stage.FILED, Stage.INTERVIEW_SCHEDULED, Stage.INTERVIEWED, Stage.RECTIFYING}
STATEMENT_STAGES = {Stage.DEFENCE, Stage.HEARING_SCHEDULING, Stage.HEARING_SCHEDULED}
APPEAL_STAGES = {Stage.SERVICE_PENDING, Stage.PAYMENT_PENDING, Stage.ENFORCEMENT}
AFTER_SERVICE: dict[Measure, tuple[Outcome, Authority | None]] = {
    Measure.WARNING: (Outcome.WARNED, None),
    Measure.FINE: (Outcome.PENALIZED, None),
    Measure.SUSPEND_FUNCTIONS: (Outcome.PENALIZED, None),
    Measure.APP_REMOVAL: (Outcome.APP_REMOVED, Authority.APP_STORES),
    Measure.SHUTDOWN: (Outcome.SHUT_DOWN, Authority.TELECOM),
}


class PenaltyStages(CaseCore):
    def _penalty(self, what: str) -> PenaltyProcedure:
        proc = self._check_v2(what)
        if proc is None or proc.penalty is None:
            raise refuse(f"cannot {what}: no penalty procedure is open")
        return proc.penalty

    @workflow.update
    async def open_penalty_procedure(self, cmd: OpenPenaltyProcedure) -> CaseState:
        async with self._command(
            "open the penalty procedure",
            OPEN_PROCEDURE_FROM,
            lambda: self._validate_open_procedure(cmd),
            by=cmd,
        ):
            await self._escalate(cmd.reasons, cmd.actor)
        return self._state

    @open_penalty_procedure.validator
    def _validate_open_procedure(self, cmd: OpenPenaltyProcedure) -> None:
        self._check_v2("open the penalty procedure")
        self._require_stage("open the penalty procedure", OPEN_PROCEDURE_FROM)

    # --- before the notice ----------------------------------------------------------------------

    @workflow.update
    async def record_investigation_report(self, cmd: RecordInvestigationReport) -> CaseState:
        async with self._command(
            "record the investigation report",
            {Stage.INVESTIGATING},
            lambda: self._validate_investigation(cmd),
            by=cmd,
        ):
            penalty = self._penalty("record the investigation report")
            penalty.investigation = cmd
            if cmd.proposed_measure is not None:
                penalty.measure = cmd.proposed_measure
            payload = cmd.model_dump(mode="json", exclude={"actor"})
            doc = await self._issue_document(
                DocumentKind.INVESTIGATION_REPORT, cmd.actor, "Investigation report", payload
            )
            await self._advance(
                "investigation_reported",
                self._after_investigation(penalty),
                cmd.actor,
                payload | {"document": doc.number},
            )
        return self._state

    @record_investigation_report.validator
    def _validate_investigation(self, cmd: RecordInvestigationReport) -> None:
        self._penalty("record the investigation report")
        self._require_stage("record the investigation report", {Stage.INVESTIGATING})
        if cmd.proposed_measure is not None:
            self._rung_for("propose", cmd.proposed_measure)

    def _after_investigation(self, penalty: PenaltyProcedure) -> Stage:
        if penalty.legal_review_required:
            return Stage.LEGAL_REVIEW
        if penalty.collective_decision_required:
            return Stage.COLLECTIVE_DECISION
        return Stage.NOTICE_PENDING

    @workflow.update
    async def record_legal_review(self, cmd: RecordReview) -> CaseState:
        async with self._command(
            "record the legal review",
            {Stage.LEGAL_REVIEW},
            lambda: self._validate_legal_review(cmd),
            by=cmd,
        ):
            penalty = self._penalty("record the legal review")
            if not cmd.approved:
                target = Stage.INVESTIGATING
            elif penalty.collective_decision_required:
                target = Stage.COLLECTIVE_DECISION
            else:
                target = Stage.NOTICE_PENDING
            await self._advance(
                "legal_review_approved" if cmd.approved else "legal_review_returned",
                target,
                cmd.actor,
                cmd.model_dump(mode="json", exclude={"actor"}),
            )
        return self._state

    @record_legal_review.validator
    def _validate_legal_review(self, cmd: RecordReview) -> None:
        self._penalty("record the legal review")
        self._require_stage("record the legal review", {Stage.LEGAL_REVIEW})

    @workflow.update
    async def record_collective_decision(self, cmd: RecordReview) -> CaseState:
        async with self._command(
            "record the collective decision",
            {Stage.COLLECTIVE_DECISION},
            lambda: self._validate_collective(cmd),
            by=cmd,
        ):
            await self._advance(
                "collective_decision_approved" if cmd.approved else "collective_decision_returned",
                Stage.NOTICE_PENDING if cmd.approved else Stage.INVESTIGATING,
                cmd.actor,
                cmd.model_dump(mode="json", exclude={"actor"}),
            )
        return self._state

    @record_collective_decision.validator
    def _validate_collective(self, cmd: RecordReview) -> None:
        self._penalty("record the collective decision")
        self._require_stage("record the collective decision", {Stage.COLLECTIVE_DECISION})
        if len(cmd.participants) < 3:
            raise refuse("a collective decision names at least three participating leaders")

    # --- prior notice, defence, hearing -------------------------------------------------------

    def _rung_for(self, what: str, measure: Measure) -> Rung:
        proc = self._require_v2(what)
        for rung in reversed(proc.policy.rules.ladder):
            if rung.measure is measure:
                return rung
        raise refuse(
            f"cannot {what} {measure.value}: policy {proc.policy.version} has no such measure "
            f"for category {proc.policy.category}"
        )

    def _check_terms(self, what: str, terms: PenaltyTerms) -> Rung:
        rung = self._rung_for(what, terms.measure)
        if terms.measure is Measure.FINE:
            assert terms.fine_yuan is not None
            candidates = [
                r for r in self._require_v2(what).policy.rules.ladder if r.measure is Measure.FINE
            ]
            ranges = [fine_range(r, terms.prior_year_turnover_yuan) for r in candidates]
            if not any(low <= terms.fine_yuan <= high for low, high in ranges):
                allowed = ", ".join(f"{yuan(low)} to {yuan(high)}" for low, high in ranges)
                raise refuse(
                    f"cannot {what} a fine of {yuan(terms.fine_yuan)}: outside the policy's range "
                    f"({allowed}; {rung.article})"
                )
        for person in terms.responsible_persons:
            if person.fine_yuan is None:
                continue
            ranges = [
                (r.person_min_yuan, r.person_max_yuan)
                for r in self._require_v2(what).policy.rules.ladder
                if r.person_min_yuan is not None and r.person_max_yuan is not None
            ]
            if not any(low <= person.fine_yuan <= high for low, high in ranges):
                raise refuse(
                    f"cannot {what} a fine of {yuan(person.fine_yuan)} on {person.name}: outside "
                    "the policy's range for responsible persons"
                )
        return rung

    @workflow.update
    async def notify_penalty(self, cmd: NotifyPenalty) -> CaseState:
        async with self._command(
            "give prior notice", {Stage.NOTICE_PENDING}, lambda: self._validate_notice(cmd), by=cmd
        ):
            proc = self._require_v2("give prior notice")
            penalty = self._penalty("give prior notice")
            safeguards = proc.policy.safeguards
            penalty.notice, penalty.notice_at, penalty.measure = cmd, workflow.now(), cmd.measure
            penalty.hearing_right = hearing_right(
                proc.policy, cmd.measure, cmd.fine_yuan, self._state.opened.subject.kind
            )
            defence = safeguards.statement_and_defence
            penalty.defence_deadline = await self._compute_deadline(defence.days, defence.kind)
            if penalty.hearing_right:
                hearing = safeguards.hearing_request
                penalty.hearing_request_deadline = await self._compute_deadline(
                    hearing.days, hearing.kind
                )
            payload = cmd.model_dump(mode="json", exclude={"actor"}) | {
                "hearing_right": penalty.hearing_right,
                "defence_until": penalty.defence_deadline.last_day,
                "hearing_request_until": penalty.hearing_request_deadline.last_day
                if penalty.hearing_request_deadline
                else None,
            }
            doc = await self._issue_document(
                DocumentKind.PRIOR_NOTICE,
                cmd.actor,
                "Prior notice of administrative penalty",
                payload,
            )
            penalty.documents["prior_notice"] = doc.number
            await self._advance(
                "prior_notice_given", Stage.DEFENCE, cmd.actor, payload | {"document": doc.number}
            )
        return self._state

    @notify_penalty.validator
    def _validate_notice(self, cmd: NotifyPenalty) -> None:
        self._penalty("give prior notice")
        self._require_stage("give prior notice", {Stage.NOTICE_PENDING})
        self._check_terms("propose", cmd)

    def _defence_window(self, penalty: PenaltyProcedure) -> Deadline:
        window = getattr(penalty, self._defence_field(penalty))
        assert isinstance(window, Deadline)
        return window

    @staticmethod
    def _defence_field(penalty: PenaltyProcedure) -> str:
        """The later of the statement-and-defence and the hearing-request deadlines."""
        assert penalty.defence_deadline is not None
        hearing = penalty.hearing_request_deadline
        if hearing is not None and hearing.due_at > penalty.defence_deadline.due_at:
            return "hearing_request_deadline"
        return "defence_deadline"

    async def _await_defence_window(self) -> None:
        penalty = self._penalty("wait for the defence")
        window = self._defence_window(penalty)
        in_time = await self._wait_for(
            self._stage_changed_from(Stage.DEFENCE),
            self._slot("statement-and-defence window", penalty, self._defence_field(penalty)),
        )
        if in_time:
            return
        async with self._lock:
            if self._state.stage is Stage.DEFENCE:
                await self._advance(
                    "defence_window_closed",
                    Stage.DECISION_PENDING,
                    SYSTEM,
                    {"statements": len(penalty.statements), "ended": window.last_day},
                )

    @workflow.update
    async def record_statement(self, cmd: RecordStatement) -> CaseState:
        async with self._command(
            "record a statement", STATEMENT_STAGES, lambda: self._validate_statement(cmd), by=cmd
        ):
            self._penalty("record a statement").statements.append(cmd.statement)
            await self._note("statement_recorded", cmd.actor, {"statement": cmd.statement})
            if cmd.waive_rights:
                await self._advance(
                    "rights_waived",
                    Stage.DECISION_PENDING,
                    cmd.actor,
                    {"statement": cmd.statement},
                )
        return self._state

    @record_statement.validator
    def _validate_statement(self, cmd: RecordStatement) -> None:
        self._penalty("record a statement")
        self._require_stage("record a statement", STATEMENT_STAGES)
        if cmd.waive_rights and self._state.stage is not Stage.DEFENCE:
            raise refuse(
                "cannot waive the rights now: a hearing was requested; it is held, or the "
                "party withdraws the request in writing (record it at the hearing)"
            )

    @workflow.update
    async def request_hearing(self, cmd: RequestHearing) -> CaseState:
        async with self._command(
            "accept a hearing request",
            {Stage.DEFENCE},
            lambda: self._validate_hearing_request(cmd),
            by=cmd,
        ):
            penalty = self._penalty("accept a hearing request")
            penalty.hearing_requested = True
            await self._advance("hearing_requested", Stage.HEARING_SCHEDULING, cmd.actor, {})
        return self._state

    @request_hearing.validator
    def _validate_hearing_request(self, cmd: RequestHearing) -> None:
        penalty = self._penalty("accept a hearing request")
        self._require_stage("accept a hearing request", {Stage.DEFENCE})
        deadline = penalty.hearing_request_deadline
        if not penalty.hearing_right or deadline is None:
            raise refuse(
                "cannot accept a hearing request: the proposed penalty gives no hearing right"
            )
        if workflow.now() >= deadline.due_at:
            raise refuse(
                f"cannot accept a hearing request: the window ended on {deadline.last_day}"
            )

    @workflow.update
    async def schedule_hearing(self, cmd: ScheduleHearing) -> CaseState:
        async with self._command(
            "schedule the hearing",
            {Stage.HEARING_SCHEDULING},
            lambda: self._validate_schedule_hearing(cmd),
            by=cmd,
        ):
            proc = self._require_v2("schedule the hearing")
            penalty = self._penalty("schedule the hearing")
            notice = proc.policy.safeguards.hearing_notice_min
            earliest = await self._compute_deadline(notice.days, notice.kind)
            if local_day(cmd.hearing_at) < earliest.last_day:
                raise refuse(
                    f"cannot hold the hearing on {local_day(cmd.hearing_at)}: notice must be given "
                    f"{notice.days} working days ahead ({notice.article}); the first possible day "
                    f"is {earliest.last_day}"
                )
            penalty.hearing = cmd
            payload = cmd.model_dump(mode="json", exclude={"actor"})
            doc = await self._issue_document(
                DocumentKind.HEARING_NOTICE, cmd.actor, "Hearing notice", payload
            )
            await self._advance(
                "hearing_scheduled",
                Stage.HEARING_SCHEDULED,
                cmd.actor,
                payload | {"document": doc.number},
            )
        return self._state

    @schedule_hearing.validator
    def _validate_schedule_hearing(self, cmd: ScheduleHearing) -> None:
        penalty = self._penalty("schedule the hearing")
        self._require_stage("schedule the hearing", {Stage.HEARING_SCHEDULING})
        investigator = penalty.investigation.actor if penalty.investigation else None
        if cmd.chair == investigator:
            raise refuse("cannot schedule the hearing: the chair may not be an investigator")
        if cmd.hearing_at <= workflow.now():
            raise refuse("cannot schedule the hearing in the past")

    @workflow.update
    async def record_hearing(self, cmd: RecordHearing) -> CaseState:
        async with self._command(
            "record the hearing",
            {Stage.HEARING_SCHEDULED},
            lambda: self._validate_record_hearing(cmd),
            by=cmd,
        ):
            penalty = self._penalty("record the hearing")
            penalty.hearing_record = cmd
            payload = cmd.model_dump(mode="json", exclude={"actor"})
            doc = await self._issue_document(
                DocumentKind.HEARING_RECORD, cmd.actor, "Hearing record", payload
            )
            await self._advance(
                "hearing_held",
                Stage.DECISION_PENDING,
                cmd.actor,
                payload | {"document": doc.number},
            )
        return self._state

    @record_hearing.validator
    def _validate_record_hearing(self, cmd: RecordHearing) -> None:
        penalty = self._penalty("record the hearing")
        self._require_stage("record the hearing", {Stage.HEARING_SCHEDULED})
        assert penalty.hearing is not None
        if workflow.now() < penalty.hearing.hearing_at:
            raise refuse(
                "cannot record the hearing before it is held "
                f"({penalty.hearing.hearing_at.isoformat()})"
            )

    # --- decision and service -------------------------------------------------------------------

    @workflow.update
    async def decide_penalty(self, cmd: DecidePenalty) -> CaseState:
        async with self._command(
            "decide the penalty",
            {Stage.DECISION_PENDING},
            lambda: self._validate_decision(cmd),
            by=cmd,
        ):
            proc = self._require_v2("decide the penalty")
            penalty = self._penalty("decide the penalty")
            penalty.decision, penalty.decided_at, penalty.measure = cmd, workflow.now(), cmd.measure
            proc.responsible_persons.extend(cmd.responsible_persons)
            service = proc.policy.safeguards.service
            penalty.service_deadline = await self._compute_deadline(service.days, service.kind)
            payload = cmd.model_dump(mode="json", exclude={"actor"})
            doc = await self._issue_document(
                DocumentKind.DECISION_LETTER, cmd.actor, "Administrative penalty decision", payload
            )
            penalty.documents["decision_letter"] = doc.number
            await self._advance(
                "penalty_decided",
                Stage.SERVICE_PENDING,
                cmd.actor,
                payload | {"document": doc.number},
            )
        return self._state

    @decide_penalty.validator
    def _validate_decision(self, cmd: DecidePenalty) -> None:
        penalty = self._penalty("decide a penalty")
        stage = self._state.stage
        if penalty.notice is None:
            raise refuse("cannot decide a penalty without prior notice to the party (APL 44)")
        if stage is Stage.DEFENCE:
            raise refuse(
                "cannot decide a penalty before the statement-and-defence window ends "
                f"({self._defence_window(penalty).last_day}, APL 45)"
            )
        if stage in (Stage.HEARING_SCHEDULING, Stage.HEARING_SCHEDULED):
            raise refuse("cannot decide a penalty before the requested hearing is held (APL 64)")
        self._require_stage("decide a penalty", {Stage.DECISION_PENDING})
        notice = penalty.notice
        if heavier_than_notice(cmd.measure, cmd.fine_yuan, notice.measure, notice.fine_yuan):
            raise refuse(
                f"cannot decide {cmd.measure.value}"
                f"{f' of {yuan(cmd.fine_yuan)}' if cmd.fine_yuan else ''}: heavier than the prior "
                f"notice ({notice.measure.value}"
                f"{f' of {yuan(notice.fine_yuan)}' if notice.fine_yuan else ''}); defending never "
                "makes a penalty heavier (APL 45)"
            )
        persons = persons_heavier_than_notice(cmd.responsible_persons, notice.responsible_persons)
        if persons is not None:
            raise refuse(
                f"cannot decide this penalty: heavier than the prior notice for responsible "
                f"persons ({persons}); defending never makes a penalty heavier (APL 45)"
            )
        self._check_terms("decide", cmd)

    async def _await_service(self) -> None:
        penalty = self._penalty("wait for service")
        assert penalty.service_deadline is not None
        slot = self._slot("service of the decision", penalty, "service_deadline")
        if await self._wait_for(self._stage_changed_from(Stage.SERVICE_PENDING), slot):
            return
        await self._flag_overdue("service_overdue", penalty.service_deadline)
        await workflow.wait_condition(self._stage_changed_from(Stage.SERVICE_PENDING))

    async def _flag_overdue(self, flag: str, deadline: Deadline) -> None:
        proc = self._procedure
        assert proc is not None
        async with self._lock:
            if flag not in proc.needs_supervisor:
                proc.needs_supervisor.append(flag)
                await self._note(flag, SYSTEM, {"due": deadline.last_day})

    @workflow.update
    async def serve_decision(self, cmd: ServeDecision) -> CaseState:
        async with self._command(
            "serve the decision",
            {Stage.SERVICE_PENDING},
            lambda: self._validate_service(cmd),
            by=cmd,
        ):
            proc = self._require_v2("serve the decision")
            penalty = self._penalty("serve the decision")
            penalty.served_at = cmd.served_at
            payload = cmd.model_dump(mode="json", exclude={"actor"})
            doc = await self._issue_document(
                DocumentKind.PROOF_OF_SERVICE, cmd.actor, "Proof of service", payload
            )
            payload["document"] = doc.number
            outcome, authority = AFTER_SERVICE[penalty.measure]
            if penalty.measure is Measure.FINE:
                pay = proc.policy.safeguards.payment
                penalty.payment_deadline = await self._compute_deadline(
                    pay.days, pay.kind, cmd.served_at
                )
                await self._advance("decision_served", Stage.PAYMENT_PENDING, cmd.actor, payload)
            elif authority is not None:
                await self._advance("decision_served", Stage.REFERRING, cmd.actor, payload)
                await self._start_referral(
                    cmd.actor,
                    authority,
                    f"carry out the decision: {penalty.measure.value}",
                    False,
                    outcome,
                )
            else:
                await self._advance("decision_served", Stage.CLOSED, cmd.actor, payload, outcome)
        return self._state

    @serve_decision.validator
    def _validate_service(self, cmd: ServeDecision) -> None:
        penalty = self._penalty("serve the decision")
        self._require_stage("serve the decision", {Stage.SERVICE_PENDING})
        if cmd.served_at > workflow.now():
            raise refuse("cannot record service in the future")
        if penalty.decided_at is not None and cmd.served_at < penalty.decided_at:
            raise refuse("cannot serve the decision before it was made")

    # --- payment, surcharge, enforcement --------------------------------------------------

    def amount_due(self, paid_at: datetime) -> tuple[Decimal, Decimal]:
        """(fine, surcharge) owed if paid at `paid_at` (APL 72, appeal days excluded)."""
        proc = self._require_v2("pay")
        penalty = self._penalty("pay")
        assert penalty.decision is not None and penalty.decision.fine_yuan is not None
        assert penalty.payment_deadline is not None
        fine = penalty.decision.fine_yuan
        paused = {date.fromisoformat(d) for d in penalty.paused_days}
        if penalty.appeal_paused_since is not None:
            paused |= _days(penalty.appeal_paused_since, paid_at, inclusive=True)
        late = surcharge_days(
            date.fromisoformat(penalty.payment_deadline.last_day),
            date.fromisoformat(local_day(paid_at)),
            paused,
        )
        return fine, late_surcharge(fine, late, proc.policy.safeguards.late_surcharge_daily_rate)

    @workflow.update
    async def record_payment(self, cmd: RecordPayment) -> CaseState:
        async with self._command(
            "record a payment",
            {Stage.PAYMENT_PENDING, Stage.ENFORCEMENT},
            lambda: self._validate_payment(cmd),
            by=cmd,
        ):
            penalty = self._penalty("record a payment")
            fine, surcharge = self.amount_due(cmd.paid_at)
            penalty.paid_yuan, penalty.surcharge_yuan = cmd.amount_yuan, surcharge
            await self._advance(
                "fine_paid",
                Stage.CLOSED,
                cmd.actor,
                {
                    "amount_yuan": str(cmd.amount_yuan),
                    "fine_yuan": str(fine),
                    "surcharge_yuan": str(surcharge),
                    "paid_at": cmd.paid_at.isoformat(),
                },
                Outcome.PENALIZED,
            )
        return self._state

    @record_payment.validator
    def _validate_payment(self, cmd: RecordPayment) -> None:
        self._penalty("record a payment")
        self._require_stage("record a payment", {Stage.PAYMENT_PENDING, Stage.ENFORCEMENT})
        if cmd.paid_at > workflow.now():
            raise refuse("cannot record a payment in the future")
        fine, surcharge = self.amount_due(cmd.paid_at)
        if cmd.amount_yuan < fine + surcharge:
            raise refuse(
                f"cannot accept {yuan(cmd.amount_yuan)}: {yuan(fine + surcharge)} is due "
                f"(fine {yuan(fine)} + late surcharge {yuan(surcharge)})"
            )

    async def _await_payment(self) -> None:
        proc = self._require_v2("wait for payment")
        penalty = self._penalty("wait for payment")
        assert penalty.payment_deadline is not None
        slot = self._slot("payment", penalty, "payment_deadline")
        if await self._wait_for(self._stage_changed_from(Stage.PAYMENT_PENDING), slot):
            return
        async with self._lock:
            if self._state.stage is not Stage.PAYMENT_PENDING:
                return
            after = proc.policy.safeguards.enforcement_after_reminder
            penalty.reminder_at = workflow.now()
            penalty.enforcement_deadline = await self._compute_deadline(after.days, after.kind)
            doc = await self._issue_document(
                DocumentKind.PAYMENT_REMINDER,
                SYSTEM,
                "Reminder to pay (催告)",
                {
                    "payment_due": penalty.payment_deadline.last_day,
                    "enforcement_after": penalty.enforcement_deadline.last_day,
                },
            )
            await self._advance(
                "payment_reminder_sent", Stage.ENFORCEMENT, SYSTEM, {"document": doc.number}
            )

    async def _await_enforcement(self) -> None:
        penalty = self._penalty("wait for enforcement")
        assert penalty.enforcement_deadline is not None
        slot = self._slot("court enforcement", penalty, "enforcement_deadline")
        if await self._wait_for(self._stage_changed_from(Stage.ENFORCEMENT), slot):
            return
        async with self._lock:
            if self._state.stage is not Stage.ENFORCEMENT or penalty.enforcement_applied_at:
                return
            penalty.enforcement_applied_at = workflow.now()
            fine, surcharge = self.amount_due(workflow.now())
            doc = await self._issue_document(
                DocumentKind.ENFORCEMENT_APPLICATION,
                SYSTEM,
                "Application for court enforcement",
                {"fine_yuan": str(fine), "surcharge_yuan": str(surcharge)},
            )
            await self._note("court_enforcement_applied", SYSTEM, {"document": doc.number})
        await workflow.wait_condition(self._stage_changed_from(Stage.ENFORCEMENT))

    @workflow.update
    async def record_appeal(self, cmd: RecordAppeal) -> CaseState:
        """Reconsideration or litigation: enforcement goes on, the late surcharge pauses."""
        async with self._command(
            "record an appeal", APPEAL_STAGES, lambda: self._validate_appeal(cmd), by=cmd
        ):
            penalty = self._penalty("record an appeal")
            if cmd.event == "filed":
                penalty.appeals_pending.append(cmd.kind)
                if penalty.appeal_paused_since is None:
                    penalty.appeal_paused_since = cmd.at
            else:
                penalty.appeals_pending.remove(cmd.kind)
                if not penalty.appeals_pending and penalty.appeal_paused_since is not None:
                    days = _days(penalty.appeal_paused_since, cmd.at, inclusive=False)
                    penalty.paused_days.extend(sorted(d.isoformat() for d in days))
                    penalty.appeal_paused_since = None
            await self._note(f"{cmd.kind}_{cmd.event}", cmd.actor, {"at": cmd.at.isoformat()})
        return self._state

    @record_appeal.validator
    def _validate_appeal(self, cmd: RecordAppeal) -> None:
        penalty = self._penalty("record an appeal")
        self._require_stage("record an appeal", APPEAL_STAGES)
        if cmd.event == "concluded" and cmd.kind not in penalty.appeals_pending:
            raise refuse(f"cannot conclude a {cmd.kind}: none is pending")
        if cmd.event == "filed" and cmd.kind in penalty.appeals_pending:
            raise refuse(f"a {cmd.kind} is already pending")


def _days(start: datetime, end: datetime, inclusive: bool) -> set[date]:
    first, last = date.fromisoformat(local_day(start)), date.fromisoformat(local_day(end))
    if not inclusive:
        last -= timedelta(days=1)
    days, day = set(), first
    while day <= last:
        days.add(day)
        day += timedelta(days=1)
    return days
