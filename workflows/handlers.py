"""Where step functions register: one handler per row of domain.procedure.COMMANDS, one expiry
action per `on_deadline` of its STAGES. The concern modules (intake, rectification, penalty,
referral) fill these tables when imported; a test checks every row has its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.procedure import COMMAND_BY_NAME
    from workflows.context import CaseContext

Run = Callable[[CaseContext, Any], Awaitable[None]]
Check = Callable[[CaseContext, Any], object]  # raises a refusal; its value is unused
# What a stage does when its deadline passes; it may answer a condition to try again after
# (the rectification deadline waits for a pending extension's decision first).
Expiry = Callable[[CaseContext], Awaitable[Callable[[], bool] | None]]


@dataclass(frozen=True)
class Handler:
    run: Run
    check: Check | None = None  # the command's own rule, beyond its stages (the validator's)
    explain: Check | None = None  # a better refusal than "wrong stage", where the law says why


HANDLERS: dict[str, Handler] = {}
EXPIRIES: dict[str, Expiry] = {}


def handles(
    name: str, *, check: Check | None = None, explain: Check | None = None
) -> Callable[[Run], Run]:
    """Register the step function of the command row `name`."""
    if name not in COMMAND_BY_NAME:
        raise KeyError(f"no command {name!r} in domain.procedure.COMMANDS")

    def register(run: Run) -> Run:
        HANDLERS[name] = Handler(run, check, explain)
        return run

    return register


def on_deadline(name: str) -> Callable[[Expiry], Expiry]:
    def register(expiry: Expiry) -> Expiry:
        EXPIRIES[name] = expiry
        return expiry

    return register
