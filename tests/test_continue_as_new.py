"""Long cases continue-as-new: a lowered history limit drives one case across several runs,
carrying its whole state — pending deadlines with their remaining time, reminders already sent,
documents, referrals — and no step is written twice."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from domain.models import Outcome
from tests.case_driver import SUPERVISOR, Case, open_case

pytestmark = pytest.mark.usefixtures("ts_worker")
LIMIT = 30  # history events: a run takes two or three commands before it continues


async def gapless_steps(case: Case, pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT seq, action FROM case_audit WHERE case_id = $1 ORDER BY seq", case.case_id
    )
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
    return [row["action"] for row in rows]


async def test_a_case_crosses_three_runs_to_its_outcome(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue, history_limit=LIMIT)
    await case.to_rectifying()
    await case.do("request_extension", actor="party:rep")
    await case.do("decide_extension", actor=SUPERVISOR)
    deadline = (await case.state()).deadlines["rectification"]
    # Both reminders go out (3 and 1 days before), each once, whichever run is waiting.
    await case.sleep_until(deadline.due_at, after=-timedelta(hours=12))
    await case.do("submit_rectification_report", actor="party:rep")
    await case.do("record_verification")
    result = await case.handle.result()
    assert result.outcome is Outcome.RECTIFIED

    runs = await case.runs()
    assert len(runs) >= 3, [len(run.events) for run in runs]
    for run in runs[:-1]:  # each run ended by continuing, near the limit
        assert run.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
        assert len(run.events) < LIMIT + 25
    actions = await gapless_steps(case, pool)
    assert actions.count("deadline_reminder") == 2
    assert actions.count("rectification_ordered") == 1
    state = await case.state()
    assert [doc.step for doc in state.documents] == sorted(doc.step for doc in state.documents)
    assert {doc.kind.value for doc in state.documents} >= {"rectification_order"}
    register = await case.register()
    assert register["outcome"] == "rectified" and register["last_seq"] == len(actions)


async def test_a_pending_deadline_fires_on_time_in_a_later_run(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue, history_limit=LIMIT)
    await case.to_rectifying()
    deadline = (await case.state()).deadlines["rectification"]
    # Nobody reports: the deadline passes in whatever run is waiting, and escalates once.
    await case.sleep_until(deadline.due_at, after=timedelta(hours=2))
    for _ in range(50):
        state = await case.state()
        if state.stage.value != "rectifying":
            break
        await ts_env.sleep(timedelta(minutes=10))
    assert state.stage.value == "investigating"
    runs = await case.runs()
    assert len(runs) >= 2
    escalated = await pool.fetchrow(
        "SELECT occurred_at FROM case_audit"
        " WHERE case_id = $1 AND action = 'penalty_procedure_opened'",
        case.case_id,
    )
    assert escalated is not None
    assert deadline.due_at <= escalated["occurred_at"] < deadline.due_at + timedelta(hours=1)
    await gapless_steps(case, pool)


async def test_a_referral_in_flight_is_tracked_by_the_next_run(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue, history_limit=LIMIT)
    await case.do("decide_filing")
    await case.do("refer", authority="police", criminal=True, reasons="A criminal clue.")
    await case.do("approve_referral", actor=SUPERVISOR, referral_id=1)
    await case.do("record_transfer", referral_id=1)
    # The acknowledgement never comes: the next run's tracker flags it once, on time.
    due = (await case.state()).deadlines["referral:1:acknowledgement"].due_at
    await case.sleep_until(due, after=timedelta(days=3))
    state = await case.state()
    assert state.referrals[0].overdue == ["referral_unacknowledged"]
    assert "referral_unacknowledged:1" in state.needs_supervisor
    assert len(await case.runs()) >= 2
    actions = await gapless_steps(case, pool)
    assert actions.count("referral_unacknowledged") == 1
    await case.do("acknowledge_referral", referral_id=1)
    await case.do("withdraw")
    assert (await case.handle.result()).outcome is Outcome.WITHDRAWN
