"""CaseWorkflow basics on the time-skipping server, with the real activities and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from domain.case import CaseRun
from domain.models import Outcome, Stage
from tests.case_driver import Case, open_case
from workflows.case import CaseWorkflow
from workflows.context import SYSTEM

pytestmark = pytest.mark.usefixtures("ts_worker")


@pytest.fixture
async def case(ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str) -> Case:
    return await open_case(ts_env, pool, task_queue)


async def test_pass_path_closes_as_rectified(case: Case) -> None:
    await case.to_rectifying()
    await case.do("submit_rectification_report", actor="party:example")
    state = await case.do("record_verification", actor="officer.wang")
    assert (state.stage, state.outcome) == (Stage.CLOSED, Outcome.RECTIFIED)
    result = await case.handle.result()
    assert result.outcome is Outcome.RECTIFIED

    assert await case.actions() == [
        "case_opened",
        "filed",
        "interview_scheduled",
        "interview_recorded",
        "rectification_ordered",
        "rectification_reported",
        "verification_passed",
    ]
    assert await case.documents() == [
        "filing_decision",
        "interview_notice",
        "interview_record",
        "rectification_order",
    ]
    row = await case.register()
    assert (row["stage"], row["outcome"], row["policy_version"]) == (
        "closed",
        "rectified",
        "2026.1",
    )
    assert row["closed_at"] is not None and row["deadline_at"] is None


async def test_missed_deadline_reminds_then_escalates_by_itself(case: Case) -> None:
    await case.to_rectifying()
    deadline = (await case.state()).deadlines["rectification"]
    assert deadline.kind == "working" and deadline.days == 5  # the category's policy
    assert deadline.due_at.astimezone(UTC).hour == 16  # 24:00 Asia/Shanghai
    row = await case.register()
    assert row["deadline_at"] == deadline.due_at

    await case.sleep_until(deadline.due_at, after=-timedelta(hours=1))
    assert (await case.state()).stage is Stage.RECTIFYING
    assert (await case.actions()).count("deadline_reminder") == 2  # 3 days and 1 day before

    await case.env.sleep(timedelta(hours=2))
    state = await case.state()
    assert state.stage is Stage.INVESTIGATING
    assert state.penalty is not None and state.penalty.measure.value == "warning"
    assert deadline.last_day in state.penalty.reason
    actor = await case.pool.fetchval(
        "SELECT actor FROM case_audit WHERE case_id = $1 AND action = 'penalty_procedure_opened'",
        case.case_id,
    )
    assert actor == SYSTEM
    # The report arrives too late: refused, with the reason.
    reason = await case.refused("submit_rectification_report", actor="party:example")
    assert "stage investigating" in reason


async def _updates_accepted(case: Case) -> int:
    history = await case.handle.fetch_history()
    return sum(
        1
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )


async def test_refused_commands_leave_history_clean(case: Case) -> None:
    reason = await case.refused("submit_rectification_report", actor="party:example")
    assert "cannot accept a rectification report" in reason and "stage filing" in reason
    reason = await case.refused("schedule_interview", scheduled_for="2099-01-01T09:00:00+08:00")
    assert "stage filing" in reason
    await case.do("decide_filing")
    past = (await case.now()) - timedelta(days=1)
    assert "in the past" in await case.refused("schedule_interview", scheduled_for=past.isoformat())
    assert await _updates_accepted(case) == 1  # only the filing decision
    assert (await case.state()).stage is Stage.FILED


async def test_report_on_a_closed_case_is_refused(case: Case) -> None:
    await case.do("decide_filing", decision="not_filed", reasons="No violation found.")
    assert (await case.handle.result()).outcome is Outcome.NOT_FILED
    accepted = await _updates_accepted(case)
    with pytest.raises(RPCError) as refused:
        await case.do("submit_rectification_report", actor="party:example")
    assert refused.value.status == RPCStatusCode.NOT_FOUND
    assert await _updates_accepted(case) == accepted


async def test_opening_the_same_case_twice_is_refused(
    case: Case, ts_env: WorkflowEnvironment, task_queue: str
) -> None:
    opened = (await case.state()).opened
    with pytest.raises(WorkflowAlreadyStartedError):
        await ts_env.client.start_workflow(
            CaseWorkflow.run,
            CaseRun.of(opened),
            id=case.handle.id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )


async def test_search_attributes_follow_the_stage(case: Case) -> None:
    await case.do("decide_filing")
    description = await case.handle.describe()
    attributes = description.typed_search_attributes
    from workflows import search

    assert attributes.get(search.STAGE) == "filed"
    assert attributes.get(search.OFFICE) == "beijing"
    assert attributes.get(search.CATEGORY) == "prohibited_information"
    handling = (await case.state()).deadlines["handling"]
    assert attributes.get(search.NEXT_DEADLINE) == handling.due_at


def test_workflow_modules_never_read_the_clock_or_environment() -> None:
    """Determinism guard: workflow modules never read the wall clock, randomness or env."""
    folder = Path(__file__).resolve().parent.parent / "workflows"
    for path in folder.glob("*.py"):
        text = path.read_text()
        for forbidden in ("datetime.now(", "time.time(", "import random", "os.environ", "open("):
            assert forbidden not in text, f"{path.name} uses {forbidden}"
