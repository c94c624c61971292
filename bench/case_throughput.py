"""How fast the engine carries cases: full main paths on the embedded stack, side by side.

    .venv/bin/python -m bench.case_throughput [--cases 60] [--concurrency 8]

For each configuration of the embedded Temporal dev server (SQLite file with WAL pragmas, as
`make run` uses, and SQLite's defaults) it opens N cases and drives each through interview,
order, report and verification with the real worker and activities on one embedded PostgreSQL,
then prints cases per second, update latencies and the ratio. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client

from activities.policy import load_policies
from domain.models import (
    IssueRectificationOrder,
    OpenCaseInput,
    RecordInterview,
    RecordVerification,
    ScheduleInterview,
    SubmitRectificationReport,
    case_workflow_id,
)
from domain.procedure_models import DecideFiling, FilingDecision
from wiring.db import create_pool
from wiring.embedded import EmbeddedPostgres, EmbeddedTemporal, free_port
from wiring.migrate import migrate
from wiring.search_attributes import ensure_search_attributes
from wiring.settings import REPO_ROOT
from wiring.temporal import connect_temporal
from worker.main import build_worker
from workflows import search
from workflows.case import CaseWorkflow

CONFIGS: dict[str, tuple[str, ...]] = {
    "sqlite WAL (make run)": ("journal_mode=wal", "synchronous=normal"),
    "sqlite defaults": (),
}


async def drive_case(client: Client, task_queue: str, latencies: list[float]) -> None:
    case_id = f"B-{uuid.uuid4().hex[:12]}"
    opened = OpenCaseInput.model_validate(
        {
            "case_id": case_id,
            "subject": {
                "kind": "app",
                "name": "Bench app",
                "identifiers": {"app_package": "com.bench.app"},
            },
            "violation_category": "prohibited_information",
            "legal_basis": "bench",
            "severity": "minor",
            "office": "bench",
            "opened_by": "bench",
        }
    )
    handle = await client.start_workflow(
        CaseWorkflow.run, opened, id=case_workflow_id(case_id), task_queue=task_queue
    )
    steps: list[tuple[Any, Any]] = [
        (
            CaseWorkflow.decide_filing,
            DecideFiling(actor="b", decision=FilingDecision.FILED, reasons="bench"),
        ),
        (
            CaseWorkflow.schedule_interview,
            ScheduleInterview(
                actor="b",
                scheduled_for=datetime(2099, 1, 1, 1, 0, tzinfo=UTC),
                place="p",
                reason="r",
                attendees_required=["x"],
            ),
        ),
        (
            CaseWorkflow.record_interview,
            RecordInterview(actor="b", officials=["a", "b"], attended_by=["x"], summary="s"),
        ),
        (
            CaseWorkflow.issue_rectification_order,
            IssueRectificationOrder(actor="b", period_days=15, requirements="r"),
        ),
        (
            CaseWorkflow.submit_rectification_report,
            SubmitRectificationReport(actor="b", summary="s"),
        ),
        (
            CaseWorkflow.record_verification,
            RecordVerification(actor="b", passed=True, findings="f"),
        ),
    ]
    for update, command in steps:
        started = time.perf_counter()
        await handle.execute_update(update, command)
        latencies.append(time.perf_counter() - started)
    await handle.result()


async def run_config(
    name: str, pragmas: tuple[str, ...], dsn: str, workdir: Path, cases: int, concurrency: int
) -> dict[str, float]:
    temporal = EmbeddedTemporal(
        workdir / f"{uuid.uuid4().hex[:6]}.db", free_port(), free_port(), sqlite_pragmas=pragmas
    )
    temporal.start()
    pool = await create_pool(dsn, max_size=concurrency + 2)
    try:
        client = await connect_temporal(temporal.address, wait_seconds=30)
        await ensure_search_attributes(client, "default", search.ALL)
        task_queue = f"bench-{uuid.uuid4().hex[:6]}"
        latencies: list[float] = []
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with semaphore:
                await drive_case(client, task_queue, latencies)

        async with build_worker(client, pool, task_queue, load_policies(REPO_ROOT / "policies")):
            await drive_case(client, task_queue, [])  # warm-up
            started = time.perf_counter()
            await asyncio.wait_for(
                asyncio.gather(*(one() for _ in range(cases))),
                timedelta(minutes=10).total_seconds(),
            )
            elapsed = time.perf_counter() - started
        latencies.sort()
        return {
            "cases_per_s": cases / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
            "elapsed_s": elapsed,
        }
    finally:
        await pool.close()
        temporal.stop()


async def main_async(cases: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        postgres = EmbeddedPostgres(workdir / "pg", free_port(), durable=True)
        dsn = postgres.start()
        try:
            await migrate(dsn, REPO_ROOT / "migrations")
            results = {}
            for name, pragmas in CONFIGS.items():
                results[name] = await run_config(name, pragmas, dsn, workdir, cases, concurrency)
        finally:
            postgres.stop()
    print(
        f"\n{cases} cases x 6 updates each, {concurrency} at a time, 1 worker, durable PostgreSQL"
    )
    print(f"{'configuration':<24}{'cases/s':>10}{'p50 update':>13}{'p95 update':>13}{'total':>9}")
    for name, r in results.items():
        print(
            f"{name:<24}{r['cases_per_s']:>10.2f}{r['p50_ms']:>10.1f} ms{r['p95_ms']:>10.1f} ms"
            f"{r['elapsed_s']:>8.1f}s"
        )
    names = list(results)
    ratio = results[names[0]]["cases_per_s"] / results[names[1]]["cases_per_s"]
    print(f"\nthroughput ratio {names[0]} / {names[1]}: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=60, help="cases per configuration (>= 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="cases in flight (>= 1)")
    args = parser.parse_args()
    if args.cases < 1 or args.concurrency < 1:
        parser.error("--cases and --concurrency must be at least 1")
    asyncio.run(main_async(args.cases, args.concurrency))


if __name__ == "__main__":
    main()
