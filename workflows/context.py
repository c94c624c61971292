"""The explicit context every step function works on: the case's state, its lock, the step
recorder (one activity per step) and the refusals. Deterministic: time from `workflow.now()`,
every side effect in an activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.deadlines import DeadlineActivities
    from activities.steps import StepActivities
    from domain.case import CaseState, Receipt, apply_step, pending_deadline
    from domain.models import CaseCommand, Deadline, Outcome, Stage
    from domain.policy import CasePolicy
    from domain.procedure import Command
    from domain.records import (
        DeadlineRequest,
        DocumentDraft,
        DocumentKind,
        PeriodRequest,
        StepRecord,
        StepResult,
    )
    from workflows import search

COMMAND_REFUSED = "CommandRefused"
SYSTEM = "system:deadline"
REMINDER = "system:reminder"
STEP_TIMEOUT = timedelta(seconds=30)
# Database outages are waited out; only a record that can never be written stops retrying.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["ValidationError", "DataError", "UnknownCategory"],
)
SHANGHAI_OFFSET = timedelta(hours=8)  # Asia/Shanghai has had no daylight saving since 1991


def refuse(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=COMMAND_REFUSED, non_retryable=True)


def local_day(instant: datetime) -> str:
    """The Asia/Shanghai date of an instant, without reading time-zone files in the workflow."""
    return (instant + SHANGHAI_OFFSET - (instant.utcoffset() or timedelta(0))).date().isoformat()


def period(name: str, days: int, kind: str, start: datetime | None = None) -> PeriodRequest:
    """A deadline for the step to count: `days` of `kind` from `start` (default: now)."""
    return PeriodRequest.model_validate(
        {"name": name, "start": start or workflow.now(), "days": days, "kind": kind}
    )


def document(kind: DocumentKind, title: str, content: dict[str, Any]) -> DocumentDraft:
    # Who gave the command is the audit trail's; the document is the party's.
    return DocumentDraft(
        kind=kind, title=title, content={k: v for k, v in content.items() if k != "acting_key"}
    )


def details(cmd: CaseCommand) -> dict[str, Any]:
    """What a command says, for its audit row and documents (who gave it is recorded apart)."""
    return cmd.model_dump(mode="json", exclude={"actor", "acting_key"})


class CaseContext:
    """One case as its step functions see it."""

    def __init__(self, state: CaseState) -> None:
        self.state = state
        # Commands and timers change the case one at a time.
        self.lock = asyncio.Lock()
        self.opened = False  # the opening step is written: commands may run
        self.refused_opening: str | None = None  # why the case could not open
        self.calendar_changed = False
        self.background: list[asyncio.Task[None]] = []
        self._acting_key: str | None = None  # the API key of the command holding the lock
        self._issued: list[str] = []  # document numbers the running command issued
        self._shown: tuple[str, datetime | None] = (Stage.FILING.value, None)

    # --- reading -----------------------------------------------------------------------------

    @property
    def policy(self) -> CasePolicy:
        assert self.state.policy is not None, "step functions run after the case opened"
        return self.state.policy

    @property
    def stage(self) -> Stage:
        return self.state.stage

    def left(self, stage: Stage) -> Callable[[], bool]:
        """A condition: the case has moved on from `stage`."""
        return lambda: self.state.stage is not stage

    def deadline(self, name: str) -> Deadline:
        deadline = self.state.deadlines.get(name)
        assert deadline is not None, f"no {name} deadline"
        return deadline

    # --- commands ------------------------------------------------------------------------------

    def refuse_if_closed(self, what: str) -> None:
        """Refuse anything on a case that could not open or has closed, saying which."""
        state = self.state
        if self.refused_opening is not None:
            raise refuse(self.refused_opening)
        if state.stage is Stage.CLOSED:
            raise refuse(
                f"cannot {what}: case {state.case_id} is closed"
                f" (outcome: {state.outcome.value if state.outcome else 'none'})"
            )

    def check(self, command: Command, cmd: Any, check: Any = None, explain: Any = None) -> None:
        """Refuse a command the case cannot take now: closed, the wrong stage, or its own rule."""
        state = self.state
        self.refuse_if_closed(command.what)
        if state.stage not in command.stages:
            if explain is not None:
                explain(self, cmd)
            needed = " or ".join(sorted(stage.value for stage in command.stages))
            raise refuse(
                f"cannot {command.what}: case {state.case_id} is at stage {state.stage.value},"
                f" this needs stage {needed}"
            )
        if check is not None:
            check(self, cmd)

    def idle(self) -> bool:
        """No step is being recorded, and none waits for the lock."""
        return not self.lock.locked() and not getattr(self.lock, "_waiters", None)

    def begin(self, acting_key: str | None) -> None:
        self._acting_key, self._issued = acting_key, []

    def end(self) -> Receipt:
        self._acting_key = None
        state = self.state
        return Receipt(
            case_id=state.case_id,
            stage=state.stage,
            step=state.step,
            waiting_for=state.waiting_for,
            documents=list(self._issued),
            outcome=state.outcome,
        )

    # --- steps ---------------------------------------------------------------------------------

    async def step(
        self,
        action: str,
        actor: str,
        *,
        to: Stage | None = None,
        payload: dict[str, Any] | None = None,
        outcome: Outcome | None = None,
        documents: Iterable[DocumentDraft] = (),
        periods: Iterable[PeriodRequest] = (),
        settles: Iterable[str] = (),
        pending_periods: list[str] | None = None,
    ) -> StepResult:
        """Record one step in one activity (audit row, register row, documents, deadlines),
        then apply it: the deadlines it set, the ones it settled, the stage it moved to."""
        state = self.state
        to_stage = Stage.CLOSED if outcome is not None else (to or state.stage)
        periods = list(periods)
        settled = set(settles)
        if outcome is not None:
            settled |= set(state.deadlines)
        after = {k: v for k, v in state.deadlines.items() if k not in settled}
        new_names = [p.name for p in periods]
        pending: Deadline | list[str] | None
        if pending_periods and outcome is None:
            pending = pending_periods  # the step says which of its deadlines the case waits on
        else:
            pending = self._pending_after(to_stage, after, new_names)
        record = StepRecord(
            case_id=state.case_id,
            workflow_id=state.workflow_id,
            office=state.opened.office,
            seq=state.step + 1,
            action=action,
            from_stage=state.stage,
            to_stage=to_stage,
            actor=actor,
            occurred_at=workflow.now(),
            payload={**(payload or {}), **self._acting()},
            outcome=outcome,
            documents=list(documents),
            periods=periods,
            pending=None if isinstance(pending, list) else pending,
            pending_periods=pending if isinstance(pending, list) else [],
            settles=sorted(settled),
            state=state.model_dump(mode="json"),
        )
        result: StepResult = await workflow.execute_local_activity_method(
            StepActivities.record_step,
            record,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        apply_step(state, record, result)
        self._issued.extend(doc.number for doc in result.documents)
        self.show()
        return result

    async def note(self, action: str, actor: str, payload: dict[str, Any] | None = None) -> None:
        """A step that does not move the case: a reminder, a flag, a party's request."""
        await self.step(action, actor, payload=payload)

    def _acting(self) -> dict[str, str]:
        return {"acting_key": self._acting_key} if self._acting_key else {}

    def _pending_after(
        self, stage: Stage, deadlines: dict[str, Deadline], new: list[str]
    ) -> Deadline | list[str] | None:
        """The deadline the register shows after the step: a known one, or the names of the
        new ones the step's activity counts (it shows the latest)."""
        if stage is Stage.CLOSED:
            return None
        probe = self.state.model_copy(update={"stage": stage, "deadlines": dict(deadlines)})
        for name in new:
            probe.deadlines[name] = _PLACEHOLDER
        found = pending_deadline(probe)
        if found is None:
            return None
        if found.deadline is _PLACEHOLDER:
            return [found.name]
        return found.deadline

    def resume(self, shown_by_earlier_run: bool) -> None:
        """A run carrying the case on: it is open; the search attributes are the earlier run's
        (continue-as-new keeps them) or those it was started with (an operator's new run)."""
        self.opened = True
        if shown_by_earlier_run:
            found = pending_deadline(self.state)
            self._shown = (self.state.stage.value, found.deadline.due_at if found else None)
        self.show()

    def show(self) -> None:
        """Upsert the stage and the next deadline, only when one of them changed."""
        found = pending_deadline(self.state)
        shown = (self.state.stage.value, found.deadline.due_at if found else None)
        if shown == self._shown:
            return
        updates: list[SearchAttributeUpdate[Any]] = []
        if shown[0] != self._shown[0]:
            updates.append(search.STAGE.value_set(shown[0]))
        if shown[1] != self._shown[1]:
            updates.append(
                search.NEXT_DEADLINE.value_set(shown[1])
                if shown[1] is not None
                else search.NEXT_DEADLINE.value_unset()
            )
        self._shown = shown
        workflow.upsert_search_attributes(updates)

    # --- deadlines -------------------------------------------------------------------------

    async def count(self, days: int, kind: str) -> Deadline:
        """Count a period from now without recording a step (a check before a command)."""
        return await self._compute(
            DeadlineRequest.model_validate({"start": workflow.now(), "days": days, "kind": kind})
        )

    async def recount(self, deadline: Deadline) -> Deadline:
        """Count a provisional deadline again on today's calendar."""
        assert deadline.start_day is not None
        start = datetime.fromisoformat(f"{deadline.start_day}T12:00:00+08:00")
        return await self._compute(
            DeadlineRequest.model_validate(
                {"start": start, "days": deadline.days, "kind": deadline.kind}
            )
        )

    async def _compute(self, request: DeadlineRequest) -> Deadline:
        deadline: Deadline = await workflow.execute_local_activity_method(
            DeadlineActivities.compute_deadline,
            request,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        return deadline

    def start(self, coroutine: Any) -> None:
        """Run a watcher (a referral, the handling limit) beside the procedure."""
        self.background.append(asyncio.create_task(coroutine))

    def background_done(self) -> bool:
        return all(task.done() for task in self.background)


# Stands for a deadline the step is about to count, while working out which one it shows.
_PLACEHOLDER = Deadline(
    due_at=datetime.fromisoformat("9999-12-31T00:00:00+00:00"),
    last_day="9999-12-31",
    days=1,
    kind="calendar",
    explanation="counted by the step",
)
