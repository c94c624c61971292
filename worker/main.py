"""The worker process: which workflows and activities run on Rectify's task queue."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.admission import PacingActivities
from activities.deadlines import DeadlineActivities
from activities.operator import OperatorActivities
from activities.policy import PolicyFileError, PolicySet, load_policies
from activities.steps import StepActivities
from wiring.backlog import BacklogBound
from wiring.db import create_pool
from wiring.keys import load_keyring
from wiring.logs import configure_logging
from wiring.search_attributes import ensure_search_attributes
from wiring.settings import Settings, get_settings
from wiring.temporal import connect_temporal
from worker.interceptors import CaseLoggingInterceptor
from workflows import search
from workflows.campaign import CampaignWorkflow
from workflows.case import CaseWorkflow
from workflows.operator import (
    LoadCalendarWorkflow,
    MarkCaseInterruptedWorkflow,
    PolicySummaryWorkflow,
)

log = structlog.get_logger(__name__)

WORKFLOWS: Sequence[type] = (
    CaseWorkflow,
    CampaignWorkflow,
    LoadCalendarWorkflow,
    PolicySummaryWorkflow,
    MarkCaseInterruptedWorkflow,
)


def activities_for(pool: asyncpg.Pool, policies: PolicySet) -> list[Any]:
    steps = StepActivities(pool, policies)
    deadlines = DeadlineActivities(pool)
    operator = OperatorActivities(pool, policies)
    return [
        steps.open_case,
        steps.record_step,
        deadlines.compute_deadline,
        operator.load_calendar_year,
        operator.policy_summary,
        operator.mark_case_interrupted,
    ]


# The project's own deterministic modules (models, the procedure table, policy decisions) and the
# libraries they build on are passed through the sandbox: imported once per worker, not once per
# workflow instance. Safe because none of them does I/O or keeps mutable module state; the
# workflow code itself (workflows.*) is still re-imported in the sandbox for every instance.
SANDBOX_PASSTHROUGH = ("domain", "pydantic", "pydantic_core", "annotated_types")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
    )


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    policies: PolicySet,
    pacing: BacklogBound | None = None,  # None: the settings' defaults, no environment read
) -> Worker:
    pacing = pacing or BacklogBound.from_settings(Settings.model_construct())
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[
            *activities_for(pool, policies),
            PacingActivities(client, task_queue, pacing).worker_backlog,
        ],
        interceptors=[CaseLoggingInterceptor()],
        workflow_runner=workflow_runner(),
        max_concurrent_activities=50,
    )


async def run_worker(settings: Settings) -> None:
    # A bad policy file stops the worker here, naming the file and the field.
    policies = load_policies(settings.policies_dir)
    log.info("policies loaded", versions=policies.versions)
    pool = await create_pool(
        settings.require_database_url(),
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        command_timeout_s=settings.db_command_timeout_s,
        acquire_timeout_s=settings.db_acquire_timeout_s,
    )
    keyring = load_keyring(settings)
    log.info("payload codec ready", **keyring.describe())
    try:
        client = await connect_temporal(
            settings.require_temporal_address(),
            settings.temporal_namespace,
            keyring=keyring,
            wait_seconds=30,
        )
        await ensure_search_attributes(client, settings.temporal_namespace, search.ALL)
        worker = build_worker(
            client, pool, settings.task_queue, policies, BacklogBound.from_settings(settings)
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with worker:
            log.info("worker started", task_queue=settings.task_queue)
            await stop.wait()
            log.info("worker stopping: finishing running activities")
    finally:
        await pool.close()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(run_worker(settings))
    except PolicyFileError as exc:
        print(f"worker: refusing to start: {exc}", file=sys.stderr)
        sys.exit(2)
