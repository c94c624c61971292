"""What Rectify costs over a bare Temporal workflow, on its main path, side by side.

    .venv/bin/python -m bench.case_throughput [--cases 40] [--rounds 3] [--concurrency 8 32]

One Temporal dev server (a SQLite file with WAL, as `make run` starts it) and one durable embedded
PostgreSQL (migrated, calendar seeded) carry two arms, the same cases in flight:

- rectify: `CaseWorkflow` with the real worker and activities, driven open → decide_filing →
  schedule_interview → record_interview → issue_rectification_order →
  submit_rectification_report → record_verification (passed) → closed;
- bare: bench/bare_case.py, the least the same path needs: one update and one activity per
  command (of the kind Rectify's steps use, read from its history), each activity one
  `INSERT … ON CONFLICT DO NOTHING` into a table of the bench's own, and the same timers.

An interview cannot be recorded before its time: both arms schedule it a lead ahead and wait for
it (`--interview-lead`; by default the larger of 1 s and N/10 s at N in flight, so that the
scheduling update itself is not slower than the lead), so a case takes at least that long and
cases/s at N in flight is at most N / lead. Arms alternate within each round so noise hits both.
Prints cases/s (median of the rounds), update latency (p50/p95, all rounds), history events,
activities and timers per case (counted in the fetched histories) and the ratio Rectify/bare.
Figures, not pass/fail; never part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import Worker

from activities.calendar import seed_calendar
from activities.policy import load_policies
from bench.bare_case import BareCaseWorkflow
from bench.bare_steps import CREATE_TABLE, BareOpen, BareReceipt, BareSteps
from domain.case import Receipt
from domain.models import OpenCaseInput, case_workflow_id
from domain.procedure import COMMAND_BY_NAME
from wiring.db import create_pool
from wiring.embedded import EmbeddedPostgres, EmbeddedTemporal, free_port
from wiring.keys import Keyring
from wiring.logs import configure_logging
from wiring.migrate import migrate
from wiring.search_attributes import ensure_search_attributes
from wiring.settings import REPO_ROOT
from wiring.temporal import connect_temporal
from worker.main import build_worker
from workflows import search

BENCH_KEYRING = Keyring.generate()  # the payload codec costs what it costs in production

MAIN_PATH = (
    "decide_filing",
    "schedule_interview",
    "record_interview",
    "issue_rectification_order",
    "submit_rectification_report",
    "record_verification",
)
LOCAL_ACTIVITY_MARKER = "core_local_activity"
ROUND_TIMEOUT = timedelta(minutes=15)


def bodies(scheduled_for: datetime) -> dict[str, dict[str, Any]]:
    """The table's own example bodies, with the interview just ahead and a passed check."""
    chosen = {name: dict(COMMAND_BY_NAME[name].example) for name in MAIN_PATH}
    chosen["decide_filing"]["decision"] = "filed"
    chosen["schedule_interview"]["scheduled_for"] = scheduled_for.isoformat()
    chosen["record_verification"]["passed"] = True
    return chosen


def open_input(case_id: str) -> OpenCaseInput:
    return OpenCaseInput.model_validate(
        {
            "case_id": case_id,
            # Each case its own subject: none is a repeat offender.
            "subject": {
                "kind": "website",
                "name": "Bench News",
                "identifiers": {"domain": f"{case_id.lower()}.bench.example.cn"},
            },
            "violation_category": "prohibited_information",
            "legal_basis": "Cybersecurity Law art. 61",
            "severity": "general",
            "office": "beijing",
            "opened_by": "officer.li",
        }
    )


class CommandRefused(RuntimeError):
    """A command of the main path was refused: the run stops, naming it."""


Update = Callable[[WorkflowHandle[Any, Any], str, dict[str, Any]], Awaitable[Any]]


@dataclass
class Arm:
    name: str
    task_queue: str
    start: Callable[[Client, str, str], Awaitable[WorkflowHandle[Any, Any]]]
    update: Update


async def start_rectify(client: Client, task_queue: str, case_id: str) -> WorkflowHandle[Any, Any]:
    opened = open_input(case_id)
    return await client.start_workflow(
        "CaseWorkflow",
        opened,
        id=case_workflow_id(case_id),
        task_queue=task_queue,
        search_attributes=search.case_search_attributes(
            opened, BENCH_KEYRING.subject_digests(opened.subject.identifiers)
        ),
    )


async def update_rectify(handle: WorkflowHandle[Any, Any], name: str, body: dict[str, Any]) -> Any:
    return await handle.execute_update(name, body, result_type=Receipt)


@dataclass(frozen=True)
class Kinds:
    """Whether the opening and the command steps run as local activities."""

    local_opening: bool
    local_steps: bool

    def describe(self) -> str:
        def kind(local: bool) -> str:
            return "LOCAL" if local else "regular"

        return (
            f"opening a {kind(self.local_opening)} activity, "
            f"command steps {kind(self.local_steps)} activities"
        )


def bare_starter(kinds: Kinds) -> Callable[[Client, str, str], Awaitable[WorkflowHandle[Any, Any]]]:
    async def start(client: Client, task_queue: str, case_id: str) -> WorkflowHandle[Any, Any]:
        return await client.start_workflow(
            BareCaseWorkflow.run,
            BareOpen(
                case_id=case_id,
                local_opening=kinds.local_opening,
                local_steps=kinds.local_steps,
            ),
            id=f"bare:{case_id}",
            task_queue=task_queue,
        )

    return start


async def update_bare(handle: WorkflowHandle[Any, Any], name: str, body: dict[str, Any]) -> Any:
    return await handle.execute_update(name, body, result_type=BareReceipt)


async def drive_case(
    client: Client, arm: Arm, lead: float, latencies: list[float]
) -> WorkflowHandle[Any, Any]:
    """One case along the main path; the wait for the interview's time is not latency."""
    handle = await arm.start(client, arm.task_queue, f"B-{uuid.uuid4().hex[:12]}")
    scheduled_for = datetime.now(UTC)
    for name in MAIN_PATH:
        if name == "schedule_interview":
            scheduled_for = datetime.now(UTC) + timedelta(seconds=lead)
        elif name == "record_interview":
            ahead = (scheduled_for - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(0.0, ahead) + 0.01)
        started = time.perf_counter()
        try:
            await arm.update(handle, name, bodies(scheduled_for)[name])
        except WorkflowUpdateFailedError as err:
            raise CommandRefused(
                f"{arm.name}: {name} refused ({err.cause}); a longer "
                "--interview-lead helps if the interview was already due"
            ) from err
        latencies.append(time.perf_counter() - started)
    await handle.result()
    return handle


@dataclass
class Shape:
    """What a case's history holds."""

    events: int = 0
    local_activities: int = 0
    activities: int = 0
    scheduled: list[str] = field(default_factory=list)  # types of the (regular) activities
    timers: int = 0

    @property
    def all_activities(self) -> int:
        return self.local_activities + self.activities


async def shape_of(handle: WorkflowHandle[Any, Any]) -> Shape:
    history = await handle.fetch_history()
    shape = Shape(events=len(history.events))
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            shape.activities += 1
            shape.scheduled.append(
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            shape.timers += 1
        elif (
            event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
        ):
            shape.local_activities += 1
    return shape


@dataclass
class Figures:
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    shapes: list[Shape] = field(default_factory=list)

    def per_case(self, attribute: str) -> float:
        return statistics.mean(float(getattr(shape, attribute)) for shape in self.shapes)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run_round(
    client: Client, arm: Arm, cases: int, concurrency: int, lead: float, figures: Figures
) -> None:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one() -> WorkflowHandle[Any, Any]:
        async with semaphore:
            return await drive_case(client, arm, lead, latencies)

    started = time.perf_counter()
    async with asyncio.timeout(ROUND_TIMEOUT.total_seconds()), asyncio.TaskGroup() as group:
        tasks = [group.create_task(one()) for _ in range(cases)]  # one refusal stops them all
    handles = [task.result() for task in tasks]
    figures.rates.append(cases / (time.perf_counter() - started))
    figures.latencies += latencies
    figures.shapes += [await shape_of(handle) for handle in handles]


async def prepare_database(dsn: str) -> None:
    await migrate(dsn, REPO_ROOT / "migrations")
    await seed_calendar(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(CREATE_TABLE)
    finally:
        await conn.close()


def lead_at(args: argparse.Namespace, concurrency: int) -> float:
    """Seconds between scheduling the interview and recording it, at this many in flight."""
    lead: float | None = args.interview_lead
    return lead if lead is not None else max(1.0, concurrency / 10)


def choose_kinds(requested: str, rectify: Shape) -> Kinds:
    """The bare arm's activity kinds: as Rectify's history shows its own, unless told."""
    if requested != "auto":
        return Kinds(requested == "local", requested == "local")
    return Kinds(
        local_opening="open_case" not in rectify.scheduled,
        local_steps="record_step" not in rectify.scheduled and rectify.local_activities > 0,
    )


async def main_async(args: argparse.Namespace) -> None:
    results: dict[tuple[int, str], Figures] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        postgres = EmbeddedPostgres(workdir / "pg", free_port(), durable=True)
        temporal = EmbeddedTemporal(workdir / "temporal.db", free_port(), free_port())
        async with AsyncExitStack() as stack:
            dsn = postgres.start()
            stack.callback(postgres.stop)
            await prepare_database(dsn)
            temporal.start()
            stack.callback(temporal.stop)
            client = await connect_temporal(
                temporal.address, keyring=BENCH_KEYRING, wait_seconds=30
            )
            await ensure_search_attributes(client, "default", search.ALL)
            pool = await create_pool(dsn, max_size=max(args.concurrency) + 8)
            stack.push_async_callback(pool.close)

            rectify = Arm(
                "rectify", f"bench-rectify-{uuid.uuid4().hex[:6]}", start_rectify, update_rectify
            )
            policies = load_policies(REPO_ROOT / "policies")
            await stack.enter_async_context(
                build_worker(client, pool, rectify.task_queue, policies)
            )
            warm = await drive_case(client, rectify, lead_at(args, 1), [])
            rectify_shape = await shape_of(warm)
            kinds = choose_kinds(args.bare_activities, rectify_shape)
            bare = Arm(
                "bare", f"bench-bare-{uuid.uuid4().hex[:6]}", bare_starter(kinds), update_bare
            )
            await stack.enter_async_context(
                Worker(
                    client,
                    task_queue=bare.task_queue,
                    workflows=[BareCaseWorkflow],
                    activities=[BareSteps(pool).record_step],
                    max_concurrent_activities=50,
                )
            )
            await drive_case(client, bare, lead_at(args, 1), [])  # warm-up
            for round_no in range(args.rounds):
                for concurrency in args.concurrency:
                    arms = (rectify, bare) if round_no % 2 == 0 else (bare, rectify)
                    for arm in arms:
                        figures = results.setdefault((concurrency, arm.name), Figures())
                        await run_round(
                            client,
                            arm,
                            args.cases,
                            concurrency,
                            lead_at(args, concurrency),
                            figures,
                        )
                        print(
                            f"  round {round_no + 1}/{args.rounds}, {concurrency} in flight, "
                            f"{arm.name}: {figures.rates[-1]:.2f} cases/s",
                            flush=True,
                        )
    report(args, results, rectify_shape, kinds)


def report(
    args: argparse.Namespace,
    results: dict[tuple[int, str], Figures],
    rectify_shape: Shape,
    kinds: Kinds,
) -> None:
    print(
        f"\nRectify vs bare Temporal, main path (open + {len(MAIN_PATH)} commands → closed): "
        f"{args.cases} cases per arm per round, {args.rounds} rounds, arms alternating;\n"
        "one Temporal dev server (SQLite WAL file, as `make run`), one durable embedded "
        "PostgreSQL; workers and driver in this one process.\n"
        "Interview recorded a lead after it was scheduled, the same in both arms "
        "(cases/s ≤ in flight / lead)."
    )
    how = "as told" if args.bare_activities != "auto" else "as in Rectify's history"
    scheduled = ", ".join(rectify_shape.scheduled) or "none"
    print(
        f"Bare arm: {kinds.describe()} ({how}: per case {rectify_shape.local_activities} "
        f"local-activity markers; scheduled activities: {scheduled})."
    )
    columns = ("cases/s", "p50 update", "p95 update", "events/case", "activities", "timers")
    print(f"\n{'in flight':>9}{'lead':>7}  {'arm':<8}" + "".join(f"{c:>13}" for c in columns))
    for concurrency in args.concurrency:
        for arm in ("rectify", "bare"):
            f = results[(concurrency, arm)]
            cells = (
                f"{statistics.median(f.rates):.2f}",
                f"{f.percentile(0.50):.1f} ms",
                f"{f.percentile(0.95):.1f} ms",
                f"{f.per_case('events'):.1f}",
                f"{f.per_case('all_activities'):.1f}",
                f"{f.per_case('timers'):.1f}",
            )
            lead = f"{lead_at(args, concurrency):.1f}s"
            print(f"{concurrency:>9}{lead:>7}  {arm:<8}" + "".join(f"{c:>13}" for c in cells))
        ratio = statistics.median(results[(concurrency, "rectify")].rates) / statistics.median(
            results[(concurrency, "bare")].rates
        )
        print(f"{'':>18}throughput Rectify/bare: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=40, help="cases per arm per round (>= 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both arms (>= 1)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[8, 32], help="cases in flight"
    )
    parser.add_argument(
        "--interview-lead",
        type=float,
        default=None,
        help="seconds between scheduling the interview and recording it, both arms "
        "(default: the larger of 1 and N/10 at N in flight)",
    )
    parser.add_argument(
        "--bare-activities",
        choices=("auto", "local", "regular"),
        default="auto",
        help="the bare arm's activity kind (auto: the kind Rectify's history shows)",
    )
    args = parser.parse_args()
    if args.cases < 1 or args.rounds < 1 or min(args.concurrency) < 1:
        parser.error("--cases, --rounds and --concurrency must be at least 1")
    if args.interview_lead is not None and args.interview_lead <= 0:
        parser.error("--interview-lead must be positive")
    configure_logging(level="WARNING")  # the figures, not every step
    try:
        asyncio.run(main_async(args))
    except* CommandRefused as refused:
        parser.exit(1, f"{refused.exceptions[0]}\n")


if __name__ == "__main__":
    main()
