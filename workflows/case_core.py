"""What every stage of CaseWorkflow shares: state, the command lock, audited transitions,
deadlines computed by activities (with reminders and provisional recomputation), documents and
search attributes. Deterministic: time only from `workflow.now()`, side effects in activities.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.deadlines import DeadlineActivities
    from activities.documents import DocumentActivities
    from activities.register import CaseRegisterActivities
    from domain.models import (
        CaseCommand,
        CaseState,
        Deadline,
        IssuedWarning,
        Outcome,
        Stage,
    )
    from domain.policy import Authority, Measure, rung_at, starting_rung
    from domain.procedure_models import CaseProcedure, PenaltyProcedure, Referral
    from domain.records import (
        AuditEntry,
        DeadlineRequest,
        DocumentKind,
        DocumentRecord,
        IssueDocumentRequest,
    )
    from workflows import search

COMMAND_REFUSED = "CommandRefused"
SYSTEM = "system:deadline"
PROVISIONAL_RECHECK = timedelta(days=7)
ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Database outages are waited out; only a record that can never be written stops retrying.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["ValidationError", "DataError", "UnknownCategory"],
)
SHANGHAI_OFFSET = timedelta(hours=8)  # Asia/Shanghai has had no daylight saving since 1991


def refuse(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=COMMAND_REFUSED, non_retryable=True)


def yuan(amount: Decimal) -> str:
    """Money as the documents print it: ¥1,234.50."""
    return f"¥{amount:,.2f}"


def local_day(instant: datetime) -> str:
    """The Asia/Shanghai date of an instant, without reading time-zone files in the workflow."""
    return (instant + SHANGHAI_OFFSET - (instant.utcoffset() or timedelta(0))).date().isoformat()


@dataclass
class DeadlineSlot:
    """Where a deadline lives in state, so a provisional one can be replaced when recomputed."""

    name: str
    get: Callable[[], Deadline]
    set: Callable[[Deadline], None]


class CaseCore:
    _state: CaseState
    _procedure: CaseProcedure | None
    _v2: bool
    _registered: bool
    _lock: asyncio.Lock
    _calendar_changed: bool
    _open_refused: str | None  # why the case could not open (unknown category, no policy)
    # The API key of the command holding the lock: every audit entry it makes names it.
    _acting_key: str | None = None

    # --- stage checks -----------------------------------------------------------------------

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

    def _check_v2(self, what: str) -> CaseProcedure | None:
        """For validators: refuse version-1 cases; None while a new case is still opening (its
        policy not loaded yet) — the handler runs the validator again once it is."""
        if not self._v2:
            raise refuse(
                f"cannot {what}: case {self._state.case_id} runs the first version of the "
                "procedure, which does not know this command"
            )
        if self._open_refused is not None:
            raise refuse(self._open_refused)
        return self._procedure

    def _require_v2(self, what: str) -> CaseProcedure:
        proc = self._check_v2(what)
        assert proc is not None, "handlers run after the case is registered"
        return proc

    def _stage_changed_from(self, stage: Stage) -> Callable[[], bool]:
        return lambda: self._state.stage is not stage

    def _command(
        self,
        what: str,
        allowed: Collection[Stage],
        check: Callable[[], None] | None = None,
        by: CaseCommand | None = None,
    ) -> _Command:
        """Run a command under the lock; `check` (its validator) runs again once the case is
        registered and the lock held, since a timer or another command may have moved it.
        `by`: the command itself, whose `acting_key` the audit entries it makes then carry."""
        return _Command(self, what, allowed, check, by.acting_key if by is not None else None)

    # --- transitions --------------------------------------------------------------------------

    async def _advance(
        self,
        action: str,
        to_stage: Stage,
        actor: str,
        payload: dict[str, Any],
        outcome: Outcome | None = None,
        waiting_for: str | None = None,
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
        state.waiting_for = waiting_for or self._waiting_for(to_stage)
        if outcome is not None:
            state.outcome = outcome
            state.closed_at = entry.occurred_at
        if self._v2:
            self._upsert_search_attributes()

    async def _note(self, action: str, actor: str, payload: dict[str, Any]) -> None:
        """Audit a step that does not change the stage (a reminder, a flag, a recomputation)."""
        await self._advance(
            action, self._state.stage, actor, payload, None, self._state.waiting_for
        )

    def _entry(
        self,
        action: str,
        from_stage: Stage | None,
        to_stage: Stage,
        actor: str,
        payload: dict[str, Any],
        outcome: Outcome | None,
    ) -> AuditEntry:
        pending = None if outcome is not None else self._pending_deadline(to_stage)
        if self._acting_key is not None:
            payload = {**payload, "acting_key": self._acting_key}
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
            deadline_at=pending.due_at if pending else None,
            deadline_provisional=bool(pending and pending.provisional),
        )

    def _pending_deadline(self, stage: Stage) -> Deadline | None:
        """The deadline a supervisor watches at this stage (overridden by the workflow)."""
        order = self._state.order
        if order is not None and stage is Stage.RECTIFYING:
            return order.deadline
        return None

    if TYPE_CHECKING:  # provided by CaseWorkflow and its stage mixins

        def _waiting_for(self, stage: Stage) -> str: ...

        async def _start_referral(
            self,
            actor: str,
            authority: Authority,
            reasons: str,
            criminal: bool,
            closes_with: Outcome | None,
        ) -> Referral: ...

        def _start_handling_watch(self) -> None: ...

    # --- escalation ---------------------------------------------------------------------------

    async def _escalate(self, reason: str, actor: str) -> None:
        """Climb the ladder: version 1 warns; version 2 takes the policy's next measure, through
        the penalty procedure, or a referral when the measure is one."""
        if not self._v2:
            self._state.warning = IssuedWarning(issued_at=workflow.now(), reason=reason)
            await self._advance("warning_issued", Stage.PENALTY_PENDING, actor, {"reason": reason})
            return
        proc = self._procedure
        assert proc is not None
        proc.escalations += 1
        index = starting_rung(proc.policy) + proc.escalations - 1
        rung = rung_at(proc.policy, index)
        payload = {"reason": reason, "rung": index, "measure": rung.measure.value}
        if rung.measure is Measure.REFERRAL:
            assert rung.authority is not None
            await self._advance("escalated_to_referral", Stage.REFERRING, actor, payload)
            await self._start_referral(actor, rung.authority, reason, True, Outcome.REFERRED)
            return
        severity = self._state.opened.severity
        safeguards = proc.policy.safeguards
        proc.penalty = PenaltyProcedure(
            opened_at=workflow.now(),
            reason=reason,
            rung=min(index, len(proc.policy.rules.ladder) - 1),
            measure=rung.measure,
            legal_review_required=severity in safeguards.legal_review_severities,
            collective_decision_required=severity in safeguards.collective_decision_severities,
        )
        await self._advance("penalty_procedure_opened", Stage.INVESTIGATING, actor, payload)

    def _upsert_search_attributes(self) -> None:
        opened = self._state.opened
        pending = self._pending_deadline(self._state.stage)
        updates: list[SearchAttributeUpdate[Any]] = [
            search.STAGE.value_set(self._state.stage.value),
            search.CATEGORY.value_set(opened.violation_category),
            search.OFFICE.value_set(opened.office),
            search.SUBJECT.value_set(opened.subject.name),
            search.NEXT_DEADLINE.value_set(pending.due_at)
            if pending
            else search.NEXT_DEADLINE.value_unset(),
        ]
        workflow.upsert_search_attributes(updates)

    # --- deadlines ------------------------------------------------------------------------------

    async def _compute_deadline(
        self, days: int, kind: str, start: datetime | None = None
    ) -> Deadline:
        deadline: Deadline = await workflow.execute_activity_method(
            DeadlineActivities.compute_deadline,
            DeadlineRequest.model_validate(
                {"start": start or workflow.now(), "days": days, "kind": kind}
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        return deadline

    async def _wait_for(
        self,
        done: Callable[[], bool],
        slot: DeadlineSlot,
        reminder_days: Collection[int] = (),
    ) -> bool:
        """Wait until `done()` or the slot's deadline passes; True when done in time.

        Sends the reminders due before the deadline, and while the deadline is provisional
        (a year without official working-day data) recomputes it weekly or when the calendar
        changes, auditing any change.
        """
        reminded: set[int] = set()
        while True:
            deadline, now = slot.get(), workflow.now()
            if done():
                return True
            if now >= deadline.due_at:
                return False
            reminders = {
                days: deadline.due_at - timedelta(days=days)
                for days in reminder_days
                if days not in reminded
            }
            due_reminders = [days for days, at in reminders.items() if at <= now]
            if due_reminders:
                reminded.update(due_reminders)  # several due at once: one reminder
                async with self._lock:
                    if not done():
                        await self._note(
                            "deadline_reminder",
                            "system:reminder",
                            {
                                "deadline": slot.name,
                                "due_at": deadline.due_at.isoformat(),
                                "days_before": min(due_reminders),
                            },
                        )
                continue
            wake = min([deadline.due_at, *reminders.values()])
            if deadline.provisional:
                wake = min(wake, now + PROVISIONAL_RECHECK)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: done() or self._calendar_changed,
                    timeout=wake - now,
                    timeout_summary=f"{slot.name} due {deadline.last_day}",
                )
            if deadline.provisional and (
                self._calendar_changed or workflow.now() < deadline.due_at
            ):
                self._calendar_changed = False
                await self._recompute(slot)

    @staticmethod
    def _slot(name: str, owner: object, attr: str) -> DeadlineSlot:
        """A deadline kept in `owner.attr` (a model field set before the wait begins)."""

        def get() -> Deadline:
            value = getattr(owner, attr)
            assert isinstance(value, Deadline), f"{attr} is not set"
            return value

        return DeadlineSlot(name, get, lambda deadline: setattr(owner, attr, deadline))

    async def _recompute(self, slot: DeadlineSlot) -> None:
        old = slot.get()
        if not old.provisional or old.start_day is None:
            return
        start = datetime.fromisoformat(f"{old.start_day}T12:00:00+08:00")
        new = await self._compute_deadline(old.days, old.kind, start)
        if new.due_at == old.due_at and new.provisional == old.provisional:
            return
        async with self._lock:
            slot.set(new)
            await self._note(
                "deadline_recomputed",
                SYSTEM,
                {
                    "deadline": slot.name,
                    "old": old.model_dump(mode="json"),
                    "new": new.model_dump(mode="json"),
                },
            )

    # --- documents ----------------------------------------------------------------------------

    async def _issue_document(
        self, kind: DocumentKind, actor: str, title: str, content: dict[str, Any]
    ) -> DocumentRecord:
        record: DocumentRecord = await workflow.execute_activity_method(
            DocumentActivities.issue_document,
            IssueDocumentRequest(
                case_id=self._state.case_id,
                workflow_id=self._state.workflow_id,
                step=f"{self._state.audit_seq + 1}/{kind.value}",
                kind=kind,
                office=self._state.opened.office,
                actor=actor,
                issued_at=workflow.now(),
                title=title,
                # Who gave the command is the audit trail's; the document is the party's.
                content={k: v for k, v in content.items() if k != "acting_key"},
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        if self._procedure is not None:
            self._procedure.documents.append(record.number)
        return record


class _Command:
    """Runs a command under the case lock once the case is registered, re-checking its stage."""

    def __init__(
        self,
        wf: CaseCore,
        what: str,
        allowed: Collection[Stage],
        check: Callable[[], None] | None,
        acting_key: str | None = None,
    ) -> None:
        self._wf, self._what, self._allowed, self._check = wf, what, allowed, check
        self._acting_key = acting_key

    async def __aenter__(self) -> None:
        wf = self._wf
        await workflow.wait_condition(lambda: wf._registered or wf._open_refused is not None)
        if wf._open_refused is not None:
            raise refuse(wf._open_refused)
        await wf._lock.acquire()
        try:
            # The validator saw the stage before an earlier command or a timer changed it.
            wf._require_stage(self._what, self._allowed)
            if self._check is not None:
                self._check()
        except BaseException:
            wf._lock.release()
            raise
        wf._acting_key = self._acting_key

    async def __aexit__(self, *exc: object) -> None:
        self._wf._acting_key = None
        self._wf._lock.release()
