"""Operator actions that go through the worker: loading a year's working days (then telling the
cases with provisional deadlines), summarising the policies the worker enforces, and recording
in the register that a case's run ended without an outcome (the API finds it; only an activity
may write the register)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.operator import OperatorActivities
    from domain.commands import CalendarUpdated
    from domain.operator_models import (
        CaseInterruption,
        InterruptionMarked,
        LoadCalendarInput,
        LoadCalendarResult,
        PolicySummary,
        PolicySummaryRequest,
    )
    from workflows.case import CaseWorkflow
    from workflows.context import SHANGHAI_OFFSET, STEP_RETRY, STEP_TIMEOUT

__all__ = [
    "LoadCalendarWorkflow",
    "MarkCaseInterruptedWorkflow",
    "PolicySummaryWorkflow",
    "interrupted_workflow_id",
]


def interrupted_workflow_id(case_id: str, run_id: str) -> str:
    """One marking per interrupted run, however often the API finds it."""
    return f"interrupted:{case_id}:{run_id}"


@workflow.defn(name="LoadCalendarWorkflow")
class LoadCalendarWorkflow:
    @workflow.run
    async def run(self, request: LoadCalendarInput) -> LoadCalendarResult:
        result: LoadCalendarResult = await workflow.execute_activity_method(
            OperatorActivities.load_calendar_year,
            request,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        told = 0
        for workflow_id in result.provisional_cases:
            handle = workflow.get_external_workflow_handle_for(CaseWorkflow.run, workflow_id)
            try:
                await handle.signal(
                    CaseWorkflow.calendar_updated, CalendarUpdated(year=result.year)
                )
                told += 1
            except FailureError:
                continue  # closed since: nothing to recompute
        return result.model_copy(update={"cases_told": told})


@workflow.defn(name="PolicySummaryWorkflow")
class PolicySummaryWorkflow:
    @workflow.run
    async def run(self) -> PolicySummary:
        today = (workflow.now() + SHANGHAI_OFFSET).date()
        summary: PolicySummary = await workflow.execute_activity_method(
            OperatorActivities.policy_summary,
            PolicySummaryRequest(on=today),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        return summary


@workflow.defn(name="MarkCaseInterruptedWorkflow")
class MarkCaseInterruptedWorkflow:
    """Record in the register that the case's run ended without an outcome: one activity."""

    @workflow.run
    async def run(self, interruption: CaseInterruption) -> InterruptionMarked:
        marked: InterruptionMarked = await workflow.execute_activity_method(
            OperatorActivities.mark_case_interrupted,
            interruption,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        return marked
