"""Record CaseWorkflow histories for the replay tests: `python -m tests.record_histories`.

Run it when a new workflow version lands (after guarding the change with `workflow.patched`), and
commit the new files beside the old ones: old histories must keep replaying for as long as cases
of that version may be running. The files of the first two workflow shapes were removed with them
(issue 7: nothing deployed ran them; `make clean-data` clears a development machine's cases).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.calendar import seed_calendar
from activities.policy import load_policies
from tests.case_driver import SUPERVISOR, Case, open_case
from tests.conftest import _test_server_path
from tests.keys import CONVERTER
from wiring.db import create_pool
from wiring.embedded import EmbeddedPostgres, free_port
from wiring.migrate import migrate
from wiring.search_attributes import ensure_search_attributes
from wiring.settings import REPO_ROOT
from worker.main import build_worker
from workflows import search

HISTORIES = Path(__file__).resolve().parent / "histories"
VERSION = "v3"
QUEUE = "record-histories"


async def rectified(case: Case) -> None:
    await case.to_rectifying()
    await case.do("request_extension", actor="party:rep")
    await case.do("decide_extension", actor=SUPERVISOR)
    await case.do("submit_rectification_report", actor="party:rep")
    await case.do("record_verification")


async def deadline_missed_warned(case: Case) -> None:
    await case.to_rectifying()
    deadline = (await case.state()).deadlines["rectification"]
    await case.sleep_until(deadline.due_at, after=timedelta(hours=1))
    await case.to_notice()
    await case.do("notify_penalty", measure="warning")
    await case.do("record_statement", actor="party:rep")
    window = (await case.state()).deadlines["defence"]
    await case.sleep_until(window.due_at, after=timedelta(hours=1))
    await case.do("decide_penalty", measure="warning")
    await case.do("serve_decision", served_at=(await case.now()).isoformat())


async def fined_after_hearing(case: Case) -> None:
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    await case.to_notice()
    await case.do("notify_penalty", measure="fine", fine_yuan="300000")
    await case.do("request_hearing", actor="party:rep")
    hearing_at = await case.now() + timedelta(days=20)
    await case.do(
        "schedule_hearing", hearing_at=hearing_at.isoformat(), place="Hall 1", chair="hearing.chair"
    )
    await case.sleep_until(hearing_at, after=timedelta(hours=2))
    await case.do("record_hearing")
    await case.do("decide_penalty", measure="fine", fine_yuan="200000")
    await case.do("serve_decision", served_at=(await case.now()).isoformat())
    await case.do("record_payment", amount_yuan="200000", paid_at=(await case.now()).isoformat())


async def referred_then_withdrawn(case: Case) -> None:
    await case.do("decide_filing")
    await case.do("refer", authority="police", criminal=True, reasons="A criminal clue.")
    await case.do("approve_referral", actor=SUPERVISOR, referral_id=1)
    await case.do("record_transfer", referral_id=1)
    await case.do("acknowledge_referral", referral_id=1)
    await case.do("withdraw")


PATHS = {
    "referred-then-withdrawn": referred_then_withdrawn,
    "rectified-after-extension": rectified,
    "deadline-missed-warned": deadline_missed_warned,
    "fined-after-hearing": fined_after_hearing,
    # The rectified path again, continued as new every few commands: one file per run, so the
    # runs that start from a carried state are replayed too.
    "continued": rectified,
    # Recorded through the payload codec (every history since is): proves the Replayer decrypts.
    "encrypted-rectified": rectified,
}
HISTORY_LIMITS = {"continued": 30}


async def record(dsn: str, names: list[str]) -> None:
    await migrate(dsn, REPO_ROOT / "migrations")
    await seed_calendar(dsn)
    pool = await create_pool(dsn)
    policies = load_policies(REPO_ROOT / "policies")
    try:
        for name in names:
            drive = PATHS[name]
            env = await WorkflowEnvironment.start_time_skipping(
                data_converter=CONVERTER,
                test_server_existing_path=_test_server_path(),
            )
            try:
                await ensure_search_attributes(env.client, "default", search.ALL)
                async with build_worker(env.client, pool, QUEUE, policies):
                    case = await open_case(env, pool, QUEUE, history_limit=HISTORY_LIMITS.get(name))
                    await drive(case)
                    await case.handle.result()
                    runs = await case.runs()
            finally:
                await env.shutdown()
            for number, history in enumerate(runs, start=1):
                suffix = f"-run{number}" if len(runs) > 1 else ""
                target = HISTORIES / f"case-{VERSION}-{name}{suffix}.json"
                target.write_text(history.to_json() + "\n")
                print(f"wrote {target.relative_to(REPO_ROOT)} ({len(history.events)} events)")
    finally:
        await pool.close()


def main() -> int:
    """Record the paths named on the command line (all of them without any). A history that has
    landed is never recorded again: cases of that version may be running."""
    names = sys.argv[1:] or list(PATHS)
    unknown = [name for name in names if name not in PATHS]
    if unknown:
        print(f"unknown path(s): {', '.join(unknown)}; known: {', '.join(PATHS)}")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", free_port(), durable=False)
        server.start()
        try:
            asyncio.run(record(server.dsn, names))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
