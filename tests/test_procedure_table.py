"""The procedure table is the one place a command lives: everything else is derived from it, and
the main path stays as narrow as the table promises."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.workflow import _Definition

from domain.case import Receipt
from domain.procedure import COMMANDS, STAGES
from tests.case_driver import open_case
from workflows.case import CaseWorkflow
from workflows.handlers import EXPIRIES, HANDLERS


def test_every_command_row_has_its_handler_and_nothing_else_does() -> None:
    assert set(HANDLERS) == {command.name for command in COMMANDS}


def test_every_stage_timer_has_its_action() -> None:
    named = {row.on_deadline for row in STAGES if row.on_deadline is not None}
    assert named == set(EXPIRIES)
    assert all(row.deadline is not None for row in STAGES if row.on_deadline is not None)


def test_the_workflow_has_one_update_per_row_typed_by_the_row() -> None:
    definition = _Definition.from_class(CaseWorkflow)
    assert definition is not None
    for command in COMMANDS:
        update = definition.updates[command.name]
        assert update.arg_types == [command.body], command.name
        assert update.ret_type is Receipt, command.name
        assert update.validator is not None, command.name
    assert set(definition.updates) == {c.name for c in COMMANDS}


def test_refusals_name_the_command_in_words() -> None:
    for command in COMMANDS:
        assert command.what and command.what[0].islower(), command.summary
        assert ":" in command.summary, f"{command.name}: summary reads 'What: more'"


MAIN_PATH_ACTIVITIES = 7  # opening + six commands: one activity each
MAIN_PATH_EVENTS = 80


@pytest.mark.usefixtures("ts_worker")
async def test_main_path_is_one_activity_per_step_and_small(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue)
    await case.do("decide_filing")
    at = await case.now() + timedelta(hours=1)
    await case.do("schedule_interview", scheduled_for=at.isoformat())
    await case.sleep_until(at)
    await case.do("record_interview")
    await case.do("issue_rectification_order")
    await case.do("submit_rectification_report")
    receipt = await case.do("record_verification")
    assert receipt.outcome is not None and receipt.outcome.value == "rectified"
    await case.handle.result()

    history = await case.handle.fetch_history()
    kinds = [event.event_type for event in history.events]
    activities = kinds.count(EventType.EVENT_TYPE_MARKER_RECORDED) + kinds.count(
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    assert activities == MAIN_PATH_ACTIVITIES
    print(f"main path: {activities} activities, {len(kinds)} history events")
    assert len(kinds) <= MAIN_PATH_EVENTS, f"{len(kinds)} history events"
    upserts = kinds.count(EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)
    assert upserts <= 7  # stage and next deadline, only when they change
    # Every command answered a receipt: no update result carries the whole state.
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            payload = event.workflow_execution_update_completed_event_attributes.outcome.success
            assert sum(len(p.data) for p in payload.payloads) < 400
