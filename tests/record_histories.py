"""Record CaseWorkflow histories for the replay tests: `python -m tests.record_histories`.

Run it when a new workflow version lands (after guarding the change with `workflow.patched`), and
commit the new files beside the old ones: old histories must keep replaying for as long as cases
of that version may be running.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import _test_server_path
from tests.test_case_workflow import drive_to_rectifying, start_case, submit_report
from wiring.db import create_pool
from wiring.embedded import EmbeddedPostgres, free_port
from wiring.migrate import migrate
from wiring.settings import REPO_ROOT
from worker.main import build_worker
from workflows.case import CaseWorkflow
from workflows.case_models import DecideFine, RecordVerification

HISTORIES = Path(__file__).resolve().parent / "histories"
VERSION = "v1"


async def record(dsn: str) -> None:
    pool = await create_pool(dsn)
    await migrate(dsn, REPO_ROOT / "migrations")
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=_test_server_path()
    )
    try:
        async with build_worker(env.client, pool, "record-histories"):
            paths = {}

            rectified = await start_case(env, "record-histories")
            await drive_to_rectifying(env, rectified)
            await submit_report(rectified)
            await rectified.execute_update(
                CaseWorkflow.record_verification,
                RecordVerification(actor="officer.wang", passed=True, findings="Content gone."),
            )
            paths["rectified"] = rectified

            penalized = await start_case(env, "record-histories")
            await drive_to_rectifying(env, penalized)
            await submit_report(penalized)
            await penalized.execute_update(
                CaseWorkflow.record_verification,
                RecordVerification(actor="officer.wang", passed=False, findings="Still online."),
            )
            await penalized.execute_update(
                CaseWorkflow.decide_fine,
                DecideFine(
                    actor="officer.li",
                    amount_yuan=Decimal("30000"),
                    legal_basis="Cybersecurity Law art. 61",
                    reasons="Refused to rectify.",
                ),
            )
            paths["verification-failed-fined"] = penalized

            missed = await start_case(env, "record-histories")
            await drive_to_rectifying(env, missed, days=10)
            await env.sleep(timedelta(days=12))
            await missed.execute_update(
                CaseWorkflow.decide_fine,
                DecideFine(
                    actor="officer.li",
                    amount_yuan=Decimal("10000"),
                    legal_basis="Cybersecurity Law art. 61",
                    reasons="No rectification by the deadline.",
                ),
            )
            paths["deadline-missed-fined"] = missed

            for name, handle in paths.items():
                await handle.result()
                history = await handle.fetch_history()
                target = HISTORIES / f"case-{VERSION}-{name}.json"
                target.write_text(history.to_json() + "\n")
                print(f"wrote {target.relative_to(REPO_ROOT)} ({len(history.events)} events)")
    finally:
        await env.shutdown()
        await pool.close()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", free_port(), durable=False)
        server.start()
        try:
            asyncio.run(record(server.dsn))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
