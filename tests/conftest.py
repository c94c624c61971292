"""Session fixtures: one embedded PostgreSQL, one time-skipping server, one dev server.

Everything is real and on loopback; each test gets its own task queue and case ids.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.calendar import seed_calendar
from activities.policy import load_policies
from domain.models import OpenCaseInput, Severity, Subject, SubjectIdentifiers
from tests.keys import CONVERTER
from wiring.db import create_pool
from wiring.embedded import EmbeddedPostgres, free_port, temporal_cli
from wiring.logs import flush_logs
from wiring.migrate import migrate
from wiring.search_attributes import ensure_search_attributes
from wiring.settings import REPO_ROOT
from worker.main import build_worker
from workflows import search

MIGRATIONS = REPO_ROOT / "migrations"
POLICIES = load_policies(REPO_ROOT / "policies")


@pytest.fixture(autouse=True)
def _logs_written_within_the_test() -> Iterator[None]:
    """Lines are written off the event loop (wiring/logs.py): each test's land in its own
    captured output, not on the terminal after it."""
    yield
    flush_logs()


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL for the session (TEST_DATABASE_URL, or an embedded one), migrated."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(
        tmp_path_factory.mktemp("pg") / "data", free_port(), database="rectify_test", durable=False
    )
    server.start()
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(pg_dsn, MIGRATIONS)
    await seed_calendar(pg_dsn)  # the official holidays chinese-calendar knows (2004-2026)
    pool = await create_pool(pg_dsn, min_size=1, max_size=10)
    yield pool
    await pool.close()


@asynccontextmanager
async def scratch_database(
    pg_dsn: str, *, migrated: bool = True, seeded: bool = False
) -> AsyncIterator[str]:
    """A database of its own on the session's server (for tests that load calendars or need an
    empty schema), dropped afterwards; yields its DSN."""
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        if migrated:
            await migrate(dsn, MIGRATIONS)
        if seeded:
            await seed_calendar(dsn)
        yield dsn
    finally:
        admin = await asyncpg.connect(pg_dsn)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _test_server_path() -> str:
    return str(Path(sys.executable).parent / "temporal-test-server")


@pytest.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server per test (0.1 s to start): days pass in seconds, and every
    test's clock starts at today."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=CONVERTER,
        test_server_existing_path=_test_server_path(),
    )
    # An undefined search attribute makes the workflow task fail in a loop: register first.
    await ensure_search_attributes(env.client, "default", search.ALL)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (the `temporal` CLI), in memory."""
    env = await WorkflowEnvironment.start_local(
        data_converter=CONVERTER,
        dev_server_existing_path=temporal_cli(),
        ui=False,
    )
    await ensure_search_attributes(env.client, "default", search.ALL)
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def ts_worker(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> AsyncIterator[Worker]:
    async with build_worker(ts_env.client, pool, task_queue, POLICIES) as worker:
        yield worker


@pytest.fixture
async def dev_worker(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> AsyncIterator[Worker]:
    async with build_worker(dev_env.client, pool, task_queue, POLICIES) as worker:
        yield worker


def new_case_id() -> str:
    return f"T-{uuid.uuid4().hex[:12]}"


def open_case_input(case_id: str | None = None, **overrides: object) -> OpenCaseInput:
    case_id = case_id or new_case_id()
    values: dict[str, object] = {
        "case_id": case_id,
        # Each case its own subject, so no test is a repeat offender by accident.
        "subject": Subject(
            kind="website",
            name="Example News",
            identifiers=SubjectIdentifiers(domain=f"{case_id.lower()}.example.cn"),
        ),
        "violation_category": "prohibited_information",
        "legal_basis": "Cybersecurity Law art. 61",
        "severity": Severity.GENERAL,
        "office": "beijing",
        "opened_by": "officer.li",
    }
    values.update(overrides)
    return OpenCaseInput.model_validate(values)


async def audit_actions(pool: asyncpg.Pool, case_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT action FROM case_audit WHERE case_id = $1 ORDER BY seq", case_id
    )
    return [row["action"] for row in rows]


__all__ = ["Client", "audit_actions", "new_case_id", "open_case_input"]
