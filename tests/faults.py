"""Fault-injection harness: a Rectify stack of real processes that tests kill and restart.

`FaultStack` starts what a test needs through the project's own wrappers (wiring/embedded.py):
an embedded PostgreSQL, the Temporal dev server on a SQLite file (as `make run` does), worker
processes (`python -m worker`) and the API (`python -m api`), each with its own log under the
test's tmp dir, fresh payload and subject-hash keys, and a marker in its environment. It kills
them (SIGKILL to the process group), stops them, starts them again on the same files and ports,
and at the end stops every one and checks that no marked process survived.

Children are spawned from one dedicated thread that lives as long as the stack: a child's
parent-death signal (PR_SET_PDEATHSIG) follows the thread that forked it, so spawning from the
event loop's default executor could kill a child when an idle pool thread retires.

`ApiCaseDriver` takes a case along the main path through the HTTP API, surviving outages: every
request is bounded, and after an answer that is not a 2xx (or no answer) it reads the case and
sends the command again only if the case has not moved. `check_records` reads PostgreSQL
directly: every case closed, no audit row or document twice, every document series gapless.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import psutil
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.calendar import seed_calendar
from domain.procedure import COMMAND_BY_NAME
from wiring.api_keys import ApiKeyRepository, KeySpec
from wiring.embedded import EmbeddedPostgres, EmbeddedTemporal, ManagedProcess, free_port
from wiring.keys import keyring_from_text
from wiring.migrate import migrate
from wiring.settings import REPO_ROOT
from wiring.temporal import connect_temporal

T = TypeVar("T")
MARK = "RECTIFY_FAULT_STACK"

# The main path: (command, its route, the stage it is given in).
MAIN_PATH: tuple[tuple[str, str, str], ...] = (
    ("decide_filing", "filing-decision", "filing"),
    ("schedule_interview", "interview/schedule", "filed"),
    ("record_interview", "interview/record", "interview_scheduled"),
    ("issue_rectification_order", "rectification-order", "interviewed"),
    ("submit_rectification_report", "rectification-report", "rectifying"),
    ("record_verification", "verification", "verifying"),
)
STAGES = ("filing", "filed", "interview_scheduled", "interviewed", "rectifying", "verifying")
CLOSED = "closed"
AUDIT_TRAIL = (
    "case_opened",
    "filed",
    "interview_scheduled",
    "interview_recorded",
    "rectification_ordered",
    "rectification_reported",
    "verification_passed",
)
DOCUMENTS = ("filing_decision", "interview_notice", "interview_record", "rectification_order")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def fresh_keys() -> dict[str, str]:
    """New payload and subject-hash keys, as the environment of every child carries them."""
    return {
        "PAYLOAD_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
        "SUBJECT_HASH_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def command_body(name: str, **fields: Any) -> dict[str, Any]:
    """The procedure table's example body for `name` (what /docs shows), with `fields`."""
    body = dict(COMMAND_BY_NAME[name].example)
    if name == "decide_filing":
        body["decision"] = "filed"
    if name == "record_verification":
        body["passed"] = True
    body.update(fields)
    return body


def case_body(case_id: str, office: str) -> dict[str, Any]:
    return {
        "case_id": case_id,
        # Each case its own subject: none is a repeat offender.
        "subject": {
            "kind": "website",
            "name": "Fault News",
            "identifiers": {"domain": f"{case_id.lower()}.faults.example.cn"},
        },
        "violation_category": "prohibited_information",
        "legal_basis": "Cybersecurity Law art. 61",
        "severity": "general",
        "office": office,
        "opened_by": "officer.li",
    }


@dataclass
class Answer:
    """One HTTP exchange: the status (None: no answer at all) and the body."""

    status: int | None
    body: Any = None
    headers: httpx.Headers | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def problem_type(self) -> str:
        return str(self.body.get("type", "")) if isinstance(self.body, dict) else ""

    def retry_after(self, default: float = 1.0, most: float = 5.0) -> float:
        if self.headers is not None and "retry-after" in self.headers:
            with contextlib.suppress(ValueError):
                return min(float(self.headers["retry-after"]), most)
        return default

    def describe(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        return f"{self.status} {self.problem_type.rsplit('/', 1)[-1]}".strip()


async def call(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: Any = None,
    within: float = 45.0,
) -> Answer:
    """One request, bounded by `within` seconds whatever the server does; never raises."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            response = await http.request(method, path, json=body, timeout=within)
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        return Answer(None, error=type(exc).__name__, seconds=time.monotonic() - started)
    try:
        parsed: Any = response.json()
    except ValueError:
        parsed = response.text
    return Answer(response.status_code, parsed, response.headers, None, time.monotonic() - started)


# --- the stack ----------------------------------------------------------------------------


class FaultStack:
    """Real processes of one test, under `root`; `close()` leaves none behind."""

    def __init__(self, root: Path, *, task_queue: str = "rectify-faults", **env: str) -> None:
        self.root = root
        self.mark = uuid.uuid4().hex
        self.keys = fresh_keys()
        self.task_queue = task_queue
        self.extra_env = env
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.postgres: EmbeddedPostgres | None = None
        self.temporal: EmbeddedTemporal | None = None
        self.workers: dict[str, ManagedProcess] = {}
        self.api: ManagedProcess | None = None
        self.api_port = free_port()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="fault-spawner")
        self.leftovers: list[str] = []

    # -- spawning (always from the one long-lived thread) --

    async def _spawn(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._spawner, fn)

    @property
    def dsn(self) -> str:
        assert self.postgres is not None, "PostgreSQL was not started"
        return self.postgres.dsn

    @property
    def temporal_address(self) -> str:
        assert self.temporal is not None, "Temporal was not started"
        return self.temporal.address

    def server_env(self) -> dict[str, str]:
        """PostgreSQL's and Temporal's: this process's, with the stack's marker."""
        return {**os.environ, MARK: self.mark}

    def child_env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "TEMPORAL_", "API_", "PAYLOAD_", "SUBJECT_"))
        }
        env.update(
            {
                MARK: self.mark,
                "RECTIFY_ENV": "development",
                "DATABASE_URL": self.dsn,
                "TEMPORAL_ADDRESS": self.temporal_address,
                "TEMPORAL_NAMESPACE": "default",
                "TASK_QUEUE": self.task_queue,
                "DATA_DIR": str(self.data_dir),
                "LOG_FORMAT": "console",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                **self.keys,
                **self.extra_env,
                **extra,
            }
        )
        return env

    # -- PostgreSQL --

    async def start_postgres(self, *, durable: bool = False) -> str:
        """Start (or start again, on the same data directory and port) PostgreSQL."""
        if self.postgres is None:
            self.postgres = EmbeddedPostgres(
                self.root / "pg" / "data", free_port(), database="rectify", durable=durable
            )
            await self._spawn(self._start_postgres)
            await migrate(self.postgres.dsn, REPO_ROOT / "migrations")
            await seed_calendar(self.postgres.dsn)  # as `rectify run` does after migrating
        else:
            await self._spawn(self._start_postgres)
        return self.postgres.dsn

    def _start_postgres(self) -> None:
        assert self.postgres is not None
        self.postgres.start(env=self.server_env())

    async def stop_postgres(self) -> None:
        """A fast shutdown (SIGINT): sessions rolled back, a checkpoint, exit."""
        assert self.postgres is not None
        await self._spawn(self.postgres.stop)

    # -- Temporal --

    async def start_temporal(self) -> str:
        """Start (or start again, on the same SQLite file and ports) the dev server."""
        if self.temporal is None:
            self.temporal = EmbeddedTemporal(
                self.root / "temporal" / "temporal.db", free_port(), free_port()
            )
        temporal = self.temporal
        await self._spawn(lambda: temporal.start(env=self.server_env()))
        return temporal.address

    async def kill_temporal(self) -> None:
        assert self.temporal is not None and self.temporal.process is not None
        await self.kill(self.temporal.process)

    async def client(self) -> Client:
        """A Temporal client with the stack's keys (the children's converter and codec)."""
        keyring = keyring_from_text(self.keys["PAYLOAD_KEYS"], self.keys["SUBJECT_HASH_KEY"])
        return await connect_temporal(self.temporal_address, keyring=keyring, wait_seconds=30)

    # -- workers and the API --

    def _log_of(self, name: str) -> Path:
        return self.root / f"{name}.log"

    async def start_worker(self, name: str = "worker", within: float = 60.0) -> ManagedProcess:
        """Start (or start again) the worker `name`; return once it polls its task queue."""
        process = self.workers.get(name)
        if process is None:
            process = ManagedProcess(
                name,
                [sys.executable, "-m", "worker"],
                env=self.child_env(),
                stop_timeout=10,
                log_path=self._log_of(name),
            )
            self.workers[name] = process
        offset = self._log_size(name)
        await self._spawn(process.start)
        await self._wait_log(process, "worker started", offset, within)
        return process

    async def start_all(self) -> None:
        """PostgreSQL, Temporal, one worker and the API: the stack most faults are tried on."""
        await self.start_postgres()
        await self.start_temporal()
        await self.start_worker()
        await self.start_api()

    async def start_api(self, within: float = 60.0) -> ManagedProcess:
        """Start (or start again, on the same port) the API; return once /health is 200."""
        if self.api is None:
            self.api = ManagedProcess(
                "api",
                [sys.executable, "-m", "api"],
                env=self.child_env(API_HOST="127.0.0.1", API_PORT=str(self.api_port)),
                stop_timeout=10,
                log_path=self._log_of("api"),
            )
        await self._spawn(self.api.start)
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.api_url) as http:
            while time.monotonic() < deadline:
                if not self.api.alive():
                    raise AssertionError(f"the API exited at start:\n{self.tail('api')}")
                if (await call(http, "GET", "/health", within=5)).status == 200:
                    return self.api
                await asyncio.sleep(0.2)
        raise AssertionError(f"the API was not healthy within {within} s:\n{self.tail('api')}")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def admin_key(self) -> str:
        """A new admin API key, as `rectify keys create` makes one."""
        conn = await asyncpg.connect(self.dsn)
        try:
            spec = KeySpec.checked("admin", None, "fault tests", "pytest")
            return (await ApiKeyRepository(conn).create(spec)).key
        finally:
            await conn.close()

    async def http(self, request_timeout: float = 45.0) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {await self.admin_key()}"}
        return httpx.AsyncClient(
            base_url=self.api_url,
            headers=headers,
            timeout=request_timeout,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    # -- faults --

    async def kill(self, process: ManagedProcess) -> None:
        """SIGKILL the process's whole group (it runs in a session of its own) and reap it."""
        popen = process.popen
        assert popen is not None and popen.poll() is None, f"{process.name} is not running"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        await asyncio.to_thread(popen.wait, 30)
        process.stop()  # only closes its log file now

    # -- logs --

    def _log_size(self, name: str) -> int:
        path = self._log_of(name)
        return path.stat().st_size if path.exists() else 0

    async def _wait_log(
        self, process: ManagedProcess, text: str, offset: int, within: float
    ) -> None:
        path = self._log_of(process.name)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not process.alive():
                raise AssertionError(f"{process.name} exited at start:\n{self.tail(process.name)}")
            with contextlib.suppress(OSError), path.open("rb") as log:
                log.seek(offset)
                if text.encode() in log.read():
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"{process.name} did not log {text!r} within {within} s:\n{self.tail(process.name)}"
        )

    def tail(self, name: str, chars: int = 3000) -> str:
        if name == "postgres":
            return log_tail(self.root / "pg" / "postgres.log", chars)
        if name == "temporal":
            return log_tail(self.root / "temporal" / "temporal.log", chars)
        return log_tail(self._log_of(name), chars)

    def unhandled(self, name: str, chars: int = 4000) -> str:
        """The process's log from its first 500 (`request failed`, `unhandled error`), if any."""
        text = log_tail(self._log_of(name), 10**9)
        marks = (text.find("request failed"), text.find("unhandled error"))
        at = min((at for at in marks if at >= 0), default=-1)
        return f"{name} log:\n{text[max(0, at - 200) : at + chars]}" if at >= 0 else ""

    # -- the end --

    async def close(self) -> None:
        """Stop every process (the API, the workers, Temporal, PostgreSQL), then make sure no
        process carrying this stack's marker survived: any found is killed and listed in
        `leftovers`."""
        stoppers: list[Callable[[], None]] = []
        if self.api is not None:
            stoppers.append(self.api.stop)
        stoppers += [worker.stop for worker in self.workers.values()]
        if self.temporal is not None:
            stoppers.append(self.temporal.stop)
        if self.postgres is not None:
            stoppers.append(self.postgres.stop)
        for stop in stoppers:
            with contextlib.suppress(Exception):
                await self._spawn(stop)
        self.leftovers = await asyncio.to_thread(self._kill_marked)
        self._spawner.shutdown(wait=True)

    def _kill_marked(self) -> list[str]:
        found: list[str] = []
        deadline = time.monotonic() + 10
        pids = {
            p.popen.pid
            for p in self._all_processes()
            if p is not None and p.popen is not None and p.popen.poll() is None
        }
        while True:
            marked = [*self._marked(), *(str(pid) for pid in pids if psutil.pid_exists(pid))]
            if not marked or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        for line in marked:
            found.append(line)
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        return found

    def _all_processes(self) -> Iterable[ManagedProcess | None]:
        yield self.api
        yield from self.workers.values()
        yield self.temporal.process if self.temporal else None
        yield self.postgres.process if self.postgres else None

    def _marked(self) -> list[str]:
        found = []
        for proc in psutil.process_iter(["pid", "name"]):
            try:
                if proc.environ().get(MARK) == self.mark and proc.status() != "zombie":
                    found.append(f"{proc.pid} {proc.info['name']}")
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found


# --- driving cases through the API ---------------------------------------------------------


@dataclass
class Drive:
    """What one case's drive saw."""

    case_id: str
    stage: str | None = None
    answers: Counter[str] = field(default_factory=Counter)
    resent: int = 0
    slowest_ok: float = 0.0  # the longest a 2xx answer took
    server_errors: list[str] = field(default_factory=list)  # 500s: never an answer to a fault
    done: bool = False

    def note(self, answer: Answer) -> None:
        self.answers[answer.describe()] += 1
        if answer.ok:
            self.slowest_ok = max(self.slowest_ok, answer.seconds)


class DriveFailed(AssertionError):
    pass


@dataclass
class ApiCaseDriver:
    """Open a case and take it along the main path to closed, through the HTTP API, whatever
    the outages: a command is sent again only when reading the case shows it did not move."""

    http: httpx.AsyncClient
    office: str
    interview_lead: float = 3.0
    give_up_after: float = 240.0
    drives: dict[str, Drive] = field(default_factory=dict)

    async def run(self, case_id: str) -> Drive:
        drive = self.drives.setdefault(case_id, Drive(case_id))
        give_up = time.monotonic() + self.give_up_after
        try:
            await self._open(drive, give_up)
            interview_at = datetime.now(UTC)
            for name, path, stage in MAIN_PATH:
                while True:
                    current = await self._stage(drive, give_up)
                    if _passed(current, stage):
                        break
                    if current != stage:
                        raise DriveFailed(f"{case_id}: at {current}, expected {stage} for {name}")
                    fields: dict[str, Any] = {}
                    if name == "schedule_interview":
                        at = datetime.now(UTC) + timedelta(seconds=self.interview_lead)
                        interview_at = max(interview_at, at)
                        fields["scheduled_for"] = at.isoformat()
                    elif name == "record_interview":
                        # Recorded once held: after the latest time it may have been set for.
                        ahead = (interview_at - datetime.now(UTC)).total_seconds()
                        await asyncio.sleep(max(0.0, ahead) + 0.3)
                    answer = await self._send(
                        drive, f"/cases/{case_id}/{path}", command_body(name, **fields), give_up
                    )
                    if answer.ok:
                        break
                    drive.resent += 1
                    if answer.status == 409:
                        await asyncio.sleep(0.3)  # refused: read where the case is, then decide
                    else:
                        await asyncio.sleep(answer.retry_after())
            await self._until_closed(drive, give_up)
            drive.done = True
            return drive
        except DriveFailed:
            raise
        except TimeoutError:
            raise DriveFailed(
                f"{case_id} did not close within {self.give_up_after:g} s: last stage "
                f"{drive.stage}, answers {dict(drive.answers)}"
            ) from None

    async def run_all(
        self, case_ids: list[str], *, spacing: float = 0.0, within: float = 180.0
    ) -> list[str]:
        """Drive every case (the n-th opened n * `spacing` s after the first); return why each
        one that did not close did not (empty: all closed), after at most `within` s."""

        async def one(n: int, case_id: str) -> None:
            await asyncio.sleep(n * spacing)
            await self.run(case_id)

        tasks = [asyncio.create_task(one(n, case_id)) for n, case_id in enumerate(case_ids)]
        _, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        failures = []
        for case_id, task in zip(case_ids, tasks, strict=True):
            drive = self.drives.get(case_id, Drive(case_id))
            if task.cancelled():
                failures.append(
                    f"{case_id} not closed within {within:g} s (at {drive.stage}, answers "
                    f"{dict(drive.answers)})"
                )
            elif (error := task.exception()) is not None:
                failures.append(f"{case_id}: {type(error).__name__}: {error}")
        return failures

    async def _open(self, drive: Drive, give_up: float) -> None:
        while True:
            body = case_body(drive.case_id, self.office)
            answer = await self._send(drive, "/cases", body, give_up)
            exists = answer.status == 409 and answer.problem_type.endswith("/case-exists")
            if answer.ok or exists:
                return
            if answer.status is not None and answer.status not in RETRY_STATUSES:
                raise DriveFailed(f"{drive.case_id}: opening answered {answer.describe()}")
            await asyncio.sleep(answer.retry_after())

    async def _until_closed(self, drive: Drive, give_up: float) -> None:
        """The last command's receipt says closed; the case's view too, once its run ends."""
        for _ in range(10_000):
            if await self._stage(drive, give_up) == CLOSED:
                return
            await asyncio.sleep(0.5)

    async def _stage(self, drive: Drive, give_up: float) -> str:
        while True:
            answer = await self._send(drive, f"/cases/{drive.case_id}", None, give_up, "GET")
            if answer.status == 200:
                drive.stage = str(answer.body["stage"])
                return drive.stage
            await asyncio.sleep(answer.retry_after())

    async def _send(
        self, drive: Drive, path: str, body: Any, give_up: float, method: str = "POST"
    ) -> Answer:
        left = give_up - time.monotonic()
        if left <= 0:
            raise TimeoutError
        answer = await call(self.http, method, path, body, within=min(45.0, left))
        drive.note(answer)
        if answer.status == 500:
            drive.server_errors.append(
                f"{method} {path} at {time.strftime('%H:%M:%S')}: {answer.body}"
            )
        if (
            answer.status is not None
            and answer.status >= 400
            and answer.status not in RETRY_STATUSES
            and answer.status not in (404, 409)
        ):
            raise DriveFailed(
                f"{drive.case_id}: {method} {path} answered {answer.status}: {answer.body}"
            )
        return answer

    def answer_counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for drive in self.drives.values():
            total.update(drive.answers)
        return total

    def server_errors(self) -> list[str]:
        return [error for drive in self.drives.values() for error in drive.server_errors]

    def figures(self) -> dict[str, Any]:
        """The drives' HTTP answers, commands sent again, and the slowest 2xx."""
        return {
            "HTTP answers": dict(self.answer_counts()),
            "commands sent again": sum(d.resent for d in self.drives.values()),
            "slowest 2xx s": round(max((d.slowest_ok for d in self.drives.values()), default=0), 1),
        }


def _passed(current: str, stage: str) -> bool:
    """The case is past `stage` on the main path."""
    if current == CLOSED:
        return True
    return current in STAGES and STAGES.index(current) > STAGES.index(stage)


# --- what PostgreSQL holds ------------------------------------------------------------------


@dataclass
class Records:
    """The register, audit trail and documents of a set of cases, checked."""

    cases: int
    not_closed: list[str]
    audit_rows: int
    duplicate_audit: list[str]
    wrong_trails: list[str]
    documents: int
    duplicate_documents: list[str]
    wrong_documents: list[str]
    series_gaps: list[str]

    @property
    def duplicates(self) -> int:
        return len(self.duplicate_audit) + len(self.duplicate_documents)

    def problems(self) -> list[str]:
        found = []
        for label, items in (
            ("not closed (rectified)", self.not_closed),
            ("audit rows recorded twice", self.duplicate_audit),
            ("audit trails not the main path", self.wrong_trails),
            ("documents issued twice", self.duplicate_documents),
            ("documents not the main path's", self.wrong_documents),
            ("document series with gaps or repeats", self.series_gaps),
        ):
            if items:
                shown = ", ".join(items[:10]) + (" …" if len(items) > 10 else "")
                found.append(f"{len(items)} {label}: {shown}")
        return found

    def figures(self) -> dict[str, int]:
        """What a fault's report says of the cases: closed, lost, duplicated, gapped."""
        return {
            "cases": self.cases,
            "closed": self.cases - len(self.not_closed),
            "lost": len(self.not_closed),
            "duplicate audit rows": len(self.duplicate_audit),
            "duplicate documents": len(self.duplicate_documents),
            "series with gaps": len(self.series_gaps),
        }

    def summary(self) -> str:
        return (
            f"{self.cases} cases, {len(self.not_closed)} not closed, {self.audit_rows} audit rows "
            f"({len(self.duplicate_audit)} duplicated), {self.documents} documents "
            f"({len(self.duplicate_documents)} duplicated, {len(self.series_gaps)} series with "
            "gaps)"
        )


async def check_records(dsn: str, case_ids: list[str]) -> Records:
    """Read the register, the audit trail and the documents of `case_ids` from PostgreSQL."""
    conn = await asyncpg.connect(dsn)
    try:
        closed = {
            r["case_id"]
            for r in await conn.fetch(
                "SELECT case_id FROM cases WHERE case_id = ANY($1::text[])"
                " AND closed_at IS NOT NULL AND outcome = 'rectified' AND stage = 'closed'",
                case_ids,
            )
        }
        audit = await conn.fetch(
            "SELECT case_id, action, seq FROM case_audit WHERE case_id = ANY($1::text[])"
            " ORDER BY case_id, seq",
            case_ids,
        )
        documents = await conn.fetch(
            "SELECT case_id, kind, number FROM documents WHERE case_id = ANY($1::text[])"
            " ORDER BY case_id, id",
            case_ids,
        )
        # Every series of the documents these cases hold, whole: 1..n, each once, and the
        # counter at n.
        series = await conn.fetch(
            """
            SELECT d.office, d.year, d.kind, count(*) AS n,
                   count(DISTINCT d.sequence) AS distinct_n,
                   min(d.sequence) AS lo, max(d.sequence) AS hi, s.last_sequence
              FROM documents d
              JOIN document_series s USING (office, year, kind)
             WHERE (d.office, d.year, d.kind) IN (
                   SELECT office, year, kind FROM documents WHERE case_id = ANY($1::text[]))
             GROUP BY d.office, d.year, d.kind, s.last_sequence
            """,
            case_ids,
        )
    finally:
        await conn.close()
    trails: dict[str, list[str]] = {case_id: [] for case_id in case_ids}
    for row in audit:
        trails[row["case_id"]].append(row["action"])
    issued: dict[str, list[str]] = {case_id: [] for case_id in case_ids}
    for row in documents:
        issued[row["case_id"]].append(row["kind"])
    duplicate_audit = [
        f"{case_id}:{action} x{n}"
        for case_id, trail in trails.items()
        for action, n in Counter(trail).items()
        if n > 1
    ]
    duplicate_documents = [
        f"{case_id}:{kind} x{n}"
        for case_id, kinds in issued.items()
        for kind, n in Counter(kinds).items()
        if n > 1
    ]
    gaps = [
        f"{r['office']}/{r['year']}/{r['kind']}: {r['n']} documents, {r['distinct_n']} numbers "
        f"{r['lo']}..{r['hi']}, counter {r['last_sequence']}"
        for r in series
        if not (r["n"] == r["distinct_n"] == r["hi"] == r["last_sequence"] and r["lo"] == 1)
    ]
    return Records(
        cases=len(case_ids),
        not_closed=sorted(set(case_ids) - closed),
        audit_rows=len(audit),
        duplicate_audit=duplicate_audit,
        wrong_trails=[
            f"{case_id}: {trail}"
            for case_id, trail in trails.items()
            if tuple(trail) != AUDIT_TRAIL
        ],
        documents=len(documents),
        duplicate_documents=duplicate_documents,
        wrong_documents=[
            f"{case_id}: {kinds}" for case_id, kinds in issued.items() if tuple(kinds) != DOCUMENTS
        ],
        series_gaps=gaps,
    )


# --- what Temporal's histories show ---------------------------------------------------------

TIMED_OUT = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "workflow tasks timed out",
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "workflow tasks failed",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activities timed out",
}


async def history_counts(client: Client, workflow_ids: Iterable[str]) -> Counter[str]:
    """How often the histories of `workflow_ids` show a task lost to a fault."""
    counts: Counter[str] = Counter()
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            if event.event_type in TIMED_OUT:
                counts[TIMED_OUT[event.event_type]] += 1
    return counts


async def wait_until(
    what: str, predicate: Callable[[], bool], seconds: float, every: float = 0.05
) -> None:
    """Return once `predicate()` holds; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    for _ in range(10**9):
        if predicate():
            return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(every)
    raise AssertionError(f"{what} did not happen within {seconds:g} s")


async def bounded(what: str, awaitable: Any, seconds: float) -> Any:
    """Await, or fail naming what did not happen in time."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {seconds:g} s") from None
