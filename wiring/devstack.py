"""`rectify run` (what `make run` calls): the whole engine on one machine.

PostgreSQL and the Temporal dev server start embedded unless DATABASE_URL / TEMPORAL_ADDRESS
name servers; then migrations, the worker and the API. Ctrl-C (or SIGTERM) stops every child in
reverse order; a child that dies on its own stops the stack with a non-zero exit.

The data directory (DATA_DIR, `.data/`) is private: 0700, every file in it 0600, made so at
each start (wiring/embedded.py). The embedded Web UI decodes payloads through the API's /codec,
which lets the UI's origins call it (CODEC_CORS_ORIGINS).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import FrameType

import structlog

from wiring.embedded import (
    EmbeddedPostgres,
    EmbeddedTemporal,
    ManagedProcess,
    make_private,
    private_dir,
)
from wiring.keys import Keyring, load_keyring
from wiring.migrate import migrate
from wiring.settings import Settings
from wiring.temporal import connect_temporal

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Banner:
    """Lines an `after_migrate` hook returns to print with the URLs once the stack is up."""

    lines: list[str] = field(default_factory=list)


class StackStopped(Exception):
    """A stop signal arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StackStopped(signal.Signals(signum).name)


class DevStack:
    def __init__(
        self, settings: Settings, after_migrate: Callable[[str], Awaitable[object]] | None = None
    ) -> None:
        self.settings = settings
        self.after_migrate = after_migrate
        self.processes: list[ManagedProcess] = []
        self.servers: list[EmbeddedPostgres | EmbeddedTemporal] = []

    def _child_env(
        self,
        database_url: str,
        temporal_address: str,
        ui_url: str | None,
        ui_origins: list[str] | None = None,
    ) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url,
            TEMPORAL_ADDRESS=temporal_address,
            TEMPORAL_NAMESPACE=self.settings.temporal_namespace,
            TASK_QUEUE=self.settings.task_queue,
            DATA_DIR=str(self.settings.data_dir),
            API_HOST=self.settings.api_host,
            API_PORT=str(self.settings.api_port),
            LOG_FORMAT=self.settings.log_format,
            LOG_LEVEL=self.settings.log_level,
            CODEC_CORS_ORIGINS=codec_cors_origins(
                self.settings.codec_cors_origins, ui_origins or []
            ),
        )
        if ui_url:
            env["TEMPORAL_UI_URL"] = ui_url
        return env

    def start(self) -> None:
        s = self.settings
        make_private(private_dir(s.data_dir))  # and fix what an older version left readable
        database_url = str(s.database_url) if s.database_url else None
        if not database_url:
            pg = EmbeddedPostgres(s.data_dir / "postgres", s.embedded_postgres_port)
            self.servers.append(pg)
            database_url = pg.start()
            log.info("PostgreSQL started", dsn=database_url)
        applied = asyncio.run(migrate(database_url, s.migrations_dir))
        log.info("migrations up to date", applied_now=applied)
        extra = Banner()
        if self.after_migrate is not None:
            result = asyncio.run(_call(self.after_migrate, database_url))
            extra = result if isinstance(result, Banner) else extra

        temporal_address, ui_url = s.temporal_address, s.temporal_ui_url
        ui_origins: list[str] = []
        if not temporal_address:
            temporal = EmbeddedTemporal(
                s.data_dir / "temporal.db",
                s.embedded_temporal_port,
                s.embedded_temporal_ui_port,
                ui_codec_endpoint=f"http://{_browser_host(s.api_host)}:{s.api_port}/codec",
            )
            self.servers.append(temporal)
            temporal_address = temporal.start()
            ui_url = ui_url or temporal.ui_url
            ui_origins = temporal.ui_origins
            log.info("Temporal dev server started", address=temporal_address, ui=ui_url)
        # The keys first: the worker and the API read the same ones (DATA_DIR/keys.json unless
        # PAYLOAD_KEYS and SUBJECT_HASH_KEY are set).
        keyring = load_keyring(s)
        asyncio.run(_wait_temporal(temporal_address, s.temporal_namespace, keyring))

        env = self._child_env(database_url, temporal_address, ui_url, ui_origins)
        for name, module in (("worker", "worker"), ("api", "api")):
            process = ManagedProcess(name, [sys.executable, "-m", module], env=env)
            process.start()
            self.processes.append(process)
        self._wait_api_healthy()
        api = f"http://{_browser_host(s.api_host)}:{s.api_port}"
        banner = [
            "",
            "Rectify is running. Ctrl-C stops everything.",
            f"  API          {api}",
            f"  API docs     {api}/docs",
            f"  Health       {api}/health",
        ]
        if ui_url:
            banner.append(f"  Temporal UI  {ui_url}")
        banner.append(f"  Data         {s.data_dir}")
        banner.extend(extra.lines)
        print("\n".join(banner) + "\n", flush=True)

    def _wait_api_healthy(self, timeout: float = 60.0) -> None:
        url = f"http://{_browser_host(self.settings.api_host)}:{self.settings.api_port}/health"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_children()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the API did not answer {url} with 200 within {timeout:.0f} s")

    def _check_children(self) -> None:
        for process in [*self.processes, *(s.process for s in self.servers if s.process)]:
            if not process.alive():
                code = process.popen.returncode if process.popen else None
                raise RuntimeError(f"{process.name} exited unexpectedly (exit code {code})")

    def supervise(self) -> None:
        while True:
            self._check_children()
            time.sleep(0.5)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for server in reversed(self.servers):
            server.stop()


def _browser_host(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host


def codec_cors_origins(configured: str, embedded_ui: list[str]) -> str:
    """CODEC_CORS_ORIGINS for the children: the configured origins, then the embedded Web UI's,
    each once."""
    origins = [o.strip() for o in configured.split(",") if o.strip()]
    return ",".join(dict.fromkeys([*origins, *embedded_ui]))


async def _wait_temporal(address: str, namespace: str, keyring: Keyring) -> None:
    client = await connect_temporal(address, namespace, keyring=keyring, wait_seconds=60)
    deadline = asyncio.get_running_loop().time() + 60
    while not await client.service_client.check_health():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"Temporal at {address} is not serving")
        await asyncio.sleep(0.5)


async def _call(hook: Callable[[str], Awaitable[object]], database_url: str) -> object:
    return await hook(database_url)


def run_stack(
    settings: Settings, after_migrate: Callable[[str], Awaitable[object]] | None = None
) -> int:
    """Start everything, supervise until a stop signal, stop everything. Returns the exit code."""
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGHUP, _raise_stop)
    stack = DevStack(settings, after_migrate)
    code = 0
    try:
        stack.start()
        stack.supervise()
    except StackStopped as stop:
        log.info("stopping Rectify", signal=str(stop))
    except Exception as exc:
        log.error("Rectify stopped on an error", error=str(exc))
        code = 1
    finally:
        # A second Ctrl-C must not interrupt the orderly stop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        log.info("Rectify stopped")
    return code
