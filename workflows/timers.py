"""Waiting on a case's deadlines: reminders before them, provisional ones counted again when the
calendar changes, and the stage's action when one passes (domain.procedure.STAGES)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.case import reminder_key
    from domain.procedure import StageRow
    from workflows.context import REMINDER, SYSTEM, CaseContext
    from workflows.handlers import EXPIRIES

PROVISIONAL_RECHECK = timedelta(days=7)


async def wait_for(
    case: CaseContext, name: str, done: Callable[[], bool], reminder_days: Collection[int] = ()
) -> bool:
    """Wait until `done()` or the deadline `name` passes; True when done in time.

    Sends the reminders due before the deadline, and while the deadline is provisional (a year
    without official working-day data) counts it again weekly or when the calendar changes,
    recording any change as a step. A deadline replaced meanwhile (an extension) counts as
    done: the caller waits again on the new one, with its own reminders.
    """
    first = case.state.deadlines.get(name)

    def replaced() -> bool:
        return case.state.deadlines.get(name) is not first

    while True:
        now = workflow.now()
        if done() or replaced() or first is None:
            return True
        deadline = first
        if now >= deadline.due_at:
            return False
        # Kept in the case, so a continued run does not send them again.
        reminded = case.state.reminded.setdefault(reminder_key(name, deadline), [])
        reminders = {
            days: deadline.due_at - timedelta(days=days)
            for days in reminder_days
            if days not in reminded
        }
        due = [days for days, at in reminders.items() if at <= now]
        if due:
            reminded.extend(sorted(due))  # several due at once: one reminder
            async with case.lock:
                if not (done() or replaced()):
                    await case.note(
                        "deadline_reminder",
                        REMINDER,
                        {
                            "deadline": name,
                            "due_at": deadline.due_at.isoformat(),
                            "days_before": min(due),
                        },
                    )
            continue
        wake = min([deadline.due_at, *reminders.values()])
        if deadline.provisional:
            wake = min(wake, now + PROVISIONAL_RECHECK)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: done() or replaced() or case.calendar_changed,
                timeout=wake - now,
                timeout_summary=f"{name} due {deadline.last_day}",
            )
        recheck = case.calendar_changed or workflow.now() < deadline.due_at
        if deadline.provisional and not (done() or replaced()) and recheck:
            case.calendar_changed = False
            await _recount(case, name)  # a new count replaces the deadline


async def _recount(case: CaseContext, name: str) -> None:
    """Count a provisional deadline again; record the change as a step (the deadline itself
    is then replaced, which ends the caller's wait on the old one)."""
    old = case.state.deadlines.get(name)
    if old is None or not old.provisional or old.start_day is None:
        return
    new = await case.recount(old)
    if new.due_at == old.due_at and new.provisional == old.provisional:
        return
    async with case.lock:
        if case.state.deadlines.get(name) is not old:
            return
        case.state.deadlines[name] = new
        await case.note(
            "deadline_recomputed",
            SYSTEM,
            {
                "deadline": name,
                "old": old.model_dump(mode="json"),
                "new": new.model_dump(mode="json"),
            },
        )
        case.show()


async def stage_timer(case: CaseContext, row: StageRow) -> None:
    """While the case is at `row.stage`, act when its deadline passes (once per deadline)."""
    assert row.deadline is not None and row.on_deadline is not None
    name, stage = row.deadline, row.stage
    expire = EXPIRIES[row.on_deadline]
    reminders = case.policy.reminders.days_before_deadline if row.reminders else ()
    while case.state.stage is stage:
        deadline = case.state.deadlines.get(name)

        def moved(deadline: object = deadline) -> bool:
            return case.state.stage is not stage or case.state.deadlines.get(name) is not deadline

        if deadline is None:
            await workflow.wait_condition(moved)
            continue
        if await wait_for(case, name, lambda: case.state.stage is not stage, reminders):
            continue  # moved on, or a new deadline to wait for
        async with case.lock:
            retry = await expire(case) if not moved() else None
        if retry is not None:
            await workflow.wait_condition(_either(retry, moved))
            continue
        await workflow.wait_condition(moved)


def _either(first: Callable[[], bool], second: Callable[[], bool]) -> Callable[[], bool]:
    return lambda: first() or second()
