"""The procedure diagram and its tables, generated from the procedure table (domain/procedure.py).

    python -m domain.diagram            # print the Markdown document
    python -m domain.diagram --write    # write it to docs/procedure.md

Pure: the text is a function of `COMMANDS` and `STAGES` and of `TIMERS` below; only `main` touches
the file system. tests/test_procedure_doc.py fails when docs/procedure.md is out of date.
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from domain.models import Stage
from domain.procedure import COMMANDS, OPEN_STAGES, STAGES, UNDECIDED, Command

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "procedure.md"
REGENERATE = "python -m domain.diagram --write"


@dataclass(frozen=True)
class Timer:
    """What the workflow does when a stage's deadline passes (a StageRow's `on_deadline`)."""

    to: tuple[Stage, ...]  # where it moves the case; empty: the case stays
    effect: str  # in words, for the diagram and the stage table


# Keyed by the table's `on_deadline` names; a name missing here fails tests/test_procedure_doc.py.
TIMERS: dict[str, Timer] = {
    "flag_filing_overdue": Timer((), "flags the case overdue"),
    "escalate_missed_rectification": Timer(
        (Stage.INVESTIGATING, Stage.REFERRING), "escalates (the policy's next measure)"
    ),
    "close_defence_window": Timer((Stage.DECISION_PENDING,), "closes the defence window"),
    "flag_service_overdue": Timer((), "flags service overdue"),
    "send_payment_reminder": Timer((Stage.ENFORCEMENT,), "sends the payment reminder"),
    "apply_for_enforcement": Timer((), "applies to the court"),
}

WIDE = 6
"""A command given in more stages than this is drawn once, from a state standing for them all."""

STAGE_SETS: dict[frozenset[Stage], tuple[str, str]] = {
    OPEN_STAGES: ("any_open_stage", "any open stage"),
    UNDECIDED: ("any_undecided_stage", "any stage before a penalty decision"),
}


def missing_timers() -> list[str]:
    """`on_deadline` names of the stage table that `TIMERS` does not describe."""
    return sorted(
        {row.on_deadline for row in STAGES if row.on_deadline} - set(TIMERS),
    )


def _timer(name: str) -> Timer:
    try:
        return TIMERS[name]
    except KeyError:
        raise KeyError(f"domain/diagram.py TIMERS has no entry for on_deadline {name!r}") from None


def _stage_set(stages: frozenset[Stage]) -> tuple[str, str]:
    """The pseudo-state (id, words) a wide command is drawn from."""
    if stages in STAGE_SETS:
        return STAGE_SETS[stages]
    key = zlib.crc32(",".join(sorted(stages)).encode())  # stable across runs, unlike hash()
    return f"stages_{key:08x}", f"any of {len(stages)} stages (see the table)"


def _label(text: str) -> str:
    """Mermaid ends a transition's label at ':' or ';'."""
    return text.replace(":", " -").replace(";", ",")


def _edges() -> dict[tuple[str, str], list[str]]:
    """Every (from, to) pair with its labels, in table order: commands, then timers."""
    edges: dict[tuple[str, str], list[str]] = {}
    for command in COMMANDS:
        sources = (
            [_stage_set(command.stages)[0]]
            if len(command.stages) > WIDE
            else [row.stage.value for row in STAGES if row.stage in command.stages]
        )
        for source in sources:
            for target in command.to:
                edges.setdefault((source, target.value), []).append(command.path)
    for row in STAGES:
        if row.on_deadline is None:
            continue
        timer = _timer(row.on_deadline)
        passes = f"⏰ {row.deadline or row.stage.value} deadline passes"
        if not timer.to:
            edges.setdefault((row.stage.value, row.stage.value), []).append(
                f"{passes}, {timer.effect}"
            )
        for target in timer.to:
            edges.setdefault((row.stage.value, target.value), []).append(passes)
    return edges


def mermaid() -> str:
    """The procedure as a Mermaid state diagram: stages, commands by path, timers (⏰)."""
    lines = ["stateDiagram-v2", f"    [*] --> {STAGES[0].stage.value}"]
    wide = {command.stages for command in COMMANDS if len(command.stages) > WIDE and command.to}
    for stages in sorted(wide, key=lambda s: _stage_set(s)[0]):
        ident, words = _stage_set(stages)
        lines.append(f'    state "{words}" as {ident}')
    for (source, target), labels in _edges().items():
        lines.append(f"    {source} --> {target} : {_label(', '.join(labels))}")
    lines.append(f"    {Stage.CLOSED.value} --> [*]")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _listed(stages: Iterable[Stage]) -> str:
    chosen = frozenset(stages)
    return ", ".join(f"`{row.stage}`" for row in STAGES if row.stage in chosen)


def _stages(stages: Iterable[Stage]) -> str:
    """A command's stages in words: a named set, give or take up to three, else each one."""
    chosen = frozenset(stages)
    for named, (_, words) in STAGE_SETS.items():
        if chosen == named:
            return words
        if chosen > named and len(chosen - named) <= 3:
            return f"{words}; {_listed(chosen - named)}"
        if chosen < named and len(named - chosen) <= 3:
            return f"{words} but {_listed(named - chosen)}"
    return _listed(chosen)


def _moves(command: Command) -> str:
    return ", ".join(f"`{stage}`" for stage in command.to) if command.to else "(stays)"


def commands_table() -> str:
    head = [
        "| command | update | given in | moves to | role | summary |",
        "|---|---|---|---|---|---|",
    ]
    rows = [
        f"| `POST /cases/{{case_id}}/{c.path}` | `{c.name}` | {_stages(c.stages)} "
        f"| {_moves(c)} | {c.role.value} | {_cell(c.summary)} |"
        for c in COMMANDS
    ]
    return "\n".join(head + rows) + "\n"


def _on_deadline(name: str | None) -> str:
    if name is None:
        return ""
    timer = _timer(name)
    where = "moves to " + ", ".join(f"`{stage}`" for stage in timer.to) if timer.to else "stays"
    return f"`{name}`: {timer.effect}; {where}"


def stages_table() -> str:
    head = [
        "| stage | waits for | deadline | when it passes (timer) | reminders |",
        "|---|---|---|---|---|",
    ]
    rows = [
        f"| `{row.stage}` | {_cell(row.waits_for)} | {row.deadline or ''} "
        f"| {_on_deadline(row.on_deadline)} | {'yes' if row.reminders else ''} |"
        for row in STAGES
    ]
    return "\n".join(head + rows) + "\n"


def document() -> str:
    """The whole of docs/procedure.md."""
    return "\n".join(
        [
            "# The enforcement procedure",
            "",
            f"<!-- Generated from domain/procedure.py: do not edit; run `{REGENERATE}`. -->",
            "",
            "Generated from the procedure table (`domain/procedure.py`): one row per command, one",
            "per stage. An arrow is a command, labelled with its path under",
            "`POST /cases/{case_id}/`, or a stage's deadline timer (⏰). Commands that keep the",
            "stage (`(stays)` below) are in the commands table only. A command given in more",
            f"than {WIDE} stages is drawn once, from a state standing for them.",
            "",
            "```mermaid",
            mermaid().rstrip("\n"),
            "```",
            "",
            "## Commands",
            "",
            "Each is a workflow update of the same name answering a receipt; the role gives it",
            "(an admin may give any).",
            "",
            commands_table(),
            "## Stages",
            "",
            stages_table(),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The procedure diagram and tables, as Markdown.")
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH.name} in docs/")
    args = parser.parse_args(argv)
    missing = missing_timers()
    if missing:
        parser.error(f"TIMERS in domain/diagram.py lacks {', '.join(missing)}")
    text = document()
    if args.write:
        DOC_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {DOC_PATH}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
