"""`rectify cases reopen|close CASE_ID --reason TEXT --actor NAME`: an operator's decision on a
case whose run ended without an outcome (failed, terminated, timed out, cancelled).

Nothing reopens such a case by itself: commands and detections for it answer 409 until an
operator decides here. `reopen` starts a new run of the case's workflow (same id `case:{id}`)
carrying the case on from its state in the register (`cases.state`, the case as of its last
step); `close` starts one that records a single step and closes the case with the outcome
`closed_by_operator`. Either way the new run's first step is audited with the reason and the
actor. A case that is unknown, still running or closed with an outcome is refused (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.case import CaseRun, CaseState, Continuation, OperatorOrder
from domain.models import OpenCaseInput, Stage, case_workflow_id
from domain.procedure import waits_for
from wiring.codec import UndecryptablePayload
from wiring.db import create_pool
from wiring.keys import load_keyring
from wiring.settings import Settings
from wiring.temporal import connect_temporal
from workflows.case import CaseWorkflow
from workflows.search import case_search_attributes

Action = Literal["reopen", "close"]

# How a run can end without an outcome; the words go into the order (and its audit row).
INTERRUPTED = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.CANCELED: "canceled",
}
GONE = "gone"  # Temporal no longer holds any run of the case (retention)

REGISTER_ROW = """
SELECT case_id, workflow_id, stage, outcome, closed_at, last_seq, state, interrupted,
       subject_kind, subject_name, subject_identifiers, violation_category, legal_basis,
       severity, office, opened_by, opened_at, campaign_id
  FROM cases WHERE case_id = $1
"""
STEP_WRITTEN = """
SELECT c.last_seq, c.stage, c.outcome, a.action
  FROM cases c LEFT JOIN case_audit a ON a.case_id = c.case_id AND a.seq = $2
 WHERE c.case_id = $1 AND c.last_seq >= $2 AND c.interrupted IS NULL
"""


class Refused(Exception):
    """The case cannot take this decision (exit 2); the message says why and what to do."""


class NotDone(Exception):
    """Something outside the case stopped the command (exit 1): a server, a timeout."""


@dataclass(frozen=True)
class Decided:
    case_id: str
    action: Action
    actor: str
    run: int
    run_id: str
    seq: int
    step: str
    stage: Stage
    outcome: str | None

    def report(self) -> str:
        if self.action == "close":
            return (
                f"case {self.case_id} closed by {self.actor}: outcome {self.outcome} "
                f"(step {self.seq} {self.step}, run {self.run}, run id {self.run_id})"
            )
        return (
            f"case {self.case_id} reopened by {self.actor}: step {self.seq} {self.step}, "
            f"run {self.run} (run id {self.run_id}); stage {self.stage.value}, "
            f"waiting for {waits_for(self.stage)}"
        )


async def _latest_run(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _interruption(case_id: str, latest: WorkflowExecutionDescription | None) -> str:
    """How the case's latest run ended, or a refusal when it is running or completed."""
    if latest is None:
        return GONE
    if latest.status in INTERRUPTED:
        return INTERRUPTED[latest.status]
    if latest.status == WorkflowExecutionStatus.RUNNING:
        raise Refused(
            f"case {case_id} is running (run id {latest.run_id}): nothing to reopen or close; "
            "its commands go through the API"
        )
    status = latest.status.name.lower() if latest.status else "unknown"
    raise Refused(f"case {case_id}'s run {latest.run_id} is {status}: nothing to reopen or close")


def _carried_state(row: asyncpg.Record, action: Action) -> CaseState:
    """The case as of its last step, from the register. Without one (steps written before
    migration 0007) a reopen has nothing to start from; a close needs only what the register
    row holds: the case as opened, its stage and its last step."""
    case_id = row["case_id"]
    raw = row["state"]
    if raw is None:
        if action == "reopen":
            raise Refused(
                f"case {case_id} has no state in the register (its last step was written "
                "before the register kept one): nothing to reopen from; close it instead: "
                f"rectify cases close {case_id} --reason TEXT --actor NAME"
            )
        return _state_from_row(row)
    try:
        state = (
            CaseState.model_validate_json(raw)
            if isinstance(raw, str)
            else CaseState.model_validate(raw)
        )
    except ValidationError as exc:
        raise Refused(f"case {case_id}: its state in the register does not read: {exc}") from exc
    if state.step != row["last_seq"]:
        raise Refused(
            f"case {case_id}: the register's state is as of step {state.step} but its last step "
            f"is {row['last_seq']}: a new run would write a step twice"
        )
    return state


def _state_from_row(row: asyncpg.Record) -> CaseState:
    identifiers = row["subject_identifiers"]
    try:
        opened = OpenCaseInput.model_validate(
            {
                "case_id": row["case_id"],
                "subject": {
                    "kind": row["subject_kind"],
                    "name": row["subject_name"],
                    "identifiers": identifiers,
                },
                "violation_category": row["violation_category"],
                "legal_basis": row["legal_basis"],
                "severity": row["severity"],
                "office": row["office"],
                "opened_by": row["opened_by"],
                "campaign_id": row["campaign_id"],
            }
        )
    except ValidationError as exc:
        raise Refused(f"case {row['case_id']}: its register row does not read: {exc}") from exc
    state = CaseState.new(opened, row["workflow_id"], row["opened_at"])
    state.stage = Stage(row["stage"])
    state.waiting_for = waits_for(state.stage)
    state.step = row["last_seq"]
    return state


async def _previous_run(handle: WorkflowHandle[Any, Any], client: Client) -> int | None:
    """The run number of the run that ended (from its input), or None if unreadable."""
    try:
        async for event in handle.fetch_history_events(page_size=1):
            started = event.workflow_execution_started_event_attributes
            [run] = await client.data_converter.decode(started.input.payloads, [CaseRun])
            assert isinstance(run, CaseRun)
            return run.carried.run if run.carried is not None else 1
    except UndecryptablePayload as exc:  # never number the run as if it were the first
        raise Refused(f"the run that ended cannot be read: {exc}") from exc
    except (RPCError, ValueError, TypeError, AssertionError):
        return None
    return None


async def _wait_for_step(
    pool: asyncpg.Pool, case_id: str, seq: int, seconds: float, poll: float
) -> asyncpg.Record | None:
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while True:
        row = await pool.fetchrow(STEP_WRITTEN, case_id, seq)
        if row is not None or loop.time() >= until:
            return row
        await asyncio.sleep(poll)


async def decide(
    settings: Settings,
    action: Action,
    case_id: str,
    *,
    reason: str,
    actor: str,
    wait_seconds: float = 30.0,
    poll_seconds: float = 0.2,
) -> Decided:
    """Start the run that carries out the operator's decision; wait until its first step is in
    the register."""
    dsn = settings.require_database_url()
    address = settings.require_temporal_address()
    workflow_id = case_workflow_id(case_id)
    pool = await create_pool(
        dsn, min_size=1, max_size=2, acquire_timeout_s=settings.db_acquire_timeout_s
    )
    try:
        row = await pool.fetchrow(REGISTER_ROW, case_id)
        if row is None:
            raise Refused(f"no case {case_id} in the register")
        if row["closed_at"] is not None:
            raise Refused(
                f"case {case_id} is closed (outcome: {row['outcome']}): nothing to {action}"
            )
        keyring = load_keyring(settings)
        client = await connect_temporal(address, settings.temporal_namespace, keyring=keyring)
        latest = await _latest_run(client, workflow_id)
        interrupted = _interruption(case_id, latest)
        state = _carried_state(row, action)
        previous = None
        if latest is not None:
            ended = client.get_workflow_handle(workflow_id, run_id=latest.run_id)
            previous = await _previous_run(ended, client)
        run_number = previous + 1 if previous is not None else 1
        try:
            order = OperatorOrder(
                action=action, reason=reason, actor=actor, interrupted=interrupted
            )
        except ValidationError as exc:
            fields = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())
            raise Refused(fields) from exc
        opened = state.opening.input
        run = CaseRun.of(opened, carried=Continuation(state=state, run=run_number), order=order)
        try:
            handle = await client.start_workflow(
                CaseWorkflow.run,
                run,
                id=workflow_id,
                task_queue=latest.task_queue if latest is not None else settings.task_queue,
                # Only after a run that ended without an outcome: never a second case after
                # one that closed, even if two operators decide at once.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=case_search_attributes(
                    opened, keyring.subject_digests(opened.subject.identifiers)
                ),
            )
        except WorkflowAlreadyStartedError as exc:
            raise Refused(
                f"case {case_id} was started meanwhile (another operator?): see GET /cases/"
                f"{case_id}"
            ) from exc
        run_id = handle.result_run_id or ""
        seq = row["last_seq"] + 1
        written = await _wait_for_step(pool, case_id, seq, wait_seconds, poll_seconds)
        if written is None:
            raise NotDone(
                f"case {case_id}: run {run_id} started, but the register shows no step of it "
                f"after {wait_seconds:g} s (is a worker polling task queue "
                f"{latest.task_queue if latest is not None else settings.task_queue}?)"
            )
        return Decided(
            case_id=case_id,
            action=action,
            actor=actor,
            run=run_number,
            run_id=run_id,
            seq=seq,
            step=written["action"] or "?",
            stage=Stage(written["stage"]),
            outcome=written["outcome"],
        )
    finally:
        await pool.close()


def add_cases_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cases = commands.add_parser(
        "cases", help="decide on a case whose run failed or was terminated: reopen or close it"
    )
    sub = cases.add_subparsers(dest="cases_command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("reopen", "carry the case on in a new run, from its state in the register"),
        ("close", "close the case with the outcome closed_by_operator"),
    ):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("case_id", metavar="CASE_ID")
        command.add_argument("--reason", required=True, help="why (audited)")
        command.add_argument("--actor", required=True, help="who decides (audited)")
        command.add_argument(
            "--wait",
            type=float,
            default=30.0,
            metavar="SECONDS",
            help="how long to wait for the register to show the new run's step (default 30)",
        )


def run_cases_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run `rectify cases ...`: 0 done, 1 a server or the wait failed, 2 refused."""
    prefix = f"rectify cases {args.cases_command}"
    try:
        decided = asyncio.run(
            decide(
                settings,
                args.cases_command,
                args.case_id,
                reason=args.reason,
                actor=args.actor,
                wait_seconds=args.wait,
            )
        )
    except Refused as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 2
    except (NotDone, RuntimeError, OSError, RPCError, asyncpg.PostgresError) as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    print(decided.report())
    return 0
