"""Every recorded CaseWorkflow history replays on today's code; a changed workflow must not."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.keys import CONVERTER
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


def test_a_recorded_history_is_encrypted() -> None:
    """Histories recorded since the payload codec hold only ciphertext: the Replayer decrypts
    them with the suite's keys (the older ones, recorded in plain JSON, pass through)."""
    encrypted = [path for path in HISTORIES if '"encryption-key-id"' in path.read_text()]
    assert encrypted, "record one: python -m tests.record_histories encrypted-rectified"
    for path in encrypted:
        text = path.read_text()
        assert "json/plain" not in text, f"{path.name} holds a plaintext payload"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[CaseWorkflow],
        data_converter=CONVERTER,
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
    replayer = Replayer(workflows=[ReorderedCaseWorkflow], data_converter=CONVERTER)
    with pytest.raises(workflow.NondeterminismError):
        await replayer.replay_workflow(load(HISTORIES[0]))
