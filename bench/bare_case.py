"""The bare arm: the least a Temporal workflow needs to carry Rectify's main path.

One update per command, one activity per step (the opening and each command), the same timers:
the filing deadline from opening until the filing decision, the rectification deadline while
rectifying. No policy, no documents, no deadlines counted on a calendar, no search attributes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bench.bare_steps import (
        STEP_RETRY,
        STEP_TIMEOUT,
        BareCommand,
        BareOpen,
        BareReceipt,
        BareResult,
        BareStep,
        BareSteps,
    )

# command → (the stage it is given in, the stage it moves the case to)
MOVES = {
    "decide_filing": ("filing", "filed"),
    "schedule_interview": ("filed", "interview_scheduled"),
    "record_interview": ("interview_scheduled", "interviewed"),
    "issue_rectification_order": ("interviewed", "rectifying"),
    "submit_rectification_report": ("rectifying", "verifying"),
    "record_verification": ("verifying", "closed"),
}


@workflow.defn(name="BareCaseWorkflow")
class BareCaseWorkflow:
    def __init__(self) -> None:
        self.case_id = ""
        self.local_steps = True
        self.stage = "filing"
        self.opened = False  # the opening step is written: commands may run
        self.step = 0

    @workflow.run
    async def run(self, opened: BareOpen) -> BareResult:
        self.case_id, self.local_steps = opened.case_id, opened.local_steps
        await self._record("case_opened", {}, local=opened.local_opening)
        self.opened = True
        try:  # the filing deadline: a timer from opening, cancelled by the filing decision
            await workflow.wait_condition(
                lambda: self.stage != "filing", timeout=timedelta(days=opened.filing_days)
            )
        except TimeoutError:
            await self._record("filing_overdue", {}, local=self.local_steps)
        await workflow.wait_condition(lambda: self.stage == "rectifying")
        try:  # the rectification deadline, while rectifying
            await workflow.wait_condition(
                lambda: self.stage != "rectifying",
                timeout=timedelta(days=opened.rectification_days),
            )
        except TimeoutError:
            await self._record("rectification_missed", {}, local=self.local_steps)
        await workflow.wait_condition(
            lambda: self.stage == "closed" and workflow.all_handlers_finished()
        )
        return BareResult(case_id=self.case_id, steps=self.step)

    async def _record(self, action: str, payload: dict[str, Any], *, local: bool) -> None:
        step = BareStep(
            case_id=self.case_id,
            step=self.step + 1,
            action=action,
            occurred_at=workflow.now(),
            payload=payload,
        )
        if local:
            await workflow.execute_local_activity_method(
                BareSteps.record_step,
                step,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
        else:
            await workflow.execute_activity_method(
                BareSteps.record_step,
                step,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
        self.step = step.step

    async def _command(self, name: str, cmd: BareCommand) -> BareReceipt:
        await workflow.wait_condition(lambda: self.opened)
        await self._record(name, cmd.model_dump(mode="json"), local=self.local_steps)
        self.stage = MOVES[name][1]
        return BareReceipt(case_id=self.case_id, stage=self.stage, step=self.step)

    def _check(self, name: str) -> None:
        if self.stage != MOVES[name][0]:
            raise ValueError(f"{name} needs stage {MOVES[name][0]}, the case is at {self.stage}")

    @workflow.update
    async def decide_filing(self, cmd: BareCommand) -> BareReceipt:
        return await self._command("decide_filing", cmd)

    @decide_filing.validator
    def _decide_filing(self, cmd: BareCommand) -> None:
        self._check("decide_filing")

    @workflow.update
    async def schedule_interview(self, cmd: BareCommand) -> BareReceipt:
        return await self._command("schedule_interview", cmd)

    @schedule_interview.validator
    def _schedule_interview(self, cmd: BareCommand) -> None:
        self._check("schedule_interview")

    @workflow.update
    async def record_interview(self, cmd: BareCommand) -> BareReceipt:
        return await self._command("record_interview", cmd)

    @record_interview.validator
    def _record_interview(self, cmd: BareCommand) -> None:
        self._check("record_interview")

    @workflow.update
    async def issue_rectification_order(self, cmd: BareCommand) -> BareReceipt:
        return await self._command("issue_rectification_order", cmd)

    @issue_rectification_order.validator
    def _issue_rectification_order(self, cmd: BareCommand) -> None:
        self._check("issue_rectification_order")

    @workflow.update
    async def submit_rectification_report(self, cmd: BareCommand) -> BareReceipt:
        return await self._command("submit_rectification_report", cmd)

    @submit_rectification_report.validator
    def _submit_rectification_report(self, cmd: BareCommand) -> None:
        self._check("submit_rectification_report")

    @workflow.update
    async def record_verification(self, cmd: BareCommand) -> BareReceipt:
        return await self._command("record_verification", cmd)

    @record_verification.validator
    def _record_verification(self, cmd: BareCommand) -> None:
        self._check("record_verification")
