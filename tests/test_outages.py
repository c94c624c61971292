"""Outages are answered, never hung, and errors leak nothing (issue 9, part: the rest of that
issue is still open): a stopped database is 503 with Retry-After; console tracebacks carry no
local variables."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest
import structlog
from temporalio.testing import WorkflowEnvironment

from tests.test_api_events import event
from tests.test_api_integration import api_client
from wiring.db import create_pool
from wiring.embedded import EmbeddedPostgres, free_port
from wiring.logs import configure_logging, flush_logs

pytestmark = pytest.mark.integration


async def test_a_stopped_database_is_503_with_retry_after(
    dev_env: WorkflowEnvironment, tmp_path: Path, task_queue: str
) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    server.start()
    stopped = False
    try:
        async with api_client(dev_env, server.dsn, task_queue, db_command_timeout_s=2) as api:
            assert (await api.get("/cases")).status_code == 200
            server.stop()
            stopped = True
            for call in (api.get("/cases"), api.post("/events", json=event())):
                response = await asyncio.wait_for(call, timeout=15)
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "5"
                problem = response.json()
                assert problem["type"].endswith("/database-unavailable")
                assert "send the request again" in problem["detail"]
    finally:
        if not stopped:
            server.stop()


def test_console_tracebacks_carry_no_local_variables() -> None:
    out = io.StringIO()
    configure_logging("console", "INFO", stream=out)
    try:

        def fails() -> None:
            subject_name = "Zhang San 13800000000"  # a local variable holding personal data
            raise ValueError(f"bad subject ({len(subject_name)} characters)")

        try:
            fails()
        except ValueError:
            structlog.get_logger("test").exception("step failed")
        flush_logs()  # written on the logging thread
        text = out.getvalue()
        assert "Traceback" in text and "ValueError: bad subject (21 characters)" in text
        assert "13800000000" not in text
    finally:
        logging.getLogger().handlers.clear()


def test_an_unreachable_database_fails_fast_at_connect() -> None:
    """Opening a connection is bounded too: a port nobody listens on fails within seconds."""

    async def attempt() -> None:
        await create_pool(f"postgresql://x@127.0.0.1:{free_port()}/x", connect_timeout_s=2)

    with pytest.raises((OSError, TimeoutError)):
        asyncio.run(asyncio.wait_for(attempt(), timeout=10))
