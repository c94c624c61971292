"""CaseWorkflow: one enforcement case, from the clue to its outcome, with every deadline.

The workflow is thin. Its updates are made from the procedure table (domain/procedure.py): one
per command row, each validated by the row's stages and its handler's own rule, each delegating
to the step function registered for it in workflows/{intake,rectification,penalty,referral}.py.
`run` opens the case, then, stage by stage, waits for a command or runs the stage's timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.steps import StepActivities
    from domain.case import CaseRun, CaseState, Continuation, OperatorOrder, Receipt
    from domain.commands import EVENT_OPENER_PREFIX, CalendarUpdated, DetectionsArrived
    from domain.models import CaseResult, Outcome, Stage
    from domain.procedure import COMMANDS, HANDLING, STAGE_ROW, Command
    from domain.records import OpeningRequest
    from workflows import (  # noqa: F401 (they register the step functions)
        intake,
        penalty,
        performance,
        rectification,
        referral,
    )
    from workflows.context import COMMAND_REFUSED, STEP_RETRY, STEP_TIMEOUT, CaseContext, refuse
    from workflows.handlers import HANDLERS
    from workflows.intake import watch_handling_limit
    from workflows.referral import track
    from workflows.timers import stage_timer

__all__ = ["CASE_NOT_OPENED", "COMMAND_REFUSED", "CaseWorkflow"]

CASE_NOT_OPENED = "CaseNotOpened"
OPENING_REFUSALS = ("UnknownCategory", "NoPolicyInForce")  # what the opening activity refuses


def _command_update(command: Command) -> Any:
    """The update of one command row: one line to the row's handler, validated by the row."""

    async def update(self: CaseWorkflow, cmd: Any) -> Receipt:
        return await self._command(command, cmd)

    def validate(self: CaseWorkflow, cmd: Any) -> None:
        self._validate(command, cmd)

    # The SDK reads the input and result types from the annotations.
    update.__annotations__ = {"cmd": command.body, "return": Receipt}
    validate.__annotations__ = {"cmd": command.body, "return": None}
    update.__name__ = update.__qualname__ = command.name
    handler = workflow.update(name=command.name)(update)
    handler.validator(validate)
    return handler


def _with_commands(cls: type) -> type:
    for command in COMMANDS:
        setattr(cls, command.name, _command_update(command))
    return cls


@workflow.defn(name="CaseWorkflow")
@_with_commands
class CaseWorkflow:
    """One enforcement case: its own handlers here, and one update per row of
    domain.procedure.COMMANDS, added by `_with_commands`."""

    @workflow.init
    def __init__(self, run: CaseRun) -> None:
        info = workflow.info()
        carried = run.carried
        self._history_limit = run.history_limit
        self._run = carried.run if carried is not None else 1
        if carried is not None:
            state = carried.state
        else:
            state = CaseState.new(run.opening_input(), info.workflow_id, info.start_time)
            if run.opened_by.startswith(EVENT_OPENER_PREFIX):
                state.detections.count = 1  # the detection that opened it
        self._case = CaseContext(state)
        if carried is not None:
            self._case.calendar_changed = carried.calendar_changed

    @workflow.run
    async def run(self, run: CaseRun) -> CaseResult:
        case = self._case
        if run.carried is None:
            await self._opening()
            if case.refused_opening is not None:
                # Commands already waiting are refused with the reason; then the case ends.
                await workflow.wait_condition(workflow.all_handlers_finished)
                raise ApplicationError(
                    case.refused_opening, type=CASE_NOT_OPENED, non_retryable=True
                )
        else:
            await self._carry_on(run.order)
        procedure = asyncio.create_task(self._procedure())
        await workflow.wait_condition(lambda: procedure.done() or self._should_continue())
        if not procedure.done():
            state = case.state
            workflow.logger.info(
                "case %s continues as new after %d history events (run %d, step %d)",
                state.case_id,
                workflow.info().get_current_history_length(),
                self._run,
                state.step,
            )
            workflow.continue_as_new(
                CaseRun.of(
                    state.opened,
                    carried=Continuation(
                        state=state, calendar_changed=case.calendar_changed, run=self._run + 1
                    ),
                    history_limit=self._history_limit,
                )
            )
        await procedure
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and case.background_done()
        )
        state = case.state
        assert state.outcome is not None and state.closed_at is not None
        return CaseResult(case_id=state.case_id, outcome=state.outcome, closed_at=state.closed_at)

    async def _procedure(self) -> None:
        """Stage by stage: wait for a command, or run the stage's timer."""
        case = self._case
        while case.stage is not Stage.CLOSED:
            stage = case.stage
            row = STAGE_ROW[stage]
            if row.on_deadline is not None:
                await stage_timer(case, row)
            else:
                await workflow.wait_condition(case.left(stage))

    def _should_continue(self) -> bool:
        """Continue-as-new when the server suggests it (or at the configured history length),
        only between steps: no handler running, no step being recorded or waiting to be."""
        info = workflow.info()
        long = info.is_continue_as_new_suggested() or (
            self._history_limit is not None
            and info.get_current_history_length() >= self._history_limit
        )
        return (
            long
            and self._case.stage is not Stage.CLOSED
            and workflow.all_handlers_finished()
            and self._case.idle()
        )

    async def _carry_on(self, order: OperatorOrder | None) -> None:
        """A run carrying the case on: restart the watchers the state says were running, then
        record the operator's order, if any (the reason is audited as this run's first step)."""
        case, state = self._case, self._case.state
        case.resume(shown_by_earlier_run=order is None)
        if order is not None:
            payload = {"reason": order.reason, "interrupted": order.interrupted, "run": self._run}
            async with case.lock:
                if order.action == "close":
                    await case.step(
                        "case_closed_by_operator",
                        order.actor,
                        payload=payload,
                        outcome=Outcome.CLOSED_BY_OPERATOR,
                    )
                    return
                await case.note("case_reopened", order.actor, payload)
        if HANDLING in state.deadlines:
            case.start(watch_handling_limit(case))
        for referral in state.referrals:
            if referral.status != "acknowledged":
                case.start(track(case, referral))

    async def _opening(self) -> None:
        """One activity: the policy slice, the filing deadline, the register row. A regular
        activity, not a local one like the steps: an update sent with the start (an event that
        opens the case) must be accepted in an earlier workflow task than a refused opening
        fails the case in, or its caller gets no reason."""
        case, state = self._case, self._case.state
        async with case.lock:
            try:
                opening = await workflow.execute_activity_method(
                    StepActivities.open_case,
                    OpeningRequest(
                        opened=state.opened,
                        workflow_id=state.workflow_id,
                        opened_at=state.opening.opened_at,
                    ),
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=STEP_RETRY,
                )
            except ActivityError as err:
                cause = err.cause
                if isinstance(cause, ApplicationError) and cause.type in OPENING_REFUSALS:
                    case.refused_opening = f"case {state.case_id} cannot open: {cause.message}"
                    return
                raise
            state.open_with(opening.policy, opening.filing_deadline)
            case.opened = True
            case.show()

    @workflow.query
    def state(self) -> CaseState:
        return self._case.state

    @workflow.signal
    def calendar_updated(self, update: CalendarUpdated) -> None:
        """An operator loaded a year's working days: provisional deadlines are recounted."""
        self._case.calendar_changed = True

    async def _command(self, command: Command, cmd: Any) -> Receipt:
        """Run a command under the case lock once the case has opened, checking it again:
        a timer or an earlier command may have moved the case since its validator ran."""
        case = self._case
        await workflow.wait_condition(lambda: case.opened or case.refused_opening is not None)
        handler = HANDLERS[command.name]
        async with case.lock:
            case.check(command, cmd, handler.check, handler.explain)
            case.begin(cmd.acting_key)
            try:
                await handler.run(case, cmd)
            finally:
                receipt = case.end()
        return receipt

    def _validate(self, command: Command, cmd: Any) -> None:
        case = self._case
        if case.refused_opening is not None:
            raise refuse(case.refused_opening)
        if case.opened:  # otherwise the handler checks once the case has opened
            handler = HANDLERS[command.name]
            case.check(command, cmd, handler.check, handler.explain)

    # --- detections ----------------------------------------------------------------------------

    @workflow.signal
    def detections_arrived(self, news: DetectionsArrived) -> None:
        """Coalesced news from the detections inbox: the count and the latest few. Older news
        arriving late changes nothing."""
        detections = self._case.state.detections
        if news.count > detections.count:
            detections.count, detections.latest = news.count, list(news.latest)
