"""Every recorded CaseWorkflow history replays on today's code; a changed workflow must not."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker.main import workflow_runner
from workflows.case import CaseWorkflow

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("case-*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"case:{path.stem}", path.read_text())


def test_histories_are_recorded() -> None:
    assert len(HISTORIES) >= 3, "tests/histories must hold the recorded case paths"


def test_continued_runs_are_recorded() -> None:
    """Runs that start from a carried state (continue-as-new) replay too: at least two."""
    continued = [
        path
        for path in HISTORIES
        if load(path)
        .events[0]
        .workflow_execution_started_event_attributes.continued_execution_run_id
    ]
    assert len(continued) >= 2, "record them: python -m tests.record_histories continued"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[CaseWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),  # the worker's own sandbox settings
    )
    result = await replayer.replay_workflow(load(path))
    assert result.replay_failure is None


@workflow.defn(name="CaseWorkflow", sandboxed=False)
class ReorderedCaseWorkflow:
    """A careless change: the case sleeps before opening itself, with no `patched` guard."""

    @workflow.run
    async def run(self, opened: dict[str, object]) -> None:
        await workflow.sleep(60)


async def test_unguarded_change_fails_replay() -> None:
    replayer = Replayer(workflows=[ReorderedCaseWorkflow], data_converter=pydantic_data_converter)
    with pytest.raises(workflow.NondeterminismError):
        await replayer.replay_workflow(load(HISTORIES[0]))
