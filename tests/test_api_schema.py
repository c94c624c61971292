"""schemathesis over the API's own OpenAPI schema, against the real app, worker, Temporal and
PostgreSQL: whatever a caller sends, no 5xx and no response that violates the schema."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from activities.calendar import seed_calendar
from api.app import create_app
from tests.conftest import MIGRATIONS, POLICIES
from tests.keys import TEST_KEYRING
from tests.test_api_integration import create_key
from wiring.db import create_pool
from wiring.embedded import EmbeddedTemporal, free_port
from wiring.migrate import migrate
from wiring.search_attributes import ensure_search_attributes
from wiring.settings import Settings
from wiring.temporal import connect_temporal
from worker.main import build_worker
from workflows import search

pytestmark = pytest.mark.integration


class LiveApi:
    """uvicorn and a worker in one event loop on a background thread."""

    def __init__(self, pg_dsn: str, temporal_address: str) -> None:
        self.pg_dsn, self.temporal_address = pg_dsn, temporal_address
        self.port = free_port()
        self.key = ""
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self.ready.wait(90) or self.error:
            raise RuntimeError(f"the API did not start: {self.error}")

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        task_queue = f"schema-{uuid.uuid4().hex[:8]}"
        self.key = await create_key(self.pg_dsn, "admin")
        client = await connect_temporal(
            self.temporal_address, keyring=TEST_KEYRING, wait_seconds=30
        )
        await ensure_search_attributes(client, "default", search.ALL)
        pool = await create_pool(self.pg_dsn)
        app = create_app(
            Settings(
                _env_file=None,
                database_url=self.pg_dsn,
                temporal_address=self.temporal_address,
                task_queue=task_queue,
                case_answer_timeout_s=10,
            )
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        )
        try:
            async with build_worker(client, pool, task_queue, POLICIES):
                serving = asyncio.create_task(server.serve())
                while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to await)
                    await asyncio.sleep(0.05)
                self.ready.set()
                await self._stop.wait()
                server.should_exit = True
                await serving
        finally:
            await pool.close()


async def _database(pg_dsn: str, name: str, create: bool) -> str:
    conn = await asyncpg.connect(pg_dsn)
    try:
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    dsn = pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    if create:
        await migrate(dsn, MIGRATIONS)
        await seed_calendar(dsn)
    return dsn


@pytest.fixture(scope="module")
def live_api(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """The API on a database of its own: generated requests may load calendars, open cases."""
    name = f"schema_{uuid.uuid4().hex[:8]}"
    dsn = asyncio.run(_database(pg_dsn, name, create=True))
    folder: Path = tmp_path_factory.mktemp("schema-temporal")
    temporal = EmbeddedTemporal(folder / "temporal.db", free_port(), free_port())
    temporal.start()
    api = LiveApi(dsn, temporal.address)
    try:
        api.start()
        yield api
    finally:
        api.stop()
        temporal.stop()
        asyncio.run(_database(pg_dsn, name, create=False))


def test_api_never_fails_and_keeps_its_schema(live_api: LiveApi) -> None:
    """Every operation, a few generated requests each (the pytest plugin of schemathesis does
    not run on pytest 9, so its strategies are driven here directly)."""
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json")
    headers = {"Authorization": f"Bearer {live_api.key}"}
    failures: list[str] = []
    operations = 0
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            response = case.call(base_url=live_api.url, headers=headers)
            statuses.append(response.status_code)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:800]}")
    assert operations >= 40
    assert len(statuses) >= 3 * operations  # it really called the API, many times
    assert {status // 100 for status in statuses} >= {2, 4}  # accepted and refused inputs
    assert not failures, "\n\n".join(failures)
