"""Detections and case openings through the API, beside bare PostgreSQL and bare Temporal.

    .venv/bin/python -m bench.ingest [--quick] [--one-subject 100000] [--subjects 10000]
        [--per-subject 10] [--openings 1000] [--concurrency 4] [--batch 500] [--api-workers 1]

One durable embedded PostgreSQL (migrated, calendar seeded) and one Temporal dev server (in
memory) carry everything; the real API (uvicorn serving `api.app:create_app`, one process per
`--api-workers`, settings from the environment as `python -m api` reads them) and the real worker
(`python -m worker`) each run as a process of their own. The driver calls the API as an
enforcement system would: httpx, HTTP/1.1 keep-alive, `--concurrency` requests of `--batch`
events in flight. It honours 429: an item (or a whole request) refused is sent again, in a later
batch, once its Retry-After has passed; refusals are counted and reported.

1. Detections/s, two workloads, the same rows in the same order and batches for every arm:
   (a) one subject x `--one-subject` detections (its case opened beforehand by one detection:
   every timed one joins it); (b) `--subjects` subjects x `--per-subject` detections, shuffled
   (seeded), so the first of each subject opens its case and the rest join. Arms:
   - API: `POST /events/batch`;
   - bare, the denominator: `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` of the
     same rows (the inbox's columns and values: the event as the API stores it, its hash,
     route and case id), one multi-row statement per batch — the statement the batch route
     itself ends with — into a plain table of the inbox's shape with only its primary and
     unique key, from as many connections as requests in flight;
   - diagnostics (`--no-diagnostics` skips them), to say where the difference goes: asyncpg
     `executemany` per batch (one pipeline and transaction, one INSERT per row); the multi-row
     INSERT into a table with the inbox's three other indexes; the inbox's own SQL called from
     this process, no HTTP and no Temporal, in a second database: `DetectionInbox.record` one
     detection at a time (POST /events's statement, `BATCH_CONCURRENCY` in flight per batch)
     and `DetectionInbox.record_many` per batch (the batch route's statements).
   Bare arms run before the API arm of each workload, so the worker is idle under them.
2. Case openings/s: `--openings` events through `/events/batch`, each a new subject, beside
   `client.start_workflow` of the same workflow inputs (the API's own `OpenCaseInput`, `CaseRun`,
   id and id policies, search attributes), as many starts in flight as the API can have
   (`--concurrency` x `BATCH_CONCURRENCY`), onto the same worker's task queue, in
   `--opening-rounds` rounds whose order alternates (starts slow down as the server fills, so
   the arm that always went second would lose). Accepted/s is the caller's view; registered/s
   (each case's row in `cases`, written by the worker's opening) the end to end figure,
   reported for both arms and for (b).
3. After (a): the case's Temporal history (events of the latest run, the number of runs by
   `continued_execution_run_id`, signals), and a command it must still take
   (`POST /cases/{id}/filing-decision`, the procedure table's example body), with its answer.

CPU seconds per process (API, worker and its interpreter thread, PostgreSQL, Temporal, this
driver) are printed per arm, from psutil (PostgreSQL backends that ended during an arm are not
counted); `--py-spy DIR` adds where the API and the worker spend it. Figures, not pass/fail: the
issue's targets are printed beside them. Never part of `make test`. The default sizes take long
on a 2-core machine: (b) opens 10,000 cases, at the worker's pace (~15-25 cases/s there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import psutil

from wiring.keys import Keyring, keyring_from_text

if TYPE_CHECKING:
    from fastapi import FastAPI
    from temporalio.client import Client

OFFICE = "beijing"
CATEGORY = "prohibited_information"
SEED = 8
TARGET_JOINS_PER_S = 1000.0
TARGET_BARE_RATIO = 0.5
TARGET_OPENING_RATIO = 0.8
ITEM_RETRY_AFTER_S = 5.0  # a refused item whose problem names no wait (not expected)
UNAVAILABLE_RETRY_S = 1.0  # an item answered 503 (its case did not start): sent again
REQUEST_TIMEOUT_S = 300.0
MAX_SERVER_ERRORS = 100  # whole requests answered 5xx in one arm before the bench gives up

_COLUMNS = (
    "idempotency_key, office, violation_category, subject_key, generation, case_id, opens,"
    " body_hash, event, acting_key"
)
_SHAPE = """
CREATE TABLE {table} (
    id                  bigserial PRIMARY KEY,
    idempotency_key     text NOT NULL UNIQUE,
    office              text NOT NULL,
    violation_category  text NOT NULL,
    subject_key         text NOT NULL,
    generation          integer NOT NULL CHECK (generation >= 1),
    case_id             text NOT NULL,
    opens               boolean NOT NULL,
    body_hash           text NOT NULL,
    event               jsonb NOT NULL,
    acting_key          text,
    received_at         timestamptz NOT NULL DEFAULT now()
)
"""
# The inbox's other indexes (migrations/0007_detections_inbox.sql).
_INBOX_INDEXES = """
CREATE UNIQUE INDEX {table}_one_opener_idx ON {table} (case_id) WHERE opens;
CREATE INDEX {table}_route_idx
    ON {table} (office, violation_category, subject_key, generation DESC);
CREATE INDEX {table}_case_idx ON {table} (case_id, id);
"""
PLAIN, PLAIN2, INDEXED = "bench_ingest_plain", "bench_ingest_plain2", "bench_ingest_indexed"


def _bench_keyring() -> Keyring:
    """The payload codec costs what it costs in production: fresh keys, or a parent's."""
    if os.environ.get("PAYLOAD_KEYS") and os.environ.get("SUBJECT_HASH_KEY"):
        return keyring_from_text(os.environ["PAYLOAD_KEYS"], os.environ["SUBJECT_HASH_KEY"])
    return Keyring.generate()


BENCH_KEYRING = _bench_keyring()


def _insert(table: str) -> str:
    return (
        f"INSERT INTO {table} ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT DO NOTHING"
    )


# --- The API process (uvicorn's factory) -------------------------------------------------------


def api_app() -> FastAPI:
    """`uvicorn bench.ingest:api_app --factory`: `python -m api`'s app and logging, for uvicorn's
    CLI (which can run several worker processes)."""
    from api.app import create_app
    from wiring.logs import configure_logging
    from wiring.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings)


# --- Workloads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A detection as the inbox row holds it (what every bare arm inserts)."""

    key: str
    subject_key: str
    case_id: str
    opens: bool
    digest: str
    body: dict[str, Any]

    def values(self, acting_key: str) -> tuple[Any, ...]:
        return (
            self.key,
            OFFICE,
            CATEGORY,
            self.subject_key,
            1,
            self.case_id,
            self.opens,
            self.digest,
            self.body,
            acting_key,
        )


@dataclass
class Workload:
    name: str
    events: list[dict[str, Any]]
    batch: int
    rows: list[Row] = field(default_factory=list)

    def batches(self) -> list[list[dict[str, Any]]]:
        return [self.events[i : i + self.batch] for i in range(0, len(self.events), self.batch)]

    def row_batches(self) -> list[list[Row]]:
        return [self.rows[i : i + self.batch] for i in range(0, len(self.rows), self.batch)]

    @property
    def subjects(self) -> int:
        return len({e["subject"]["identifiers"]["domain"] for e in self.events})


def detection(key: str, domain: str, n: int) -> dict[str, Any]:
    """One detection as a monitoring system sends it (the shape of api/routes/events.py's
    example)."""
    return {
        "idempotency_key": key,
        "type": "violation_detected",
        "source": "monitoring",
        "occurred_at": "2026-11-28T09:30:00+08:00",
        "payload": {"url": f"https://{domain}/item/{n}", "evidence": f"snapshot-{n}"},
        "subject": {"kind": "website", "name": "Bench News", "identifiers": {"domain": domain}},
        "violation_category": CATEGORY,
        "legal_basis": "Cybersecurity Law art. 61",
        "office": OFFICE,
    }


def with_rows(workload: Workload) -> Workload:
    """The inbox rows of the workload's events, computed as the API computes them."""
    from api.intake import body_hash, subject_key
    from api.routes.events import EventIn

    seen: set[str] = set()
    for raw in workload.events:
        event = EventIn.model_validate(raw)
        body = event.body()
        subject = subject_key(event.subject)
        workload.rows.append(
            Row(
                key=event.idempotency_key,
                subject_key=subject,
                case_id=BENCH_KEYRING.case_prefix(OFFICE, CATEGORY, subject) + "-1",
                opens=subject not in seen,
                digest=body_hash(body),
                body=body,
            )
        )
        seen.add(subject)
    return workload


def one_subject(run: str, count: int, batch: int) -> tuple[Workload, str]:
    domain = f"one-{run}.bench.example.cn"
    events = [detection(f"{run}-a-{n}", domain, n) for n in range(count)]
    return with_rows(Workload(f"(a) 1 subject x {count}", events, batch)), domain


def many_subjects(run: str, subjects: int, each: int, batch: int) -> Workload:
    events = [
        detection(f"{run}-b-{s}-{n}", f"s{s}-{run}.bench.example.cn", n)
        for s in range(subjects)
        for n in range(each)
    ]
    random.Random(SEED).shuffle(events)
    name = f"(b) {subjects} subjects x {each}"
    return with_rows(Workload(name, events, batch))


def new_subjects(run: str, tag: str, count: int, batch: int) -> Workload:
    events = [
        detection(f"{run}-{tag}-{n}", f"{tag}{n}-{run}.bench.example.cn", 0) for n in range(count)
    ]
    return Workload(f"{count} new subjects", events, batch)


# --- Processes and their CPU ---------------------------------------------------------------------


class Meter:
    """CPU seconds (user + system) of each process group, read from outside with psutil: a
    process alone ("self"), with its children ("tree"), or only its main thread ("main": a
    Python process's interpreter thread, where its GIL work is; the rest is the SDK's Rust
    core and libraries' threads)."""

    def __init__(self, groups: dict[str, tuple[int, str]]) -> None:
        self.groups = groups  # name → (pid, "self" | "tree" | "main")

    @staticmethod
    def _cpu(pid: int, mode: str) -> dict[int, float]:
        try:
            root = psutil.Process(pid)
            if mode == "main":
                return {t.id: t.user_time + t.system_time for t in root.threads() if t.id == pid}
            processes = [root, *(root.children(recursive=True) if mode == "tree" else [])]
        except psutil.NoSuchProcess:
            return {}
        figures: dict[int, float] = {}
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            figures[process.pid] = times.user + times.system
        return figures

    def read(self) -> dict[str, dict[int, float]]:
        return {name: self._cpu(pid, mode) for name, (pid, mode) in self.groups.items()}

    @staticmethod
    def spent(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
    ) -> dict[str, float]:
        """CPU seconds between two readings, per group (processes alive at the second)."""
        return {
            name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in after.items()
        }


def temporal_pid() -> int:
    """The dev server the SDK started: a child of this process running `server start-dev`."""
    for child in psutil.Process().children(recursive=True):
        try:
            if "start-dev" in child.cmdline():
                return child.pid
        except psutil.Error:
            continue
    raise RuntimeError("the Temporal dev server process was not found")


async def wait_http_ready(http: httpx.AsyncClient, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the API process exited at start: see its log")
        try:
            if (await http.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the API did not answer /health within 90 s")


# --- Sending through the API ---------------------------------------------------------------------


@dataclass
class Tally:
    """What the API answered, item by item, over one arm."""

    requests: int = 0
    opened: int = 0
    joined: int = 0
    duplicate: int = 0
    refused: int = 0  # item answers 429 (each sent again after its Retry-After)
    refused_keys: set[str] = field(default_factory=set)
    refused_requests: int = 0  # whole requests answered 429
    unavailable: int = 0  # item answers 503 (sent again)
    waits: list[float] = field(default_factory=list)  # the Retry-After of each refused answer
    server_errors: Counter[int] = field(default_factory=Counter)  # whole requests 5xx, re-sent
    first_server_error: str | None = None
    failed: Counter[int] = field(default_factory=Counter)
    first_failure: str | None = None
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    last_accept: float = 0.0  # seconds from the arm's start to its last accepted item
    cpu: dict[str, float] = field(default_factory=dict)
    registered: int = 0  # cases the worker registered (openings only)
    registered_s: float = 0.0  # from the arm's start to the last of them

    @property
    def accepted(self) -> int:
        return self.opened + self.joined + self.duplicate

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


_SECONDS = re.compile(r"(\d+(?:\.\d+)?) s\b")


def item_retry_after(problem: dict[str, Any]) -> float:
    """The wait a refused item's problem names: `retry_after_s`, or the seconds in its detail
    (a batch item carries no headers)."""
    if isinstance(problem.get("retry_after_s"), int | float):
        return float(problem["retry_after_s"])
    found = _SECONDS.findall(str(problem.get("detail", "")))
    return float(found[-1]) if found else ITEM_RETRY_AFTER_S


def header_retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", ITEM_RETRY_AFTER_S))
    except ValueError:
        return ITEM_RETRY_AFTER_S


async def send_all(
    http: httpx.AsyncClient, batches: Sequence[list[dict[str, Any]]], concurrency: int, size: int
) -> Tally:
    """Every batch through `/events/batch`, `concurrency` requests in flight. Refused items wait
    for their Retry-After and go again in later batches (of up to `size`), ahead of fresh ones."""
    loop = asyncio.get_running_loop()
    fresh = deque((events, json.dumps({"events": events}).encode()) for events in batches)
    deferred: list[tuple[float, int, dict[str, Any]]] = []  # (not before, order, event)
    order = itertools.count()
    tally = Tally()
    busy = 0
    started = loop.time()

    def defer(events: Iterable[dict[str, Any]], seconds: float) -> None:
        at = loop.time() + seconds
        for event in events:
            heapq.heappush(deferred, (at, next(order), event))

    def take() -> tuple[list[dict[str, Any]], bytes] | None:
        now = loop.time()
        ready: list[dict[str, Any]] = []
        while deferred and deferred[0][0] <= now and len(ready) < size:
            ready.append(heapq.heappop(deferred)[2])
        if ready:
            return ready, json.dumps({"events": ready}).encode()
        return fresh.popleft() if fresh else None

    async def post(events: list[dict[str, Any]], content: bytes) -> None:
        sent = time.perf_counter()
        response = await http.post(
            "/events/batch", content=content, headers={"Content-Type": "application/json"}
        )
        tally.latencies.append(time.perf_counter() - sent)
        tally.requests += 1
        if response.status_code == 429:
            tally.refused_requests += 1
            tally.waits.append(header_retry_after(response))
            defer(events, tally.waits[-1])
            return
        if response.status_code >= 500:
            # Every item counts once by its key, so the batch may go again, as a caller would.
            tally.server_errors[response.status_code] += 1
            tally.first_server_error = tally.first_server_error or response.text[:300]
            if sum(tally.server_errors.values()) > MAX_SERVER_ERRORS:
                raise RuntimeError(f"/events/batch kept failing: {tally.first_server_error}")
            defer(events, header_retry_after(response) if "Retry-After" in response.headers else 1)
            return
        if response.status_code != 200:
            raise RuntimeError(f"/events/batch answered {response.status_code}: {response.text}")
        for item in response.json()["results"]:
            event, status = events[item["index"]], item["status"]
            if status in (200, 201):
                result = item["receipt"]["result"]
                setattr(tally, result, getattr(tally, result) + 1)
                tally.last_accept = loop.time() - started
            elif status == 429:
                tally.refused += 1
                tally.refused_keys.add(event["idempotency_key"])
                tally.waits.append(item_retry_after(item["problem"]))
                defer([event], tally.waits[-1])
            elif status == 503:
                tally.unavailable += 1
                defer([event], UNAVAILABLE_RETRY_S)
            else:
                tally.failed[status] += 1
                tally.first_failure = tally.first_failure or json.dumps(item["problem"])

    async def sender() -> None:
        nonlocal busy
        while True:
            work = take()
            if work is None:
                if not deferred and busy == 0:
                    return
                wait = deferred[0][0] - loop.time() if deferred else 0.05
                await asyncio.sleep(min(max(wait, 0.01), 0.5))
                continue
            busy += 1
            try:
                await post(*work)
            finally:
                busy -= 1

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    tally.wall = loop.time() - started
    return tally


# --- Bare arms -----------------------------------------------------------------------------------


@dataclass
class Timed:
    rows: int
    wall: float
    cpu: dict[str, float] = field(default_factory=dict)
    registered: int = 0
    registered_s: float = 0.0
    deadlocks: int = 0  # batches that failed (deadlock, routing given up) and ran again

    @property
    def rate(self) -> float:
        return self.rows / self.wall


async def bare_executemany(
    pool: asyncpg.Pool, table: str, batches: list[list[Row]], concurrency: int, acting: str
) -> Timed:
    """One `executemany` per batch (one pipeline, one transaction), `concurrency` at once."""
    queue = deque(batches)
    statement = _insert(table)

    async def connection() -> None:
        async with pool.acquire() as conn:
            while queue:
                batch = queue.popleft()
                await conn.executemany(statement, [row.values(acting) for row in batch])

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return Timed(sum(map(len, batches)), time.perf_counter() - started)


def _insert_many(table: str) -> str:
    """The inbox's own multi-row INSERT (api/intake.py), into `table`."""
    return f"""
INSERT INTO {table} ({_COLUMNS})
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::boolean[],
    $8::text[], $9::jsonb[], $10::text[]
)
ON CONFLICT DO NOTHING
RETURNING idempotency_key, id
"""


async def bare_multirow(
    pool: asyncpg.Pool, table: str, batches: list[list[Row]], concurrency: int, acting: str
) -> Timed:
    """One multi-row `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING` per
    batch (one statement, one commit), `concurrency` at once: the statement the batch route
    ends with, without the routing before it."""
    queue = deque(batches)
    statement = _insert_many(table)

    async def connection() -> None:
        async with pool.acquire() as conn:
            while queue:
                rows = [row.values(acting) for row in queue.popleft()]
                await conn.fetch(statement, *[list(column) for column in zip(*rows, strict=True)])

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return Timed(sum(map(len, batches)), time.perf_counter() - started)


def sighting(row: Row, acting: str) -> Any:
    from api.intake import Sighting

    return Sighting(
        key=row.key,
        office=OFFICE,
        category=CATEGORY,
        subject=row.subject_key,
        event=row.body,
        acting_key=acting,
        may_open=True,
    )


async def inbox_one_by_one(
    pool: asyncpg.Pool, batches: list[list[Row]], concurrency: int, per_batch: int, acting: str
) -> Timed:
    """`DetectionInbox.record` (POST /events's one routing statement) for each row,
    `per_batch` in flight within each of `concurrency` batches: what recording costs when
    every detection is its own statement and commit (no HTTP, validation or Temporal)."""
    from api.intake import DetectionInbox

    inbox = DetectionInbox(pool, BENCH_KEYRING)
    queue = deque(batches)

    async def batch_loop() -> None:
        while queue:
            gate = asyncio.Semaphore(per_batch)

            async def one(row: Row, gate: asyncio.Semaphore = gate) -> None:
                async with gate:
                    await inbox.record(sighting(row, acting))

            await asyncio.gather(*(one(row) for row in queue.popleft()))

    started = time.perf_counter()
    await asyncio.gather(*(batch_loop() for _ in range(concurrency)))
    return Timed(sum(map(len, batches)), time.perf_counter() - started)


async def inbox_batches(
    pool: asyncpg.Pool, batches: list[list[Row]], concurrency: int, acting: str
) -> Timed:
    """`DetectionInbox.record_many` (the batch route's statements) per batch, `concurrency`
    at once: the route's SQL without HTTP, validation and Temporal. Other keys and subjects
    than `inbox_one_by_one`'s (same database), so it does the same work."""
    from api.intake import DetectionInbox

    inbox = DetectionInbox(pool, BENCH_KEYRING)
    queue = deque(batches)

    def renamed(row: Row) -> Row:
        return Row(
            row.key + "~b", row.subject_key + "~b", row.case_id, row.opens, row.digest, row.body
        )

    deadlocks = 0

    async def batch_loop() -> None:
        nonlocal deadlocks
        while queue:
            sightings = [sighting(renamed(row), acting) for row in queue.popleft()]
            while True:
                try:
                    await inbox.record_many(sightings)
                    break
                except (asyncpg.DeadlockDetectedError, RuntimeError):
                    # Deadlocked, or routing lost to concurrent openers too often: what the
                    # route answers 500 for. Count it and go again.
                    deadlocks += 1
                    await asyncio.sleep(0.05)

    started = time.perf_counter()
    await asyncio.gather(*(batch_loop() for _ in range(concurrency)))
    timed = Timed(sum(map(len, batches)), time.perf_counter() - started)
    timed.deadlocks = deadlocks
    return timed


async def bare_starts(
    client: Client, task_queue: str, workload: Workload, in_flight: int, acting: str
) -> Timed:
    """`start_workflow` of exactly what the API starts for each event's opening."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from api.routes.events import EventIn, _opening
    from domain.case import CaseRun
    from domain.models import case_workflow_id
    from workflows.case import CaseWorkflow
    from workflows.search import case_search_attributes

    # The inputs, as the API builds them (outside the timing: the API's share is in its arm).
    openings = []
    for raw in workload.events:
        event = EventIn.model_validate(raw).model_copy(update={"acting_key": acting})
        case_id = "BS-" + raw["idempotency_key"]  # the register counts them apart
        openings.append(_opening(event, case_id))
    queue = deque(openings)

    async def starter() -> None:
        while queue:
            opened = queue.popleft()
            await client.start_workflow(
                CaseWorkflow.run,
                CaseRun.of(opened),
                id=case_workflow_id(opened.case_id),
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=case_search_attributes(
                    opened, BENCH_KEYRING.subject_digests(opened.subject.identifiers)
                ),
            )

    started = time.perf_counter()
    await asyncio.gather(*(starter() for _ in range(in_flight)))
    return Timed(len(openings), time.perf_counter() - started)


def split(total: int, parts: int) -> list[int]:
    """`total` in `parts` near-equal chunks (none empty)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def summed(values: Iterable[dict[str, float]]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for value in values:
        total.update(value)
    return dict(total)


def merged_tally(chunks: Sequence[Tally]) -> Tally:
    """Rounds of one arm as one: counts, walls, registration times and CPU added up."""
    merged = Tally()
    for chunk in chunks:
        for name in ("requests", "opened", "joined", "duplicate", "refused", "refused_requests"):
            setattr(merged, name, getattr(merged, name) + getattr(chunk, name))
        merged.unavailable += chunk.unavailable
        merged.refused_keys |= chunk.refused_keys
        merged.failed.update(chunk.failed)
        merged.server_errors.update(chunk.server_errors)
        merged.first_server_error = merged.first_server_error or chunk.first_server_error
        merged.first_failure = merged.first_failure or chunk.first_failure
        merged.waits += chunk.waits
        merged.latencies += chunk.latencies
        merged.wall += chunk.wall
        merged.registered += chunk.registered
        merged.registered_s += chunk.registered_s
    merged.cpu = summed(chunk.cpu for chunk in chunks)
    return merged


def merged_timed(chunks: Sequence[Timed]) -> Timed:
    return Timed(
        sum(chunk.rows for chunk in chunks),
        sum(chunk.wall for chunk in chunks),
        summed(chunk.cpu for chunk in chunks),
        sum(chunk.registered for chunk in chunks),
        sum(chunk.registered_s for chunk in chunks),
    )


# --- Waiting for the worker ----------------------------------------------------------------------


async def registered_count(pool: asyncpg.Pool, like: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM cases WHERE case_id LIKE $1", like))


async def wait_registered(
    pool: asyncpg.Pool, like: str, expected: int, started: float, within: float
) -> tuple[int, float]:
    """(cases registered, seconds from `started` (perf_counter) to the last one or the limit)."""
    deadline = time.perf_counter() + within
    count = await registered_count(pool, like)
    while count < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        count = await registered_count(pool, like)
    return count, time.perf_counter() - started


async def wait_quiet(meter: Meter, name: str, within: float) -> float:
    """Wait (at most `within` s) until process group `name` spends under 10 % of a core; the
    seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < within:
        before = meter.read()
        await asyncio.sleep(2.0)
        if Meter.spent(before, meter.read()).get(name, 0.0) < 0.2:
            break
    return time.perf_counter() - started


async def settle(meter: Meter, within: float, signal_interval: float) -> None:
    """After an arm that opened cases: their coalesced news sent (one interval), and the
    worker quiet again, before anything else is measured."""
    await asyncio.sleep(signal_interval + 1)
    await wait_quiet(meter, "worker", within)


# --- The case after (a) -------------------------------------------------------------------------


@dataclass
class CaseShape:
    latest_events: int
    runs: int
    all_events: int
    signals: int


async def case_shape(client: Client, workflow_id: str) -> CaseShape:
    from temporalio.api.enums.v1 import EventType

    def signals(events: Sequence[Any]) -> int:
        kind = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        return sum(1 for event in events if event.event_type == kind)

    history = await client.get_workflow_handle(workflow_id).fetch_history()
    shape = CaseShape(len(history.events), 1, len(history.events), signals(history.events))
    attributes = history.events[0].workflow_execution_started_event_attributes
    previous = attributes.continued_execution_run_id
    while previous:
        earlier = await client.get_workflow_handle(workflow_id, run_id=previous).fetch_history()
        shape.runs += 1
        shape.all_events += len(earlier.events)
        shape.signals += signals(earlier.events)
        started = earlier.events[0].workflow_execution_started_event_attributes
        previous = started.continued_execution_run_id
    return shape


@dataclass
class CaseSample:
    """Means over a sample of an arm's cases: what the detections did to their histories."""

    cases: int
    events: float
    signals: float
    runs: int  # the most runs any had


async def sample_cases(client: Client, case_ids: Sequence[str], size: int = 20) -> CaseSample:
    from domain.models import case_workflow_id

    chosen = random.Random(SEED).sample(list(case_ids), min(size, len(case_ids)))
    shapes = [await case_shape(client, case_workflow_id(case_id)) for case_id in chosen]
    return CaseSample(
        len(shapes),
        statistics.mean(shape.all_events for shape in shapes),
        statistics.mean(shape.signals for shape in shapes),
        max(shape.runs for shape in shapes),
    )


def case_id_of(event: dict[str, Any]) -> str:
    domain = event["subject"]["identifiers"]["domain"]
    return BENCH_KEYRING.case_prefix(OFFICE, CATEGORY, f"domain={domain}") + "-1"


class Spy:
    """`--py-spy DIR`: py-spy (found on PATH) records the API and the worker during each API
    arm and the bare openings, as collapsed stacks (`DIR/{arm}-{process}.txt`); the report
    prints the frames that took most samples."""

    def __init__(self, directory: str | None, pids: dict[str, int]) -> None:
        self.directory, self.pids = directory, pids
        self.binary = shutil.which("py-spy") if directory else None
        if directory and self.binary is None:
            raise SystemExit("--py-spy: no py-spy on PATH")
        self.files: list[Path] = []

    @contextlib.contextmanager
    def recording(self, arm: str) -> Iterator[None]:
        if self.binary is None or self.directory is None:
            yield
            return
        spies = []
        for name, pid in self.pids.items():
            output = Path(self.directory) / f"{arm}-{name}.txt"
            self.files.append(output)
            argv = [self.binary, "record", "--pid", str(pid), "--format", "raw"]
            argv += ["--output", str(output), "--rate", "50", "--subprocesses", "--nonblocking"]
            spies.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        try:
            yield
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                try:
                    spy.wait(60)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()


_GENERIC_FRAMES = re.compile(
    r"^process |\((asyncio/|click/|<frozen |uvicorn/(main|_compat|server)\.py|threading\.py|"
    r"selectors\.py|concurrent/)"
)


def top_frames(
    path: Path, count: int = 15
) -> tuple[int, list[tuple[float, str]], list[tuple[float, str]]]:
    """(samples, [(share, function)] on most sampled stacks, [(share, function)] most often
    the running one) from a py-spy raw file (`frame;frame;… samples` a line); the first list
    leaves out the event loop's, the CLI's and the interpreter's own frames."""
    total = 0
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        total += int(samples)
        # "function (module/file.py:line)" → "function (module/file.py)"
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        leaf[frames[-1]] += int(samples)
        for function in set(frames):
            inclusive[function] += int(samples)
    if not total:
        return 0, [], []
    ranked = [f for f, _ in inclusive.most_common() if not _GENERIC_FRAMES.search(f)]
    return (
        total,
        [(inclusive[f] / total, f) for f in ranked[:count]],
        [(n / total, f) for f, n in leaf.most_common(count)],
    )


# --- The run -------------------------------------------------------------------------------------


@dataclass
class Results:
    ingest: dict[str, dict[str, Any]] = field(default_factory=dict)  # workload → arm → figures
    workloads: dict[str, Workload] = field(default_factory=dict)
    samples: dict[str, CaseSample] = field(default_factory=dict)
    spy_files: list[Path] = field(default_factory=list)
    case: dict[str, Any] = field(default_factory=dict)
    openings: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)


async def create_key(dsn: str, role: str, label: str) -> tuple[str, str]:
    """A new key (role, OFFICE) as `rectify keys create` makes one: (key, its prefix)."""
    from wiring.api_keys import ApiKeyRepository, KeySpec

    conn = await asyncpg.connect(dsn)
    try:
        created = await ApiKeyRepository(conn).create(KeySpec.checked(role, OFFICE, label, "bench"))
        return created.key, created.record.prefix
    finally:
        await conn.close()


async def prepare(dsn: str, direct_db: str | None) -> str | None:
    from activities.calendar import seed_calendar
    from wiring.migrate import migrate
    from wiring.settings import REPO_ROOT

    await migrate(dsn, REPO_ROOT / "migrations")
    await seed_calendar(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_SHAPE.format(table=PLAIN))
        await conn.execute(_SHAPE.format(table=PLAIN2))
        await conn.execute(_SHAPE.format(table=INDEXED))
        await conn.execute(_INBOX_INDEXES.format(table=INDEXED))
        if direct_db is not None:
            await conn.execute(f'CREATE DATABASE "{direct_db}"')
    finally:
        await conn.close()
    if direct_db is None:
        return None
    direct = dsn.rsplit("/", 1)[0] + f"/{direct_db}"
    await migrate(direct, REPO_ROOT / "migrations")
    return direct


def process_env(extra: dict[str, str]) -> dict[str, str]:
    from wiring.settings import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env.update(PYTHONPATH=path, LOG_LEVEL="WARNING", LOG_FORMAT="json", **extra)
    env.update(BENCH_KEYRING.env())  # the API, the worker and the bench share the codec's keys
    return env


async def measured(meter: Meter, arm: Awaitable[Any]) -> Any:
    before = meter.read()
    result = await arm
    result.cpu = Meter.spent(before, meter.read())
    return result


async def main_async(args: argparse.Namespace) -> Results:
    from temporalio.testing import WorkflowEnvironment

    from api.routes.events import BATCH_CONCURRENCY
    from domain.models import case_workflow_id
    from domain.procedure import COMMAND_BY_NAME
    from wiring.codec import data_converter
    from wiring.db import create_pool
    from wiring.embedded import EmbeddedPostgres, ManagedProcess, free_port, temporal_cli
    from wiring.search_attributes import ensure_search_attributes
    from wiring.settings import REPO_ROOT, Settings
    from workflows import search

    results = Results()
    run = uuid.uuid4().hex[:6]
    defaults = Settings.model_construct()
    api_pool = args.api_pool or defaults.db_pool_max_size
    results.setup = {
        "batch_concurrency": BATCH_CONCURRENCY,
        "api_pool": api_pool,
        "admission": args.admission_max_backlog
        if args.admission_max_backlog is not None
        else defaults.admission_max_backlog,
        "signal_interval": defaults.detection_signal_interval_s,
        "durable": not args.fast_pg,
    }

    print("building workloads …", flush=True)
    work_a, domain_a = one_subject(run, args.one_subject, args.batch)
    work_b = many_subjects(run, args.subjects, args.per_subject, args.batch)
    results.workloads = {"a": work_a, "b": work_b}

    with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        async with AsyncExitStack() as stack:
            postgres = EmbeddedPostgres(workdir / "pg", free_port(), durable=not args.fast_pg)
            dsn = postgres.start()
            stack.callback(postgres.stop)
            direct_dsn = await prepare(dsn, "bench_direct" if args.diagnostics else None)
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_cli(),
                ui=False,
                data_converter=data_converter(BENCH_KEYRING),
            )
            stack.push_async_callback(env.shutdown)
            client = env.client
            await ensure_search_attributes(client, "default", search.ALL)
            address = client.service_client.config.target_host
            task_queue = f"bench-ingest-{run}"
            common = {"DATABASE_URL": dsn, "TEMPORAL_ADDRESS": address, "TASK_QUEUE": task_queue}

            worker = ManagedProcess(
                "worker",
                [sys.executable, "-m", "worker"],
                env=process_env(common),
                log_path=workdir / "worker.log",
            )
            worker.start()
            stack.callback(worker.stop)
            api_port = free_port()
            api_env = common | {"API_PORT": str(api_port), "DB_POOL_MAX_SIZE": str(api_pool)}
            if args.admission_max_backlog is not None:
                api_env["ADMISSION_MAX_BACKLOG"] = str(args.admission_max_backlog)
            api = ManagedProcess(
                "api",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.ingest:api_app",
                    "--factory",
                    "--app-dir",
                    str(REPO_ROOT),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(api_port),
                    "--workers",
                    str(args.api_workers),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                    "--timeout-graceful-shutdown",
                    "5",
                    *args.uvicorn_arg,
                ],
                env=process_env(api_env),
                log_path=workdir / "api.log",
            )
            api.start()
            stack.callback(api.stop)
            assert postgres.process is not None and api.pid and worker.pid
            meter = Meter(
                {
                    "api": (api.pid, "tree"),
                    "worker": (worker.pid, "self"),
                    "worker.py": (worker.pid, "main"),
                    "postgres": (postgres.process.pid or 0, "tree"),
                    "temporal": (temporal_pid(), "self"),
                    "driver": (os.getpid(), "self"),
                }
            )
            spy = Spy(args.py_spy, {"api": api.pid, "worker": worker.pid})

            system_key, acting = await create_key(dsn, "enforcement-system", "bench ingest")
            officer_key, _ = await create_key(dsn, "officer", "bench officer")
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{api_port}",
                    headers={"Authorization": f"Bearer {system_key}"},
                    limits=httpx.Limits(
                        max_connections=args.concurrency,
                        max_keepalive_connections=args.concurrency,
                    ),
                    timeout=REQUEST_TIMEOUT_S,
                )
            )
            await wait_http_ready(http, api.alive)
            pool = await create_pool(dsn, min_size=1, max_size=api_pool + args.concurrency)
            stack.push_async_callback(pool.close)
            direct_pool = None
            if direct_dsn is not None:
                direct_pool = await create_pool(direct_dsn, min_size=1, max_size=api_pool)
                stack.push_async_callback(direct_pool.close)

            # Warm-up (untimed): (a)'s case opened by one detection and registered (the worker
            # polls), then a few joins through the batch route.
            print("warming up …", flush=True)
            opener = detection(f"{run}-a-opener", domain_a, -1)
            answer = await http.post("/events", json=opener)
            if answer.status_code != 201:
                raise RuntimeError(f"the opener was answered {answer.status_code}: {answer.text}")
            case_a = answer.json()["case_id"]
            count, _ = await wait_registered(pool, case_a, 1, time.perf_counter(), 120)
            if count != 1:
                raise RuntimeError(f"the worker did not register {case_a}: see {workdir}")
            warm = [detection(f"{run}-a-warm-{n}", domain_a, -2 - n) for n in range(20)]
            await send_all(http, [warm], 1, args.batch)
            results.setup["warmup"] = 1 + len(warm)

            async def bare_arms(work: Workload) -> dict[str, Any]:
                arms: dict[str, Any] = {}
                batches = work.row_batches()
                print(f"{work.name}: bare …", flush=True)
                arms["bare"] = await measured(
                    meter, bare_multirow(pool, PLAIN, batches, args.concurrency, acting)
                )
                if args.diagnostics:
                    assert direct_pool is not None
                    arms["bare_executemany"] = await measured(
                        meter, bare_executemany(pool, PLAIN2, batches, args.concurrency, acting)
                    )
                    arms["bare_indexed"] = await measured(
                        meter, bare_multirow(pool, INDEXED, batches, args.concurrency, acting)
                    )
                    arms["inbox_one_by_one"] = await measured(
                        meter,
                        inbox_one_by_one(
                            direct_pool, batches, args.concurrency, BATCH_CONCURRENCY, acting
                        ),
                    )
                    arms["inbox_batches"] = await measured(
                        meter, inbox_batches(direct_pool, batches, args.concurrency, acting)
                    )
                return arms

            async def through_api(work: Workload) -> Tally:
                """The workload through the API, then the wait for the worker to register
                every case it opened (CPU is counted over both)."""
                baseline = await registered_count(pool, "EV-%")
                started = time.perf_counter()
                tally = await send_all(http, work.batches(), args.concurrency, work.batch)
                count, tally.registered_s = await wait_registered(
                    pool, "EV-%", baseline + tally.opened, started, args.register_timeout
                )
                tally.registered = count - baseline
                return tally

            async def api_arm(name: str, work: Workload) -> Tally:
                print(f"{work.name}: API …", flush=True)
                with spy.recording(name):
                    tally: Tally = await measured(meter, through_api(work))
                return tally

            # 1 (a) and 3.
            results.ingest["a"] = await bare_arms(work_a)
            results.ingest["a"]["api"] = await api_arm("a", work_a)
            await asyncio.sleep(results.setup["signal_interval"] + 1)  # its last coalesced news
            shape = await case_shape(client, case_workflow_id(case_a))
            inbox_rows = await pool.fetchval(
                "SELECT count(*) FROM detections WHERE case_id = $1", case_a
            )
            filing = COMMAND_BY_NAME["decide_filing"].example
            decided = await http.post(
                f"/cases/{case_a}/filing-decision",
                json=filing,
                headers={"Authorization": f"Bearer {officer_key}"},
            )
            results.case = {
                "case_id": case_a,
                "shape": shape,
                "inbox_rows": inbox_rows,
                "status": decided.status_code,
                "answer": decided.text,
            }

            # 1 (b): the worker registers what the API opened.
            if work_b.events:
                results.ingest["b"] = await bare_arms(work_b)
                results.ingest["b"]["api"] = await api_arm("b", work_b)
                await settle(meter, args.register_timeout, results.setup["signal_interval"])
                results.samples["b"] = await sample_cases(
                    client, [row.case_id for row in work_b.rows if row.opens]
                )

            # 2: openings in rounds, the arms' order alternating (API, bare; bare, API; …) so
            # that neither always meets the fuller server; each chunk registered and the worker
            # quiet again before the next.
            if args.openings:
                in_flight = args.concurrency * BATCH_CONCURRENCY
                results.openings["in_flight"] = in_flight
                api_chunks: list[Tally] = []
                bare_chunks: list[Timed] = []
                api_cases: list[str] = []
                for round_no, size in enumerate(split(args.openings, args.opening_rounds)):
                    # Batches small enough that every request in flight has one (a few openings
                    # in one batch would have only BATCH_CONCURRENCY starts in flight).
                    opening_batch = min(args.batch, -(-size // args.concurrency))
                    results.setup["opening_batch"] = opening_batch
                    work_o = new_subjects(run, f"o{round_no}-", size, opening_batch)
                    work_s = new_subjects(run, f"bs{round_no}-", size, args.batch)
                    api_cases += [case_id_of(event) for event in work_o.events]

                    async def api_openings(work: Workload = work_o) -> None:
                        api_chunks.append(await api_arm("openings", work))
                        await settle(meter, args.register_timeout, 0)

                    async def bare_openings(work: Workload = work_s) -> Timed:
                        started = time.perf_counter()
                        timed = await bare_starts(client, task_queue, work, in_flight, acting)
                        baseline = sum(chunk.rows for chunk in bare_chunks)
                        count, timed.registered_s = await wait_registered(
                            pool, "BS-%", baseline + timed.rows, started, args.register_timeout
                        )
                        timed.registered = count - baseline
                        return timed

                    async def bare_arm(work: Workload = work_s) -> None:
                        print(f"openings: bare start_workflow ({work.name}) …", flush=True)
                        with spy.recording("bare_openings"):
                            bare_chunks.append(await measured(meter, bare_openings(work)))
                        await settle(meter, args.register_timeout, 0)

                    arms = (
                        (api_openings, bare_arm) if round_no % 2 == 0 else (bare_arm, api_openings)
                    )
                    for arm in arms:
                        await arm()
                results.openings["api"] = merged_tally(api_chunks)
                results.openings["bare"] = merged_timed(bare_chunks)
                await asyncio.sleep(results.setup["signal_interval"] + 1)
                results.samples["openings"] = await sample_cases(client, api_cases)
            results.spy_files = spy.files
            results.setup["logs"] = str(workdir)
            if args.keep_logs:
                for name in ("api.log", "worker.log"):
                    target = Path(args.keep_logs) / name
                    target.write_bytes((workdir / name).read_bytes())
    return results


# --- The report ----------------------------------------------------------------------------------


CPU_GROUPS = ("api", "worker", "worker.py", "postgres", "temporal", "driver")
CPU_HEADER = "   CPU s:" + "".join(f"{name:>10}" for name in CPU_GROUPS)


def cpu_cells(cpu: dict[str, float]) -> str:
    return "         " + "".join(f"{cpu.get(name, 0.0):>10.1f}" for name in CPU_GROUPS)


def ratio(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def refusals(tally: Tally) -> str:
    waits = f" (Retry-After {min(tally.waits):g}-{max(tally.waits):g} s)" if tally.waits else ""
    return (
        f"refused 429: {tally.refused} item answers ({len(tally.refused_keys)} distinct items),"
        f" {tally.refused_requests} whole requests, each sent again after its Retry-After" + waits
    )


def tree() -> str:
    from wiring.settings import REPO_ROOT

    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown tree"
    return f"tree {head}{' with local changes' if dirty else ''}"


def report(args: argparse.Namespace, results: Results, spy_files: Sequence[Path]) -> None:
    setup = results.setup
    print(
        "\nDetections and openings through the API beside bare PostgreSQL / Temporal, one run "
        f"({tree()}).\n"
        f"{args.concurrency} requests in flight (httpx, HTTP/1.1 keep-alive), {args.batch} "
        f"events per batch; API: {args.api_workers} uvicorn process(es)"
        f"{' ' + ' '.join(args.uvicorn_arg) if args.uvicorn_arg else ''}, pool "
        f"{setup['api_pool']} connections each, BATCH_CONCURRENCY {setup['batch_concurrency']}, "
        f"admission bound {setup['admission']} tasks, coalesced signals every "
        f"{setup['signal_interval']:g} s; worker: `python -m worker`; PostgreSQL embedded, "
        f"{'durable (fsync on)' if setup['durable'] else 'fsync off'}; Temporal dev server in "
        f"memory; {psutil.cpu_count()} cores shared by all. Warm-up (untimed): "
        f"{setup['warmup']} detections."
    )
    print(
        f"\n{'workload / arm':<50}{'rows':>8}{'wall s':>9}{'rows/s':>10}{'API/arm':>9}" + CPU_HEADER
    )
    labels = {
        "bare": "bare multi-row INSERT, plain table (denominator)",
        "bare_executemany": "bare executemany, plain table",
        "bare_indexed": "bare multi-row INSERT, + inbox's 3 indexes",
        "inbox_one_by_one": "inbox SQL one by one (DetectionInbox.record)",
        "inbox_batches": "inbox SQL per batch (record_many), no HTTP",
    }
    for name, arms in results.ingest.items():
        work = results.workloads[name]
        api: Tally = arms["api"]
        api_rate = api.accepted / api.wall
        print(f"{work.name} ({work.subjects} subjects, {len(work.events)} detections)")
        print(
            f"  {'API POST /events/batch':<48}{api.accepted:>8}{api.wall:>9.1f}{api_rate:>10.0f}"
            f"{'':>9}" + cpu_cells(api.cpu)
        )
        for arm, label in labels.items():
            if arm in arms:
                timed: Timed = arms[arm]
                print(
                    f"  {label:<48}{timed.rows:>8}{timed.wall:>9.1f}{timed.rate:>10.0f}"
                    f"{ratio(api_rate / timed.rate):>9}" + cpu_cells(timed.cpu)
                )
        print(
            f"  API answers: {api.opened} opened, {api.joined} joined, {api.duplicate} duplicate;"
            f" {refusals(api)}; 503 re-sent: {api.unavailable};"
            f" other failures: {dict(api.failed) or 0}"
            + (f" (first: {api.first_failure})" if api.first_failure else "")
        )
        if api.server_errors:
            print(
                f"  whole requests answered 5xx and sent again: {dict(api.server_errors)}; "
                f"the first: {api.first_server_error}"
            )
        for arm, timed in arms.items():
            if isinstance(timed, Timed) and timed.deadlocks:
                print(
                    f"  {labels[arm]}: {timed.deadlocks} batch attempts failed (deadlock, or "
                    "routing given up after concurrent openers) and ran again"
                )
        print(
            f"  {api.requests} requests, p50 {api.percentile(0.5):.0f} ms, "
            f"p95 {api.percentile(0.95):.0f} ms per batch request; last item accepted at "
            f"{api.last_accept:.1f} s"
        )
        if api.opened:
            print(
                f"  openings: {api.opened / api.wall:.1f} accepted/s; registered by the worker "
                f"{api.registered}/{api.opened}, the last {api.registered_s:.1f} s after the "
                f"arm's start ({api.registered / api.registered_s:.1f} registered/s; the CPU "
                "above runs to that point)"
            )
        if name in results.samples:
            sample = results.samples[name]
            print(
                f"  {sample.cases} of its cases sampled: {sample.events:.1f} history events, "
                f"{sample.signals:.1f} coalesced signals each (at most {sample.runs} run(s))"
            )
    a = results.ingest["a"]
    rate_a = a["api"].accepted / a["api"].wall
    line = (
        f"\n  targets: ≥ {TARGET_JOINS_PER_S:,.0f} detections/s into existing cases → (a) "
        f"{rate_a:,.0f}/s;  ≥ {TARGET_BARE_RATIO} x bare → (a) {ratio(rate_a / a['bare'].rate)}"
    )
    if "b" in results.ingest:
        b = results.ingest["b"]
        rate_b = b["api"].accepted / b["api"].wall
        line += f", (b) {ratio(rate_b / b['bare'].rate)}"
    print(line)

    case = results.case
    shape: CaseShape = case["shape"]
    print(
        f"\nThe case of (a), {case['case_id']}: {case['inbox_rows']} detections in the inbox; "
        f"Temporal history: {shape.latest_events} events in the latest run, {shape.runs} run(s) "
        f"({shape.all_events} events over all runs, {shape.signals} coalesced signals)."
    )
    print(f"  POST /cases/{case['case_id']}/filing-decision → {case['status']} {case['answer']}")

    if results.openings:
        api = results.openings["api"]
        bare: Timed = results.openings["bare"]
        api_accepted = api.opened / api.wall
        api_registered = api.registered / api.registered_s
        bare_registered = bare.registered / bare.registered_s
        print(
            f"\nCase openings, {args.openings} new subjects per arm in "
            f"{min(args.opening_rounds, args.openings)} round(s), the arms' order alternating "
            f"(API: batches of "
            f"{results.setup['opening_batch']}; bare: "
            f"{results.openings['in_flight']} start_workflow calls in flight, the most the API "
            "has); CPU to the last registration:"
        )
        print(
            f"{'arm':<34}{'accepted/s':>11}{'wall s':>8}{'registered/s':>13}{'reg. s':>8}"
            + CPU_HEADER
        )
        print(
            f"{'API POST /events/batch':<34}{api_accepted:>11.1f}{api.wall:>8.1f}"
            f"{api_registered:>13.1f}{api.registered_s:>8.1f}" + cpu_cells(api.cpu)
        )
        print(
            f"{'bare client.start_workflow':<34}{bare.rate:>11.1f}{bare.wall:>8.1f}"
            f"{bare_registered:>13.1f}{bare.registered_s:>8.1f}" + cpu_cells(bare.cpu)
        )
        print(
            f"  API/bare: accepted {ratio(api_accepted / bare.rate)}, registered "
            f"{ratio(api_registered / bare_registered)} (target ≥ {TARGET_OPENING_RATIO});"
            f" registered {api.registered}/{api.opened} and {bare.registered}/{bare.rows};"
            f" API {refusals(api)}; p50 {api.percentile(0.5):.0f} ms, "
            f"p95 {api.percentile(0.95):.0f} ms per request"
            + (f"; 5xx re-sent: {dict(api.server_errors)}" if api.server_errors else "")
        )
        if "openings" in results.samples:
            sample = results.samples["openings"]
            print(
                f"  {sample.cases} API-opened cases sampled: {sample.events:.1f} history events, "
                f"{sample.signals:.1f} coalesced signals each"
            )
    print(
        "\nCPU s: user+system over the arm, per process: the API with its uvicorn workers, the "
        "worker (worker.py: its interpreter thread alone), PostgreSQL with its backends alive "
        f"at the end; the wall x {psutil.cpu_count()} cores is the ceiling."
    )
    for path in dict.fromkeys(spy_files):  # a file per arm (the last round's, for openings)
        if path.exists():
            samples, through, inside = top_frames(path)
            print(f"\npy-spy {path.name}, {samples} samples; share of them on stacks through:")
            for share, function in through:
                print(f"  {share:6.1%}  {function}")
            print("  … and running in:")
            for share, function in inside:
                print(f"  {share:6.1%}  {function}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every size")
    parser.add_argument("--one-subject", type=int, default=100_000, help="(a): detections")
    parser.add_argument("--subjects", type=int, default=10_000, help="(b): subjects")
    parser.add_argument("--per-subject", type=int, default=10, help="(b): detections each")
    parser.add_argument("--openings", type=int, default=1_000, help="2: new subjects per arm")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (≤ 500)")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn processes")
    parser.add_argument("--api-pool", type=int, default=None, help="DB_POOL_MAX_SIZE of the API")
    parser.add_argument(
        "--admission-max-backlog",
        type=int,
        default=None,
        help="ADMISSION_MAX_BACKLOG of the API (default: the settings'; 0 turns it off)",
    )
    parser.add_argument(
        "--opening-rounds",
        type=int,
        default=2,
        help="2: the openings in this many rounds, the arms' order alternating",
    )
    parser.add_argument(
        "--register-timeout", type=float, default=600, help="longest wait for the worker (s)"
    )
    parser.add_argument(
        "--no-diagnostics",
        dest="diagnostics",
        action="store_false",
        help="only the bare denominator beside the API",
    )
    parser.add_argument("--fast-pg", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--keep-logs", default=None, help="copy api.log/worker.log here")
    parser.add_argument(
        "--uvicorn-arg",
        action="append",
        default=[],
        help="one more argument for uvicorn (e.g. --uvicorn-arg=--loop=uvloop), repeatable",
    )
    parser.add_argument(
        "--py-spy", default=None, metavar="DIR", help="profile the API and worker per arm"
    )
    args = parser.parse_args()
    if args.quick:
        args.one_subject = max(1, args.one_subject // 10)
        args.subjects = max(1, args.subjects // 10)
        args.openings = args.openings // 10
    if not 1 <= args.batch <= 500 or args.concurrency < 1 or args.api_workers < 1:
        parser.error("--batch must be 1..500, --concurrency and --api-workers at least 1")
    from wiring.logs import configure_logging

    configure_logging(level="WARNING")
    started = time.perf_counter()
    results = asyncio.run(main_async(args))
    report(args, results, results.spy_files)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
