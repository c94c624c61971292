"""docs/procedure.md is generated from the procedure table, and the diagram shows all of it."""

from __future__ import annotations

import re

from domain import diagram
from domain.models import Stage
from domain.procedure import COMMANDS, STAGES


def test_every_timer_of_the_stage_table_is_described() -> None:
    assert not diagram.missing_timers(), (
        f"add {diagram.missing_timers()} to TIMERS in domain/diagram.py"
    )
    used = {row.on_deadline for row in STAGES if row.on_deadline}
    assert set(diagram.TIMERS) == used, "TIMERS names a timer the stage table no longer has"


def test_docs_procedure_md_is_up_to_date() -> None:
    current = diagram.DOC_PATH.read_text(encoding="utf-8") if diagram.DOC_PATH.exists() else ""
    assert current == diagram.document(), (
        f"docs/procedure.md is out of date with domain/procedure.py: run `{diagram.REGENERATE}`"
    )


def _transitions() -> list[tuple[str, str, str]]:
    found = re.findall(r"^\s+(\S+) --> (\S+)(?: : (.*))?$", diagram.mermaid(), re.MULTILINE)
    return [(source, target, label) for source, target, label in found]


def test_every_stage_and_every_move_of_the_table_is_drawn() -> None:
    transitions = _transitions()
    drawn = {name for source, target, _ in transitions for name in (source, target)}
    assert {stage.value for stage in Stage} <= drawn
    for command in COMMANDS:
        for target in command.to:
            assert any(
                t == target.value and command.path in label.split(", ")
                for _, t, label in transitions
            ), f"{command.name} -> {target} is not drawn"
    for row in STAGES:
        if row.on_deadline:
            timer = diagram.TIMERS[row.on_deadline]
            for target in timer.to or (row.stage,):
                assert any(
                    (s, t) == (row.stage.value, target.value) and "⏰" in label
                    for s, t, label in transitions
                ), f"the {row.deadline} timer of {row.stage} is not drawn"


def test_narrow_commands_are_drawn_from_each_of_their_stages() -> None:
    edges = {(s, t, p) for s, t, label in _transitions() for p in label.split(", ")}
    for command in COMMANDS:
        if len(command.stages) > diagram.WIDE:
            continue
        for stage in command.stages:
            for target in command.to:
                assert (stage.value, target.value, command.path) in edges


def test_every_command_and_stage_has_a_table_row() -> None:
    text = diagram.document()
    for command in COMMANDS:
        assert f"| `POST /cases/{{case_id}}/{command.path}` | `{command.name}` |" in text
    for row in STAGES:
        assert f"| `{row.stage}` | {row.waits_for} |" in text
