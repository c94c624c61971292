"""Drive a CaseWorkflow through its commands in tests, with sensible default bodies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.models import CaseResult, CaseState, OpenCaseInput, case_workflow_id
from domain.procedure_models import CaseProcedure
from tests.conftest import open_case_input
from workflows.case import CaseWorkflow

OFFICER, SUPERVISOR, PARTY = "officer.li", "supervisor.zhao", "party:rep"

DEFAULTS: dict[str, dict[str, Any]] = {
    "decide_filing": {"decision": "filed", "reasons": "Evidence of a violation."},
    "schedule_interview": {
        "place": "Office, room 3",
        "reason": "the violation found by monitoring",
        "attendees_required": ["editor-in-chief"],
    },
    "record_interview": {
        "officials": ["officer.li", "officer.wang"],
        "attended_by": ["editor-in-chief"],
        "summary": "The party admitted the facts.",
    },
    "record_no_show": {"notes": "Nobody came."},
    "issue_rectification_order": {"requirements": "Remove the content and fix the review flow."},
    "submit_rectification_report": {"summary": "Done.", "evidence": ["screenshot.png"]},
    "record_verification": {"passed": True, "findings": "Checked on site."},
    "request_extension": {"days": 5, "reasons": "System migration in progress."},
    "decide_extension": {"approved": True, "reasons": "Reasonable."},
    "open_penalty_procedure": {"reasons": "Serious violation."},
    "record_investigation_report": {"facts": "The facts.", "evidence": ["exhibit-1"]},
    "record_legal_review": {"approved": True, "opinion": "Lawful and proportionate."},
    "record_collective_decision": {
        "approved": True,
        "opinion": "Agreed.",
        "participants": ["director", "deputy.a", "deputy.b"],
    },
    "notify_penalty": {"facts": "The facts.", "reasons": "The reasons.", "legal_basis": "law"},
    "record_statement": {"statement": "We disagree with the amount."},
    "request_hearing": {},
    "record_hearing": {"record": "Both sides heard."},
    "decide_penalty": {"reasons": "Proven.", "legal_basis": "law"},
    "serve_decision": {"method": "direct"},
    "refer": {"reasons": "Beyond our competence."},
    "withdraw": {"ground": "facts_not_proven", "reasons": "Evidence insufficient."},
    "extend_handling_limit": {"days": 30, "reasons": "Complex case."},
    "extend_filing_deadline": {"reasons": "Complex clue."},
    "deal_with_responsible_persons": {},
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

    async def do(self, command: str, actor: str = OFFICER, **fields: Any) -> CaseState:
        body = {"actor": actor, **DEFAULTS.get(command, {}), **fields}
        try:
            state: CaseState = await self.handle.execute_update(
                command, body, result_type=CaseState
            )
            return state
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

    async def state(self) -> CaseState:
        return await self.handle.query(CaseWorkflow.state)

    async def procedure(self) -> CaseProcedure:
        proc = await self.handle.query(CaseWorkflow.procedure)
        assert proc is not None
        return proc

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
        start = await self.now() + timedelta(days=2)
        await self.do("schedule_interview", scheduled_for=start.isoformat())
        await self.do("record_interview")

    async def to_rectifying(self, interview: bool = True, **order: Any) -> CaseState:
        await self.do("decide_filing")
        if interview:
            await self.interview()
        return await self.do("issue_rectification_order", **order)

    async def to_notice(self) -> None:
        """From an open penalty procedure to the notice stage, through whatever reviews apply."""
        await self.do("record_investigation_report")
        stage = (await self.state()).stage.value
        if stage == "legal_review":
            await self.do("record_legal_review", actor="legal.reviewer")
            stage = (await self.state()).stage.value
        if stage == "collective_decision":
            await self.do("record_collective_decision", actor="director")


async def open_case(
    env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, **overrides: Any
) -> Case:
    opened: OpenCaseInput = open_case_input(**overrides)
    handle = await env.client.start_workflow(
        CaseWorkflow.run, opened, id=case_workflow_id(opened.case_id), task_queue=task_queue
    )
    case = Case(env, handle, pool)
    for _ in range(200):  # registered: the policy is loaded and the register row written
        if (await case.state()).audit_seq >= 1:
            return case
        await asyncio.sleep(0.02)
    raise AssertionError(f"case {opened.case_id} was not registered")
