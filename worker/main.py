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

from activities.deadlines import DeadlineActivities
from activities.documents import DocumentActivities
from activities.operator import OperatorActivities
from activities.policy import PolicyActivities, PolicyFileError, PolicySet, load_policies
from activities.register import CaseRegisterActivities
from wiring.db import create_pool
from wiring.logs import configure_logging
from wiring.search_attributes import ensure_search_attributes
from wiring.settings import Settings, get_settings
from wiring.temporal import connect_temporal
from worker.interceptors import CaseLoggingInterceptor
from workflows import search
from workflows.campaign import CampaignWorkflow
from workflows.case import CaseWorkflow
from workflows.operator import LoadCalendarWorkflow, PolicySummaryWorkflow

log = structlog.get_logger(__name__)

WORKFLOWS: Sequence[type] = (
    CaseWorkflow,
    CampaignWorkflow,
    LoadCalendarWorkflow,
    PolicySummaryWorkflow,
)


def activities_for(pool: asyncpg.Pool, policies: PolicySet) -> list[Any]:
    register = CaseRegisterActivities(pool)
    deadlines = DeadlineActivities(pool)
    documents = DocumentActivities(pool)
    policy = PolicyActivities(pool, policies)
    operator = OperatorActivities(pool, policies)
    return [
        register.record_case_opened,
        register.record_transition,
        deadlines.compute_deadline,
        documents.issue_document,
        policy.case_policy,
        operator.load_calendar_year,
        operator.policy_summary,
    ]


def build_worker(
    client: Client, pool: asyncpg.Pool, task_queue: str, policies: PolicySet
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities_for(pool, policies),
        interceptors=[CaseLoggingInterceptor()],
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
    )
    try:
        client = await connect_temporal(
            settings.require_temporal_address(), settings.temporal_namespace, wait_seconds=30
        )
        await ensure_search_attributes(client, settings.temporal_namespace, search.ALL)
        worker = build_worker(client, pool, settings.task_queue, policies)
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
