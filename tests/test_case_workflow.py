"""CaseWorkflow on the time-skipping server, with the real activities and a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.conftest import audit_actions, open_case_input
from workflows.case import COMMAND_REFUSED, DEADLINE_ACTOR, CaseWorkflow
from workflows.case_models import (
    CaseResult,
    DecideFine,
    IssueRectificationOrder,
    Outcome,
    RecordInterview,
    RecordVerification,
    ScheduleInterview,
    Stage,
    SubmitRectificationReport,
    case_workflow_id,
)

Handle = WorkflowHandle[CaseWorkflow, CaseResult]
MAIN_PATH = [
    "case_opened",
    "interview_scheduled",
    "interview_recorded",
    "rectification_ordered",
]


async def start_case(env: WorkflowEnvironment, task_queue: str) -> Handle:
    opened = open_case_input()
    return await env.client.start_workflow(
        CaseWorkflow.run, opened, id=case_workflow_id(opened.case_id), task_queue=task_queue
    )


async def drive_to_rectifying(env: WorkflowEnvironment, handle: Handle, days: int = 15) -> None:
    now = await env.get_current_time()
    await handle.execute_update(
        CaseWorkflow.schedule_interview,
        ScheduleInterview(
            actor="officer.li",
            scheduled_for=now + timedelta(days=3),
            place="Beijing office, room 3",
            reason="prohibited information on the home page",
            attendees_required=["editor-in-chief"],
        ),
    )
    await handle.execute_update(
        CaseWorkflow.record_interview,
        RecordInterview(
            actor="officer.li",
            officials=["officer.li", "officer.wang"],
            attended_by=["editor-in-chief Zhang"],
            summary="The party admitted the content and promised to remove it.",
        ),
    )
    state = await handle.execute_update(
        CaseWorkflow.issue_rectification_order,
        IssueRectificationOrder(
            actor="officer.li", period_days=days, requirements="Remove the content; audit feeds."
        ),
    )
    assert state.stage is Stage.RECTIFYING


async def submit_report(handle: Handle) -> None:
    state = await handle.execute_update(
        CaseWorkflow.submit_rectification_report,
        SubmitRectificationReport(
            actor="party:example", summary="Content removed.", evidence=["screenshot-1.png"]
        ),
    )
    assert state.stage is Stage.VERIFYING


async def register_row(pool: asyncpg.Pool, case_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    assert row is not None
    return row


async def test_pass_path_closes_as_rectified(
    ts_env: WorkflowEnvironment, ts_worker: Worker, pool: asyncpg.Pool, task_queue: str
) -> None:
    handle = await start_case(ts_env, task_queue)
    await drive_to_rectifying(ts_env, handle)
    await submit_report(handle)
    await handle.execute_update(
        CaseWorkflow.record_verification,
        RecordVerification(actor="officer.wang", passed=True, findings="Content gone."),
    )
    result = await handle.result()
    assert result.outcome is Outcome.RECTIFIED

    case_id = result.case_id
    assert await audit_actions(pool, case_id) == [
        *MAIN_PATH,
        "rectification_reported",
        "verification_passed",
    ]
    row = await register_row(pool, case_id)
    assert (row["stage"], row["outcome"]) == ("closed", "rectified")
    assert row["closed_at"] is not None and row["deadline_at"] is None


async def test_fail_path_escalates_to_warning_then_fine(
    ts_env: WorkflowEnvironment, ts_worker: Worker, pool: asyncpg.Pool, task_queue: str
) -> None:
    handle = await start_case(ts_env, task_queue)
    await drive_to_rectifying(ts_env, handle)
    await submit_report(handle)
    state = await handle.execute_update(
        CaseWorkflow.record_verification,
        RecordVerification(actor="officer.wang", passed=False, findings="Content still online."),
    )
    assert state.stage is Stage.PENALTY_PENDING
    assert state.warning is not None and "failed verification" in state.warning.reason

    await handle.execute_update(
        CaseWorkflow.decide_fine,
        DecideFine(
            actor="officer.li",
            amount_yuan=Decimal("50000.00"),
            legal_basis="Cybersecurity Law art. 61",
            reasons="Refused to rectify.",
        ),
    )
    result = await handle.result()
    assert result.outcome is Outcome.PENALIZED
    assert await audit_actions(pool, result.case_id) == [
        *MAIN_PATH,
        "rectification_reported",
        "verification_failed",
        "warning_issued",
        "fine_decided",
    ]
    fine = await pool.fetchval(
        "SELECT payload->>'amount_yuan' FROM case_audit WHERE case_id = $1 AND action = $2",
        result.case_id,
        "fine_decided",
    )
    assert Decimal(fine) == Decimal("50000.00")
    row = await register_row(pool, result.case_id)
    assert (row["stage"], row["outcome"]) == ("closed", "penalized")


async def test_missed_deadline_escalates_by_itself(
    ts_env: WorkflowEnvironment, ts_worker: Worker, pool: asyncpg.Pool, task_queue: str
) -> None:
    handle = await start_case(ts_env, task_queue)
    await drive_to_rectifying(ts_env, handle, days=15)
    state = await handle.query(CaseWorkflow.state)
    assert state.order is not None
    due_at = state.order.deadline.due_at
    assert due_at.astimezone(UTC).time().hour == 16  # 24:00 Asia/Shanghai
    row = await register_row(pool, state.case_id)
    assert row["deadline_at"] == due_at

    # One hour before the deadline nothing has happened.
    await ts_env.sleep(due_at - await ts_env.get_current_time() - timedelta(hours=1))
    assert (await handle.query(CaseWorkflow.state)).stage is Stage.RECTIFYING

    # Two hours later the timer has fired and the case escalated by itself.
    await ts_env.sleep(timedelta(hours=2))
    state = await handle.query(CaseWorkflow.state)
    assert state.stage is Stage.PENALTY_PENDING
    assert state.warning is not None
    assert timedelta(0) <= state.warning.issued_at - due_at < timedelta(seconds=5)
    assert state.order is not None and state.order.deadline.last_day in state.warning.reason
    actor = await pool.fetchval(
        "SELECT actor FROM case_audit WHERE case_id = $1 AND action = 'warning_issued'",
        state.case_id,
    )
    assert actor == DEADLINE_ACTOR

    # The report arrives too late: refused, with the reason.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await submit_report(handle)
    assert "stage penalty_pending" in str(refused.value.cause)


async def _updates_accepted(handle: Handle) -> int:
    history = await handle.fetch_history()
    return sum(
        1
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )


async def test_refused_commands_leave_history_clean(
    ts_env: WorkflowEnvironment, ts_worker: Worker, task_queue: str
) -> None:
    handle = await start_case(ts_env, task_queue)
    # A report before any order: refused by the validator.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await submit_report(handle)
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == COMMAND_REFUSED
    assert "cannot accept a rectification report" in cause.message
    assert "stage opened" in cause.message

    # An interview scheduled in the past: refused.
    past = await ts_env.get_current_time() - timedelta(days=1)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            CaseWorkflow.schedule_interview,
            ScheduleInterview(
                actor="officer.li",
                scheduled_for=past,
                place="room 3",
                reason="r",
                attendees_required=["editor"],
            ),
        )
    assert "scheduled_for is in the past" in str(refused.value.cause)
    assert await _updates_accepted(handle) == 0
    assert (await handle.query(CaseWorkflow.state)).stage is Stage.OPENED


async def test_report_on_a_closed_case_is_refused(
    ts_env: WorkflowEnvironment, ts_worker: Worker, task_queue: str
) -> None:
    handle = await start_case(ts_env, task_queue)
    await drive_to_rectifying(ts_env, handle)
    await submit_report(handle)
    await handle.execute_update(
        CaseWorkflow.record_verification,
        RecordVerification(actor="officer.wang", passed=True, findings="ok"),
    )
    await handle.result()
    accepted = await _updates_accepted(handle)
    # The workflow has completed: Temporal itself refuses the update, nothing is recorded.
    with pytest.raises(RPCError) as refused:
        await submit_report(handle)
    assert refused.value.status == RPCStatusCode.NOT_FOUND
    assert await _updates_accepted(handle) == accepted


async def test_opening_the_same_case_twice_is_refused(
    ts_env: WorkflowEnvironment, ts_worker: Worker, task_queue: str
) -> None:
    from temporalio.common import WorkflowIDConflictPolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    handle = await start_case(ts_env, task_queue)
    opened = (await handle.query(CaseWorkflow.state)).opened
    with pytest.raises(WorkflowAlreadyStartedError):
        await ts_env.client.start_workflow(
            CaseWorkflow.run,
            opened,
            id=handle.id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )


def test_now_is_not_used_directly() -> None:
    """Determinism guard: workflow modules never read the wall clock or randomness."""
    from pathlib import Path

    for path in Path(__file__).resolve().parent.parent.joinpath("workflows").glob("*.py"):
        text = path.read_text()
        for forbidden in ("datetime.now(", "time.time(", "import random", "os.environ"):
            assert forbidden not in text, f"{path.name} uses {forbidden}"
