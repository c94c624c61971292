"""CaseWorkflow: one enforcement case, from the clue to its outcome, with every deadline.

The workflow is thin. Its updates are made from the procedure table (domain/procedure.py): one
per command row, each validated by the row's stages and its handler's own rule, each delegating
to the step function registered for it in workflows/{intake,rectification,penalty,referral}.py.
`run` opens the case, then, stage by stage, waits for a command or runs the stage's timer.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.steps import StepActivities
    from domain.case import CaseState, Opening, Receipt
    from domain.commands import CalendarUpdated, CaseEvent, EventReceipt, opened_by_event
    from domain.models import CaseResult, OpenCaseInput, Stage
    from domain.procedure import COMMANDS, STAGE_ROW, Command, waits_for
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
    def __init__(self, opened: OpenCaseInput) -> None:
        info = workflow.info()
        self._case = CaseContext(
            CaseState(
                case_id=opened.case_id,
                workflow_id=info.workflow_id,
                opening=Opening(input=opened, opened_at=info.start_time),
                stage=Stage.FILING,
                waiting_for=waits_for(Stage.FILING),
            )
        )

    @workflow.run
    async def run(self, opened: OpenCaseInput) -> CaseResult:
        case = self._case
        await self._opening()
        if case.refused_opening is not None:
            # Commands already waiting are refused with the reason; then the case ends.
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise ApplicationError(case.refused_opening, type=CASE_NOT_OPENED, non_retryable=True)
        while case.stage is not Stage.CLOSED:
            stage = case.stage
            row = STAGE_ROW[stage]
            if row.on_deadline is not None:
                await stage_timer(case, row)
            else:
                await workflow.wait_condition(case.left(stage))
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and case.background_done()
        )
        state = case.state
        assert state.outcome is not None and state.closed_at is not None
        return CaseResult(case_id=state.case_id, outcome=state.outcome, closed_at=state.closed_at)

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
            state.policy = opening.policy
            state.opening.policy_version = opening.policy.version
            state.opening.prior_cases = opening.policy.prior_cases
            state.deadlines["filing"] = opening.filing_deadline
            state.step = 1
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

    # --- events --------------------------------------------------------------------------------

    @workflow.update
    async def record_event(self, event: CaseEvent) -> EventReceipt:
        """Record an event on the case; a key seen before is acknowledged, not applied again.
        Both checks run under the case lock, so concurrent duplicates take effect once."""
        case = self._case
        await workflow.wait_condition(lambda: case.opened or case.refused_opening is not None)
        async with case.lock:
            self._validate_event(event)
            state = case.state
            if event.idempotency_key in state.event_keys:
                return self._event_receipt(event, "duplicate")
            state.event_keys.append(event.idempotency_key)
            case.begin(event.acting_key)
            try:
                await case.note(
                    f"event_{event.type.value}", event.source, event.model_dump(mode="json")
                )
            finally:
                case.end()
            opener = opened_by_event(event.idempotency_key)
            return self._event_receipt(
                event, "opened" if state.opened.opened_by == opener else "joined"
            )

    @record_event.validator
    def _validate_event(self, event: CaseEvent) -> None:
        self._case.refuse_if_closed("record an event")

    def _event_receipt(self, event: CaseEvent, result: str) -> EventReceipt:
        state = self._case.state
        return EventReceipt.model_validate(
            {
                "case_id": state.case_id,
                "workflow_id": state.workflow_id,
                "idempotency_key": event.idempotency_key,
                "result": result,
                "stage": state.stage.value,
            }
        )
