"""Referrals to other authorities, each on its own timer; withdrawal; responsible persons; the
whole-case handling limit (APL 60)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.models import CaseState, Deadline, Outcome, Stage
    from domain.policy import Authority
    from domain.procedure_models import (
        CaseProcedure,
        DealWithResponsiblePersons,
        ExtendHandlingLimit,
        Refer,
        Referral,
        ReferralAction,
        Withdraw,
    )
    from domain.records import DocumentKind
    from workflows.case_core import SYSTEM, CaseCore, refuse

_ONE_MINUTE = timedelta(minutes=1)
WITHDRAWABLE = {
    Stage.FILING,
    Stage.FILED,
    Stage.INTERVIEW_SCHEDULED,
    Stage.INTERVIEWED,
    Stage.RECTIFYING,
    Stage.VERIFYING,
    Stage.INVESTIGATING,
    Stage.LEGAL_REVIEW,
    Stage.COLLECTIVE_DECISION,
    Stage.NOTICE_PENDING,
    Stage.DEFENCE,
    Stage.HEARING_SCHEDULING,
    Stage.HEARING_SCHEDULED,
    Stage.DECISION_PENDING,
}


class ReferralStages(CaseCore):
    _referral_tasks: list[asyncio.Task[None]]

    # --- referrals ---------------------------------------------------------------------------

    async def _start_referral(
        self,
        actor: str,
        authority: Authority,
        reasons: str,
        criminal: bool,
        closes_with: Outcome | None,
    ) -> Referral:
        proc = self._require_v2("refer the case")
        referral = Referral(
            referral_id=len(proc.referrals) + 1,
            authority=authority,
            reasons=reasons,
            criminal=criminal,
            requested_at=workflow.now(),
            status="awaiting_approval" if criminal else "sent",
            closes_with=closes_with,
        )
        proc.referrals.append(referral)
        if criminal:
            period = proc.policy.referrals.criminal_approval
            referral.approval_deadline = await self._compute_deadline(period.days, period.kind)
            await self._note("referral_requested", actor, self._referral_payload(referral))
        else:
            await self._send_referral(referral, actor)
        self._referral_tasks.append(asyncio.create_task(self._track_referral(referral)))
        return referral

    def _referral_payload(self, referral: Referral) -> dict[str, object]:
        return referral.model_dump(
            mode="json",
            include={
                "referral_id",
                "authority",
                "criminal",
                "status",
                "reasons",
                "letter_number",
                "approval_deadline",
                "acknowledgement_deadline",
                "closes_with",
            },
        )

    async def _send_referral(self, referral: Referral, actor: str) -> None:
        proc = self._procedure
        assert proc is not None
        period = proc.policy.referrals.acknowledgement[referral.authority]
        referral.acknowledgement_deadline = await self._compute_deadline(period.days, period.kind)
        doc = await self._issue_document(
            DocumentKind.REFERRAL_LETTER,
            actor,
            f"Referral to the {referral.authority.value}",
            {"reasons": referral.reasons, "criminal": referral.criminal},
        )
        referral.letter_number, referral.status = doc.number, "sent"
        await self._note("referral_sent", actor, self._referral_payload(referral))

    async def _track_referral(self, referral: Referral) -> None:
        """Each referral waits on its own timer; a missed one goes to a supervisor."""
        if referral.status == "awaiting_approval":
            await self._chase(
                referral, "awaiting_approval", "approval_deadline", "referral_approval_overdue"
            )
        if referral.status == "approved":
            assert referral.transfer_due_at is not None
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: referral.status != "approved",
                    timeout=referral.transfer_due_at - workflow.now(),
                    timeout_summary=f"referral {referral.referral_id}: transfer within 24 hours",
                )
            if referral.status == "approved":
                await self._referral_overdue(referral, "referral_transfer_overdue")
                await workflow.wait_condition(lambda: referral.status != "approved")
        await self._chase(referral, "sent", "acknowledgement_deadline", "referral_unacknowledged")

    async def _chase(self, referral: Referral, status: str, field: str, flag: str) -> None:
        if referral.status != status:
            return
        slot = self._slot(
            f"referral {referral.referral_id} {field.replace('_', ' ')}", referral, field
        )
        if not await self._wait_for(lambda: referral.status != status, slot):
            await self._referral_overdue(referral, flag)
            await workflow.wait_condition(lambda: referral.status != status)

    async def _referral_overdue(self, referral: Referral, flag: str) -> None:
        proc = self._procedure
        assert proc is not None
        async with self._lock:
            referral.overdue.append(flag)
            proc.needs_supervisor.append(f"{flag}:{referral.referral_id}")
            await self._note(flag, SYSTEM, self._referral_payload(referral))

    @workflow.update
    async def refer(self, cmd: Refer) -> CaseState:
        async with self._command(
            "refer the case",
            WITHDRAWABLE | {Stage.SERVICE_PENDING, Stage.PAYMENT_PENDING},
            lambda: self._validate_refer(cmd),
            by=cmd,
        ):
            await self._start_referral(cmd.actor, cmd.authority, cmd.reasons, cmd.criminal, None)
        return self._state

    @refer.validator
    def _validate_refer(self, cmd: Refer) -> None:
        self._check_v2("refer the case")
        self._require_stage(
            "refer the case", WITHDRAWABLE | {Stage.SERVICE_PENDING, Stage.PAYMENT_PENDING}
        )
        if cmd.criminal and cmd.authority is not Authority.POLICE:
            raise refuse("a criminal clue is transferred to the police")

    def _referral(self, what: str, action: ReferralAction, status: str) -> Referral:
        proc = self._check_v2(what)
        for referral in proc.referrals if proc else []:
            if referral.referral_id == action.referral_id:
                if referral.status != status:
                    raise refuse(
                        f"cannot {what}: referral {referral.referral_id} is {referral.status}"
                    )
                return referral
        raise refuse(f"cannot {what}: no referral {action.referral_id}")

    @workflow.update
    async def approve_referral(self, cmd: ReferralAction) -> CaseState:
        async with self._command(
            "approve the referral",
            set(Stage) - {Stage.CLOSED},
            lambda: self._validate_approve(cmd),
            by=cmd,
        ):
            referral = self._referral("approve the referral", cmd, "awaiting_approval")
            proc = self._procedure
            assert proc is not None
            referral.status = "approved"
            referral.transfer_due_at = workflow.now() + timedelta(
                hours=proc.policy.referrals.criminal_transfer_hours
            )
            await self._note("referral_approved", cmd.actor, self._referral_payload(referral))
        return self._state

    @approve_referral.validator
    def _validate_approve(self, cmd: ReferralAction) -> None:
        self._referral("approve the referral", cmd, "awaiting_approval")

    @workflow.update
    async def record_transfer(self, cmd: ReferralAction) -> CaseState:
        async with self._command(
            "transfer the case",
            set(Stage) - {Stage.CLOSED},
            lambda: self._validate_transfer(cmd),
            by=cmd,
        ):
            referral = self._referral("transfer the case", cmd, "approved")
            await self._send_referral(referral, cmd.actor)
        return self._state

    @record_transfer.validator
    def _validate_transfer(self, cmd: ReferralAction) -> None:
        self._referral("transfer the case", cmd, "approved")

    @workflow.update
    async def acknowledge_referral(self, cmd: ReferralAction) -> CaseState:
        async with self._command(
            "acknowledge the referral",
            set(Stage) - {Stage.CLOSED},
            lambda: self._validate_acknowledge(cmd),
            by=cmd,
        ):
            referral = self._referral("acknowledge the referral", cmd, "sent")
            referral.status = "acknowledged"
            payload = self._referral_payload(referral) | {"notes": cmd.notes}
            if referral.closes_with is not None and self._state.stage is Stage.REFERRING:
                await self._advance(
                    "referral_acknowledged", Stage.CLOSED, cmd.actor, payload, referral.closes_with
                )
            else:
                await self._note("referral_acknowledged", cmd.actor, payload)
        return self._state

    @acknowledge_referral.validator
    def _validate_acknowledge(self, cmd: ReferralAction) -> None:
        self._referral("acknowledge the referral", cmd, "sent")

    # --- withdrawal and responsible persons ---------------------------------------------------

    @workflow.update
    async def withdraw(self, cmd: Withdraw) -> CaseState:
        async with self._command(
            "withdraw the case", WITHDRAWABLE, lambda: self._validate_withdraw(cmd), by=cmd
        ):
            self._require_v2("withdraw the case")
            await self._advance(
                "withdrawn",
                Stage.CLOSED,
                cmd.actor,
                cmd.model_dump(mode="json", exclude={"actor"}),
                Outcome.WITHDRAWN,
            )
        return self._state

    @withdraw.validator
    def _validate_withdraw(self, cmd: Withdraw) -> None:
        self._check_v2("withdraw the case")
        if self._state.stage not in WITHDRAWABLE and self._state.stage is not Stage.CLOSED:
            raise refuse(
                f"cannot withdraw the case: a penalty was decided ({self._state.stage.value}); "
                "it can only be changed by reconsideration or litigation"
            )
        self._require_stage("withdraw the case", WITHDRAWABLE)

    @workflow.update
    async def deal_with_responsible_persons(self, cmd: DealWithResponsiblePersons) -> CaseState:
        async with self._command(
            "deal with responsible persons",
            set(Stage) - {Stage.CLOSED},
            lambda: self._validate_persons(cmd),
            by=cmd,
        ):
            proc = self._require_v2("deal with responsible persons")
            proc.responsible_persons.extend(cmd.persons)
            await self._note(
                "responsible_persons_dealt_with",
                cmd.actor,
                cmd.model_dump(mode="json", exclude={"actor"}),
            )
        return self._state

    @deal_with_responsible_persons.validator
    def _validate_persons(self, cmd: DealWithResponsiblePersons) -> None:
        self._check_v2("deal with responsible persons")
        fined = [person.name for person in cmd.persons if person.measure == "fine"]
        if fined:
            raise refuse(
                f"cannot fine {', '.join(fined)} this way: a fine on a responsible person is "
                "decided through the penalty procedure, after prior notice (APL 44)"
            )
        self._require_stage("deal with responsible persons", set(Stage) - {Stage.CLOSED})

    # --- the handling limit ------------------------------------------------------------------

    def _start_handling_watch(self) -> None:
        self._referral_tasks.append(asyncio.create_task(self._watch_handling_limit()))

    def _handling_settled(self) -> bool:
        proc = self._procedure
        return self._state.stage is Stage.CLOSED or bool(
            proc and proc.penalty and proc.penalty.decided_at
        )

    async def _watch_handling_limit(self) -> None:
        """Flag a case nearing, then past, the 90-day limit from filing until it is decided."""
        proc = self._procedure
        assert proc is not None
        while not self._handling_settled():
            await self._watch_one_limit(proc, proc.handling_deadline)

    async def _watch_one_limit(self, proc: CaseProcedure, deadline: Deadline | None) -> None:
        """Flag nearing and passing one handling deadline; return when it changes or settles."""
        assert deadline is not None

        def moved() -> bool:
            return self._handling_settled() or proc.handling_deadline is not deadline

        warn_at = deadline.due_at - timedelta(days=proc.policy.limits.handling_warning_days)
        for flag, at in (
            ("handling_limit_near", warn_at),
            ("handling_limit_exceeded", deadline.due_at),
        ):
            if flag in proc.handling_flags:
                continue
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    moved,
                    timeout=max(at - workflow.now(), timedelta(seconds=1)),
                    timeout_summary=f"{flag.replace('_', ' ')} ({deadline.last_day})",
                )
            if moved():
                return
            async with self._lock:
                proc.handling_flags.append(flag)
                if flag == "handling_limit_exceeded":
                    proc.needs_supervisor.append(flag)
                await self._note(flag, SYSTEM, {"limit": deadline.last_day})
        await workflow.wait_condition(moved)

    @workflow.update
    async def extend_handling_limit(self, cmd: ExtendHandlingLimit) -> CaseState:
        async with self._command(
            "extend the handling limit",
            WITHDRAWABLE - {Stage.FILING},
            lambda: self._validate_extend_limit(cmd),
            by=cmd,
        ):
            proc = self._require_v2("extend the handling limit")
            old = proc.handling_deadline
            assert old is not None
            new: Deadline = await self._compute_deadline(
                cmd.days, "calendar", old.due_at - _ONE_MINUTE
            )
            proc.handling_deadline = new
            proc.handling_flags.clear()
            for flag in ("handling_limit_exceeded",):
                if flag in proc.needs_supervisor:
                    proc.needs_supervisor.remove(flag)
            await self._note(
                "handling_limit_extended",
                cmd.actor,
                {"reasons": cmd.reasons, "old": old.last_day, "new": new.last_day},
            )
        return self._state

    @extend_handling_limit.validator
    def _validate_extend_limit(self, cmd: ExtendHandlingLimit) -> None:
        proc = self._check_v2("extend the handling limit")
        self._require_stage("extend the handling limit", WITHDRAWABLE - {Stage.FILING})
        if proc is not None and proc.handling_deadline is None:
            raise refuse("cannot extend the handling limit before the case is filed")
