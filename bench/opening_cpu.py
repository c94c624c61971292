"""The worker's CPU time per opened case: what a cheap instance pays to open cases.

    PYTHONPATH=. .venv/bin/python bench/opening_cpu.py [--cases 200] [--concurrency 16]

(PYTHONPATH: the driver imports `tests.conftest`, which the editable install does not map.) To
measure another tree (an older commit checked out as a worktree) with this same file:

    cd /tmp/rectify-before && PYTHONPATH=/tmp/rectify-before \\
        /work/main/.venv/bin/python /work/main/bench/opening_cpu.py

It starts an embedded PostgreSQL (migrated, calendar seeded) and a Temporal dev server (in
memory), then runs the real worker (`worker.main.build_worker`) in a child process of its own,
this file again with `--worker`, so that the worker's CPU time (user + system, all its threads,
the SDK's Rust core included) can be read from outside with psutil. After `--warmup` cases (the
worker's one-off imports and first workflow tasks, not counted), the parent opens `--cases`
cases, `--concurrency` in flight, and waits until each is registered: its row in `cases` with
`last_seq >= 1`. It prints the wall time, the worker's CPU over the run and per opened case, and
the CPU the worker spent after the last registration (the opening's tail: workflow tasks that
finish after the row is written), measured over `--settle` seconds, next to the worker's idle
rate (pollers) measured before. Figures, not pass/fail; never part of `make test`.

Works on trees before and after `domain/` left `workflows/`: it uses only what both have
(`tests.conftest.open_case_input`, `worker.main.build_worker`, ...) and passes the case's
search attributes at start where `workflows.search.case_search_attributes` exists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

WORKER_POOL_SIZE = 20
POLL_INTERVAL = 0.02
THIS_FILE = str(Path(__file__).resolve())
READY = "worker ready in "


@functools.cache  # one converter and keyring per process, not one per opened case
def tree_codec() -> tuple[Any, dict[str, Any]]:
    """The converter of the tree measured, and what its `connect_temporal` takes: trees with
    the payload codec encrypt with a fixed bench key (the worker child derives the same one)."""
    import hashlib

    try:
        from wiring.codec import data_converter
        from wiring.keys import Keyring
    except ImportError:
        from temporalio.contrib.pydantic import pydantic_data_converter

        return pydantic_data_converter, {}
    keyring = Keyring(
        (("bench", hashlib.sha256(b"opening-cpu payload").digest()),),
        hashlib.sha256(b"opening-cpu subject").digest(),
    )
    return data_converter(keyring), {"keyring": keyring}


# --- The worker process ----------------------------------------------------------------------


def worker_process(args: argparse.Namespace) -> None:
    """The child: the real worker on the given task queue until SIGTERM; its log to a file, one
    line on stdout once it polls."""
    from wiring.logs import configure_logging

    with open(args.worker_log, "a") as log_file:
        configure_logging("json", "INFO", stream=log_file)
        asyncio.run(run_worker(args))


async def run_worker(args: argparse.Namespace) -> None:
    from activities.policy import load_policies
    from wiring.db import create_pool
    from wiring.settings import REPO_ROOT
    from wiring.temporal import connect_temporal
    from worker.main import build_worker

    policies = load_policies(REPO_ROOT / "policies")
    pool = await create_pool(args.dsn, min_size=1, max_size=WORKER_POOL_SIZE)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        client = await connect_temporal(args.address, wait_seconds=30, **tree_codec()[1])
        async with build_worker(client, pool, args.task_queue, policies):
            print(f"{READY}{REPO_ROOT.resolve()}", flush=True)
            await stop.wait()
    finally:
        await pool.close()


# --- The driver --------------------------------------------------------------------------------


class Registrations:
    """One poller for every case waiting to be registered: `cases` row with `last_seq >= 1`."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Registrations:
        self.task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def expect(self, case_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[case_id] = future
        return future

    async def _poll(self) -> None:
        while True:
            if self.waiting:
                rows = await self.pool.fetch(
                    "SELECT case_id FROM cases WHERE case_id = ANY($1::text[]) AND last_seq >= 1",
                    list(self.waiting),
                )
                for row in rows:
                    future = self.waiting.pop(row["case_id"])
                    if not future.done():
                        future.set_result(None)
            await asyncio.sleep(POLL_INTERVAL)


def worker_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def open_cases(
    client: Any,
    task_queue: str,
    registrations: Registrations,
    count: int,
    concurrency: int,
    within: float,
) -> None:
    from tests.conftest import open_case_input
    from workflows import search
    from workflows.case import CaseWorkflow

    case_search_attributes = getattr(search, "case_search_attributes", None)
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            opened = open_case_input()
            registered = registrations.expect(opened.case_id)
            extra: dict[str, Any] = {}
            if case_search_attributes is not None:
                keys = tree_codec()[1].get("keyring")
                digests = [keys.subject_digests(opened.subject.identifiers)] if keys else []
                extra["search_attributes"] = case_search_attributes(opened, *digests)
            await client.start_workflow(
                CaseWorkflow.run,
                opened,
                id=f"case:{opened.case_id}",
                task_queue=task_queue,
                **extra,
            )
            await registered

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), within)


async def worker_tree(child: asyncio.subprocess.Process) -> str:
    """The tree the worker imported, once it polls (the first line it prints)."""
    assert child.stdout is not None
    line = (await asyncio.wait_for(child.stdout.readline(), 60)).decode()
    if not line.startswith(READY):
        raise RuntimeError(f"the worker process did not start (exit code {await child.wait()})")
    return line.removeprefix(READY).strip()


async def stop_child(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.wait(), 20)
        except TimeoutError:
            child.kill()
            await child.wait()


async def run_bench(args: argparse.Namespace, tree: str, log_path: str) -> dict[str, Any]:
    from temporalio.testing import WorkflowEnvironment

    import workflows.case
    from activities.calendar import seed_calendar
    from wiring.db import create_pool
    from wiring.embedded import EmbeddedPostgres, free_port, temporal_cli
    from wiring.migrate import migrate
    from wiring.search_attributes import ensure_search_attributes
    from wiring.settings import REPO_ROOT
    from workflows import search

    print(f"tree: {tree} (workflows.case: {workflows.case.__file__})", flush=True)
    with tempfile.TemporaryDirectory(prefix="opening-cpu-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        postgres = EmbeddedPostgres(workdir / "pg", free_port(), durable=False)
        dsn = postgres.start()
        try:
            await migrate(dsn, REPO_ROOT / "migrations")
            await seed_calendar(dsn)
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_cli(),
                ui=False,
                data_converter=tree_codec()[0],
            )
            try:
                client = env.client
                await ensure_search_attributes(client, "default", search.ALL)
                task_queue = f"opening-cpu-{uuid.uuid4().hex[:8]}"
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    THIS_FILE,
                    "--worker",
                    "--address",
                    client.service_client.config.target_host,
                    "--dsn",
                    dsn,
                    "--task-queue",
                    task_queue,
                    "--worker-log",
                    log_path,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                )
                try:
                    worker_runs = await worker_tree(child)
                    if worker_runs != tree:
                        raise RuntimeError(f"the worker runs {worker_runs}, the driver {tree}")
                    return await measure(args, client, dsn, task_queue, child, create_pool)
                finally:
                    await stop_child(child)
            finally:
                await env.shutdown()
        finally:
            postgres.stop()


async def measure(
    args: argparse.Namespace,
    client: Any,
    dsn: str,
    task_queue: str,
    child: asyncio.subprocess.Process,
    create_pool: Any,
) -> dict[str, Any]:
    process = psutil.Process(child.pid)
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        async with Registrations(pool) as registrations:
            started_cpu = worker_cpu(process)
            await open_cases(client, task_queue, registrations, args.warmup, 4, args.timeout)
            warmup_cpu = worker_cpu(process) - started_cpu
            await asyncio.sleep(args.settle)

            idle_from = worker_cpu(process)
            await asyncio.sleep(args.settle)
            idle_rate = (worker_cpu(process) - idle_from) / args.settle

            cpu_before = worker_cpu(process)
            wall_started = time.perf_counter()
            await open_cases(
                client, task_queue, registrations, args.cases, args.concurrency, args.timeout
            )
            wall = time.perf_counter() - wall_started
            cpu_registered = worker_cpu(process) - cpu_before
            await asyncio.sleep(args.settle)
            cpu_settled = worker_cpu(process) - cpu_before
    finally:
        await pool.close()
    return {
        "cases": args.cases,
        "concurrency": args.concurrency,
        "warmup_cases": args.warmup,
        "warmup_cpu_s": warmup_cpu,
        "wall_s": wall,
        "worker_cpu_s": cpu_registered,
        "worker_cpu_ms_per_case": cpu_registered * 1000 / args.cases,
        "settle_s": args.settle,
        "worker_cpu_settled_s": cpu_settled,
        "worker_cpu_settled_ms_per_case": cpu_settled * 1000 / args.cases,
        "worker_idle_cpu_ms_per_s": idle_rate * 1000,
        "worker_rss_mb": process.memory_info().rss / 2**20,
    }


def report(figures: dict[str, Any]) -> None:
    print(
        f"opened {figures['cases']} cases, {figures['concurrency']} in flight "
        f"(after {figures['warmup_cases']} warm-up cases, "
        f"{figures['warmup_cpu_s']:.2f} s worker CPU)\n"
        f"  wall:                              {figures['wall_s']:8.2f} s "
        f"({figures['cases'] / figures['wall_s']:.1f} cases/s)\n"
        f"  worker CPU (user+sys) to last reg: {figures['worker_cpu_s']:8.2f} s\n"
        f"  worker CPU per opened case:        {figures['worker_cpu_ms_per_case']:8.1f} ms\n"
        f"  ... incl. {figures['settle_s']:.0f} s tail after last reg: "
        f"{figures['worker_cpu_settled_s']:8.2f} s, "
        f"{figures['worker_cpu_settled_ms_per_case']:.1f} ms/case\n"
        f"  worker idle CPU (pollers):         {figures['worker_idle_cpu_ms_per_s']:8.1f} ms/s\n"
        f"  worker RSS after the run:          {figures['worker_rss_mb']:8.0f} MB"
    )
    print("RESULT " + json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=200, help="cases opened and counted")
    parser.add_argument("--concurrency", type=int, default=16, help="cases in flight")
    parser.add_argument("--warmup", type=int, default=10, help="cases opened first, not counted")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds for the idle rate and the tail"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per batch at most")
    parser.add_argument("--worker-log", help="append the worker's log here (default: discarded)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--task-queue", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_process(args)
        return
    if args.cases < 1 or args.concurrency < 1 or args.warmup < 0 or args.settle <= 0:
        parser.error("--cases and --concurrency must be at least 1, --settle positive")
    import workflows.case

    tree = str(Path(workflows.case.__file__).resolve().parent.parent)
    report(asyncio.run(run_bench(args, tree, args.worker_log or "/dev/null")))


if __name__ == "__main__":
    main()
