"""Operator actions that go through the worker: loading a year's working days (then telling the
cases with provisional deadlines) and summarising the policies the worker enforces."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.operator import OperatorActivities
    from domain.commands import CalendarUpdated
    from domain.operator_models import (
        LoadCalendarInput,
        LoadCalendarResult,
        PolicySummary,
        PolicySummaryRequest,
    )
    from workflows.case import CaseWorkflow
    from workflows.context import SHANGHAI_OFFSET, STEP_RETRY, STEP_TIMEOUT


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
