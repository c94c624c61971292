"""Drive a CaseWorkflow through its commands in tests, with the table's examples as bodies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import WorkflowHandle, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.case import CaseRun, CaseState, Receipt
from domain.models import CaseResult, OpenCaseInput, case_workflow_id
from domain.procedure import COMMANDS
from tests.conftest import open_case_input
from tests.keys import TEST_KEYRING
from workflows.case import CaseWorkflow
from workflows.search import case_search_attributes

OFFICER, SUPERVISOR, PARTY = "officer.li", "supervisor.zhao", "party:rep"

# The defaults are the procedure table's own examples (what /docs shows), less the actor.
DEFAULTS: dict[str, dict[str, Any]] = {
    command.name: {k: v for k, v in command.example.items() if k != "actor"} for command in COMMANDS
}


class Refused(Exception):
    """The workflow refused a command (a validator or handler said why)."""


@dataclass
class Case:
    env: WorkflowEnvironment
    handle: WorkflowHandle[CaseWorkflow, CaseResult]
    pool: asyncpg.Pool

    @property
    def case_id(self) -> str:
        return self.handle.id.removeprefix("case:")

    async def do(self, command: str, actor: str = OFFICER, **fields: Any) -> Receipt:
        defaults = DEFAULTS[command]
        if fields.get("measure", "fine") != "fine":
            # The examples propose a fine; another measure comes without its amount.
            defaults = {k: v for k, v in defaults.items() if k != "fine_yuan"}
        body = {"actor": actor, **defaults, **fields}
        try:
            receipt: Receipt = await self.handle.execute_update(command, body, result_type=Receipt)
            return receipt
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise Refused(message) from exc

    async def refused(self, command: str, actor: str = OFFICER, **fields: Any) -> str:
        try:
            await self.do(command, actor, **fields)
        except Refused as exc:
            return str(exc)
        raise AssertionError(f"{command} was accepted")

    async def runs(self) -> list[WorkflowHistory]:
        """Every run of the case, oldest first (continue-as-new chains them)."""
        client = self.env.client
        history = await client.get_workflow_handle(self.handle.id).fetch_history()
        runs = [history]
        while True:
            started = runs[0].events[0].workflow_execution_started_event_attributes
            if not started.continued_execution_run_id:
                return runs
            previous = client.get_workflow_handle(
                self.handle.id, run_id=started.continued_execution_run_id
            )
            runs.insert(0, await previous.fetch_history())

    async def state(self) -> CaseState:
        return await self.handle.query(CaseWorkflow.state)

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def sleep_until(self, instant: datetime, after: timedelta = timedelta(0)) -> None:
        gap = instant + after - await self.now()
        if gap > timedelta(0):
            await self.env.sleep(gap)

    async def actions(self) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT action FROM case_audit WHERE case_id = $1 ORDER BY seq", self.case_id
        )
        return [row["action"] for row in rows]

    async def documents(self) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT kind FROM documents WHERE case_id = $1 ORDER BY issued_at, id", self.case_id
        )
        return [row["kind"] for row in rows]

    async def register(self) -> asyncpg.Record:
        row = await self.pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", self.case_id)
        assert row is not None
        return row

    # --- common paths ---------------------------------------------------------------------

    async def interview(self) -> None:
        start = await self.now() + timedelta(hours=2)
        await self.do("schedule_interview", scheduled_for=start.isoformat())
        await self.sleep_until(start)  # an interview is recorded once held, never before
        await self.do("record_interview")

    async def to_rectifying(self, interview: bool = True, **order: Any) -> Receipt:
        await self.do("decide_filing")
        if interview:
            await self.interview()
        return await self.do("issue_rectification_order", **order)

    async def to_notice(self) -> None:
        """From an open penalty procedure to the notice stage, through whatever reviews apply."""
        await self.do("record_investigation_report")
        stage = (await self.state()).stage.value
        if stage == "legal_review":
            stage = (await self.do("record_legal_review", actor="legal.reviewer")).stage.value
        if stage == "collective_decision":
            await self.do("record_collective_decision", actor="director")


async def open_case(
    env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    *,
    history_limit: int | None = None,
    **overrides: Any,
) -> Case:
    opened: OpenCaseInput = open_case_input(**overrides)
    handle = await env.client.start_workflow(
        CaseWorkflow.run,
        CaseRun.of(opened, history_limit=history_limit),
        id=case_workflow_id(opened.case_id),
        task_queue=task_queue,
        search_attributes=case_search_attributes(
            opened, TEST_KEYRING.subject_digests(opened.subject.identifiers)
        ),
    )
    case = Case(env, handle, pool)
    for _ in range(200):  # registered: the policy is loaded and the register row written
        if (await case.state()).step >= 1:
            return case
        await asyncio.sleep(0.02)
    raise AssertionError(f"case {opened.case_id} was not registered")
