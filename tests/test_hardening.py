"""Issue 9, the rest: a private data directory, every database call bounded, /health within 2 s
whatever hangs, logs rendered off the event loop, every 500 logged once without dropping the
client's connection, the embedded Web UI pointed at the API's codec."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import io
import json
import logging
import os
import pwd
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
import structlog
import uvicorn
from fastapi import FastAPI, Request
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.test_api_integration import api_client, create_key
from wiring.db import PoolAcquireTimeout, create_pool
from wiring.devstack import DevStack, codec_cors_origins
from wiring.embedded import (
    PG_SYSTEM_USER,
    EmbeddedPostgres,
    EmbeddedTemporal,
    free_port,
    make_private,
    private_dir,
)
from wiring.logs import configure_logging, flush_logs
from wiring.settings import Settings

AS_ROOT = os.geteuid() == 0


@contextlib.contextmanager
def console_logs_restored() -> Iterator[None]:
    try:
        yield
    finally:
        configure_logging("console", "INFO", stream=sys.__stderr__)


@asynccontextmanager
async def app_client(
    pg_dsn: str,
    temporal_address: str,
    *,
    routes: dict[str, Callable[..., Any]] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app in-process (as `api_client`), with extra routes, and the app itself."""
    key = await create_key(pg_dsn, "admin")
    app = create_app(
        Settings(
            _env_file=None,
            database_url=pg_dsn,
            temporal_address=temporal_address,
            task_queue="tq-hardening",
            temporal_ui_url="http://localhost:8233",
            **settings,
        )
    )
    for path, endpoint in (routes or {}).items():
        app.add_api_route(path, endpoint)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://rectify",
            headers={"Authorization": f"Bearer {key}"},
        ) as client,
    ):
        yield app, client


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await asyncio.wait_for(client.get(path), timeout=30)
    return response, time.monotonic() - started


def assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"].endswith("/database-unavailable")


# --- 1. the data directory is private ------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _umask(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask in /proc status")


def test_an_old_world_readable_data_directory_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / ".data"
    (data / "postgres" / "base").mkdir(parents=True)
    (data / "postgres" / "base" / "1").write_text("x")
    (data / "temporal.db").write_text("x")
    (tmp_path / "elsewhere").write_text("x")
    (data / "link").symlink_to(tmp_path / "elsewhere")
    for path in (data, data / "postgres", data / "postgres" / "base"):
        path.chmod(0o755)
    for path in (data / "postgres" / "base" / "1", data / "temporal.db", tmp_path / "elsewhere"):
        path.chmod(0o644)

    make_private(private_dir(data))

    assert {_mode(p) for p in (data, data / "postgres", data / "postgres" / "base")} == {0o700}
    assert _mode(data / "postgres" / "base" / "1") == _mode(data / "temporal.db") == 0o600
    assert _mode(tmp_path / "elsewhere") == 0o644  # a link's target is not ours to change
    new = private_dir(tmp_path / "new" / "dir")
    assert _mode(new) == 0o700


@pytest.mark.integration
def test_embedded_servers_write_only_private_files(tmp_path: Path) -> None:
    """Started in an old world-readable data directory: afterwards every directory is 0700 and
    every file 0600, what the servers wrote included (PostgreSQL's data directory, the SQLite
    database and its WAL files, the logs); the children run with umask 077. As root, PostgreSQL's
    own user may pass through the data directory (0710, its group) and owns its data."""
    data = tmp_path / ".data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    for stale in ("postgres.log", "temporal.log"):
        (data / stale).write_text("an old log\n")
        (data / stale).chmod(0o644)

    pg = EmbeddedPostgres(data / "postgres", free_port(), durable=False)
    temporal = EmbeddedTemporal(
        data / "temporal.db",
        free_port(),
        free_port(),
        ui_codec_endpoint="http://localhost:8000/codec",
    )
    assert temporal.argv()[-2:] == ["--ui-codec-endpoint", "http://localhost:8000/codec"]
    pg.start()
    try:
        temporal.start()
        try:
            assert pg.process is not None and pg.process.pid is not None
            assert temporal.process is not None and temporal.process.pid is not None
            assert _umask(temporal.process.pid) == 0o077
            assert _umask(pg.process.pid) == 0o077
            written = {p.name for p in data.iterdir()}
            assert {"postgres", "postgres.log", "temporal.db", "temporal.log"} <= written
            assert "temporal.db-wal" in written  # WAL: SQLite's side files are there too
            assert (data / "postgres" / "PG_VERSION").exists()

            for top, dirs, files in os.walk(data):
                for name in dirs:
                    assert _mode(Path(top, name)) == 0o700, Path(top, name)
                for name in files:
                    assert _mode(Path(top, name)) == 0o600, Path(top, name)
            info = data.stat()
            if AS_ROOT:
                assert _mode(data) == 0o710
                assert info.st_gid == grp.getgrnam(PG_SYSTEM_USER).gr_gid
                owner = (data / "postgres").stat().st_uid
                assert owner == pwd.getpwnam(PG_SYSTEM_USER).pw_uid
            else:
                assert _mode(data) == 0o700
        finally:
            temporal.stop()
    finally:
        pg.stop()


def test_the_embedded_ui_origins_may_call_the_codec() -> None:
    assert (
        codec_cors_origins(
            " https://ui.example.cn ,,http://localhost:8233",
            [
                "http://localhost:8233",
                "http://127.0.0.1:8233",
            ],
        )
        == "https://ui.example.cn,http://localhost:8233,http://127.0.0.1:8233"
    )
    assert codec_cors_origins("", []) == ""
    stack = DevStack(Settings(_env_file=None, codec_cors_origins="https://ui.example.cn"))
    temporal = EmbeddedTemporal(Path("/nowhere/temporal.db"), 7233, 8233)
    env = stack._child_env("postgresql://x@h/db", "127.0.0.1:7233", None, temporal.ui_origins)
    assert env["CODEC_CORS_ORIGINS"] == (
        "https://ui.example.cn,http://localhost:8233,http://127.0.0.1:8233"
    )
    assert "--ui-codec-endpoint" not in temporal.argv()


# --- 2. every database call is bounded -----------------------------------------------------------


@pytest.mark.integration
async def test_every_pool_acquire_is_bounded(pg_dsn: str) -> None:
    pool = await create_pool(pg_dsn, min_size=1, max_size=1, acquire_timeout_s=0.5)
    try:
        async with pool.acquire() as held:
            assert await held.fetchval("SELECT 1") == 1

            async def context_block() -> None:
                async with pool.acquire():
                    pass

            async def awaited() -> None:
                await pool.acquire()

            for attempt in (
                lambda: pool.fetchval("SELECT 1"),
                lambda: pool.execute("SELECT 1"),
                lambda: pool.fetch("SELECT 1"),
                context_block,
                awaited,
            ):
                started = time.monotonic()
                with pytest.raises(PoolAcquireTimeout):
                    await asyncio.wait_for(attempt(), timeout=10)
                assert 0.4 < time.monotonic() - started < 3
            started = time.monotonic()  # a timeout given by the caller wins
            with pytest.raises(PoolAcquireTimeout):
                await pool.acquire(timeout=0.1)
            assert time.monotonic() - started < 0.4
        conn = await pool.acquire()  # released: available again
        assert await conn.fetchval("SELECT 2") == 2
        await pool.release(conn)
    finally:
        await pool.close()


@pytest.mark.integration
async def test_database_timeouts_are_503_and_other_timeouts_500(
    dev_env: WorkflowEnvironment, pg_dsn: str, pool: asyncpg.Pool
) -> None:
    """An exhausted pool (acquire timed out) and a statement over its timeout are 503
    `database-unavailable` with Retry-After; a timeout that is not the database's is a 500."""

    async def slow_statement(request: Request) -> dict[str, str]:
        await request.app.state.pool.fetchval("SELECT pg_sleep(5)", timeout=0.3)
        return {}

    async def other_timeout() -> dict[str, str]:
        raise TimeoutError("the case did not answer")

    routes: dict[str, Callable[..., Any]] = {
        "/test/slow-statement": slow_statement,
        "/test/other-timeout": other_timeout,
    }
    address = dev_env.client.service_client.config.target_host
    async with app_client(
        pg_dsn, address, routes=routes, db_pool_max_size=1, db_acquire_timeout_s=0.5
    ) as (app, api):
        assert (await api.get("/cases")).status_code == 200
        response, took = await timed_get(api, "/test/slow-statement")
        assert_database_unavailable(response)
        assert took < 3

        response = await api.get("/test/other-timeout")
        assert response.status_code == 500, response.text
        assert response.json()["type"].endswith("/internal-error")

        async with app.state.pool.acquire():  # the API's only connection, held
            response, took = await timed_get(api, "/cases")
            assert_database_unavailable(response)
            assert took < 3
            response, took = await timed_get(api, "/health")
            assert response.status_code == 503 and took < 2
            assert response.json()["checks"]["postgres"].startswith("error")
        assert (await api.get("/cases")).status_code == 200


# --- 3. /health answers within 2 s ---------------------------------------------------------------


async def wait_healthy(api: httpx.AsyncClient, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while (response := await api.get("/health")).status_code != 200:
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.3)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP a server and every process it started (PostgreSQL's backends, each in a session
    of its own), SIGCONT on the way out."""
    server = psutil.Process(pid)
    processes = [server, *server.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)


@pytest.mark.integration
async def test_health_answers_within_2s_with_a_frozen_database(
    dev_env: WorkflowEnvironment, tmp_path: Path, task_queue: str
) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    server.start()
    try:
        assert server.process is not None and server.process.pid is not None
        async with api_client(
            dev_env, server.dsn, task_queue, db_command_timeout_s=1, db_acquire_timeout_s=1
        ) as api:
            await wait_healthy(api)
            with frozen(server.process.pid):
                for _ in range(3):  # the first check's connection is still stuck: no matter
                    response, took = await timed_get(api, "/health")
                    assert response.status_code == 503, response.text
                    assert took < 2, took
                    body = response.json()
                    assert body["status"] == "unavailable"
                    assert body["checks"]["temporal"] == "ok"
                    assert body["checks"]["postgres"].startswith("error")
                response, took = await timed_get(api, "/cases")
                assert_database_unavailable(response)
                assert took < 5
            await wait_healthy(api)
    finally:
        server.stop()


@pytest.mark.integration
async def test_health_answers_within_2s_when_temporal_does_not_answer(
    pg_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    temporal = EmbeddedTemporal(tmp_path / "temporal" / "temporal.db", free_port(), free_port())
    temporal.start()
    try:
        assert temporal.process is not None and temporal.process.pid is not None
        async with app_client(pg_dsn, temporal.address) as (_, api):
            await wait_healthy(api)
            with frozen(temporal.process.pid):
                for _ in range(2):
                    response, took = await timed_get(api, "/health")
                    assert response.status_code == 503, response.text
                    assert took < 2, took
                    checks = response.json()["checks"]
                    assert checks["postgres"] == "ok"
                    assert checks["temporal"].startswith("error")
            await wait_healthy(api)
    finally:
        temporal.stop()


# --- 4. logs are rendered off the event loop -----------------------------------------------------


class SlowStream(io.StringIO):
    """A sink that takes its time: a slow terminal, a full pipe."""

    def write(self, text: str) -> int:
        time.sleep(0.1)
        return super().write(text)


async def test_logging_from_the_loop_never_waits_for_the_sink() -> None:
    sink = SlowStream()
    with console_logs_restored():
        configure_logging("console", "INFO", stream=sink)
        log = structlog.get_logger("test.slow")
        structlog.contextvars.bind_contextvars(request_id="req-slow")
        started = time.monotonic()
        try:
            for i in range(10):
                log.info("tick", i=i)
            try:
                secret = "Zhang San 13800000000"  # a local variable holding personal data
                raise ValueError(f"bad subject ({len(secret)} characters)")
            except ValueError:
                log.exception("step failed")
            logging.getLogger("test.stdlib").warning("from the standard library: %s", "args")
            took = time.monotonic() - started
        finally:
            structlog.contextvars.clear_contextvars()
        assert took < 0.1, took  # written synchronously, 13 lines would take 1.3 s
        flush_logs()
        text = sink.getvalue()
    assert all(f"i={i}" in text for i in range(10))
    assert "Traceback" in text and "ValueError: bad subject (21 characters)" in text
    assert "13800000000" not in text  # plain tracebacks: no local variables
    stdlib = next(line for line in text.splitlines() if "from the standard library" in line)
    assert "args" in stdlib and "request_id=req-slow" in stdlib  # its context, from its thread


async def test_json_logs_render_tracebacks_and_foreign_lines_off_the_loop() -> None:
    sink = io.StringIO()
    with console_logs_restored():
        configure_logging("json", "INFO", stream=sink)
        structlog.contextvars.bind_contextvars(request_id="req-json")
        try:
            try:
                raise KeyError("missing")
            except KeyError:
                structlog.get_logger("test.json").exception("lookup failed", case_id="C-1")
            logging.getLogger("test.stdlib").error("foreign %d", 42)
        finally:
            structlog.contextvars.clear_contextvars()
        flush_logs()
    events = [json.loads(line) for line in sink.getvalue().splitlines()]
    failed = next(e for e in events if e["event"] == "lookup failed")
    assert failed["level"] == "error" and failed["request_id"] == "req-json"
    assert failed["case_id"] == "C-1" and failed["timestamp"].endswith("Z")
    assert "Traceback" in failed["exception"] and "KeyError: 'missing'" in failed["exception"]
    foreign = next(e for e in events if e["event"] == "foreign 42")
    assert foreign["request_id"] == "req-json" and foreign["logger"] == "test.stdlib"
    assert foreign["level"] == "error" and foreign["timestamp"].endswith("Z")


# --- 5. every 500 is logged once, and the connection stays open ----------------------------------


@pytest.mark.integration
async def test_an_unhandled_error_is_a_500_logged_once_on_a_kept_connection(
    dev_env: WorkflowEnvironment, pg_dsn: str, pool: asyncpg.Pool
) -> None:
    """Through a real uvicorn: two failing requests and a good one on one keep-alive
    connection; each failure is a 500 problem document and one "request failed" line with its
    request id and a plain traceback; uvicorn logs nothing of it."""

    async def boom() -> None:
        raise RuntimeError("the route broke")

    sink = io.StringIO()
    with console_logs_restored():
        configure_logging("json", "INFO", stream=sink)
        app = create_app(
            Settings(
                _env_file=None,
                database_url=pg_dsn,
                temporal_address=dev_env.client.service_client.config.target_host,
                task_queue="tq-hardening",
            )
        )
        app.add_api_route("/test/boom", boom)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
        )
        serving = asyncio.create_task(server.serve())
        try:
            deadline = time.monotonic() + 30
            while not server.started:
                assert not serving.done() and time.monotonic() < deadline
                await asyncio.sleep(0.05)
            responses: list[httpx.Response] = []
            ports: set[int | None] = set()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for path, request_id in (
                    ("/test/boom", "req-boom-1"),
                    ("/test/boom", "req-boom-2"),
                    ("/health", "req-after"),
                ):
                    response = await client.get(path, headers={"X-Request-Id": request_id})
                    stream = response.extensions["network_stream"]
                    try:
                        ports.add(stream.get_extra_info("client_addr")[1])  # our end's port
                    except OSError:  # the server closed the connection
                        ports.add(None)
                    responses.append(response)
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, timeout=30)
        flush_logs()

    for response in responses:
        assert response.headers.get("connection", "").lower() != "close"
    assert len(ports) == 1  # one connection for all three: the server kept it open
    for response, request_id in zip(responses[:2], ("req-boom-1", "req-boom-2"), strict=True):
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"] == request_id
        problem = response.json()
        assert problem["type"].endswith("/internal-error") and problem["status"] == 500
        assert "broke" not in response.text  # the client learns nothing of it
    assert responses[2].status_code == 200

    text = sink.getvalue()
    assert "Exception in ASGI application" not in text
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    for request_id in ("req-boom-1", "req-boom-2"):
        lines = [e for e in events if e.get("request_id") == request_id]
        assert len(lines) == 1, lines
        (failed,) = lines
        assert failed["event"] == "request failed" and failed["level"] == "error"
        assert (failed["method"], failed["path"]) == ("GET", "/test/boom")
        assert failed["status"] == 500 and failed["error"] == "RuntimeError"
        assert "Traceback" in failed["exception"]
        assert "RuntimeError: the route broke" in failed["exception"]
    assert [e["event"] for e in events if e.get("request_id") == "req-after"] == ["request handled"]
    assert sum("the route broke" in line for line in text.splitlines()) == 2
