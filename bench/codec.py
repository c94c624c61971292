"""What the payload codec costs: Rectify's converter with and without AES-256-GCM, side by side.

    .venv/bin/python -m bench.codec [--rounds 5] [--seconds 1.0]

Three payloads of the sizes a case's history carries: a command (a rectification order), a
case's opening (`CaseRun`) and a continued run's input as recorded in tests/histories (it
carries the case's whole state). Each is converted to a payload and back (what a worker
does for every activity, update and result) with the pydantic converter alone and with the
codec (`wiring/codec.py`); the figures are conversions per second (median of the rounds, arms
alternating within each round) and the ratio codec/plain, plus the bytes each stores. Figures,
not pass/fail; never part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from domain.case import CaseRun
from domain.commands import IssueRectificationOrder
from domain.models import OpenCaseInput, Severity, Subject, SubjectIdentifiers
from wiring.codec import data_converter
from wiring.keys import Keyring

CONTINUED = Path(__file__).resolve().parent.parent / "tests/histories/case-v3-continued-run3.json"


async def samples() -> dict[str, tuple[Any, type[Any]]]:
    opened = OpenCaseInput(
        case_id="BJ-2026-0042",
        subject=Subject(
            kind="website",
            name="北京示例网络科技有限公司",
            identifiers=SubjectIdentifiers(
                domain="news.example.cn", icp_filing="京ICP备12345678号"
            ),
        ),
        violation_category="prohibited_information",
        legal_basis="Cybersecurity Law art. 61",
        severity=Severity.GENERAL,
        office="beijing",
        opened_by="officer.li",
    )
    order = IssueRectificationOrder(
        actor="officer.li", period_days=10, requirements="Remove the listed items and report."
    )
    # A continued run's input as recorded: it carries the whole state of a case mid-path.
    history = WorkflowHistory.from_json("continued", CONTINUED.read_text())
    started = history.events[0].workflow_execution_started_event_attributes
    [continued] = await pydantic_data_converter.decode(started.input.payloads, [CaseRun])
    return {
        "command": (order, IssueRectificationOrder),
        "opening": (CaseRun.of(opened), CaseRun),
        "continued run": (continued, CaseRun),
    }


async def round_trips(
    converter: DataConverter, value: Any, kind: type[Any], seconds: float
) -> float:
    done, until = 0, time.perf_counter() + seconds
    while time.perf_counter() < until:
        for _ in range(50):
            [payload] = await converter.encode([value])
            await converter.decode([payload], [kind])
        done += 50
    return done / seconds


async def main_async(args: argparse.Namespace) -> None:
    arms: dict[str, DataConverter] = {
        "plain": pydantic_data_converter,
        "codec": data_converter(Keyring.generate()),
    }
    print(
        f"{'payload':<15}{'bytes plain':>12}{'bytes codec':>12}"
        f"{'plain /s':>11}{'codec /s':>11}{'codec/plain':>13}"
    )
    for name, (value, kind) in (await samples()).items():
        sizes = {
            arm: len((await c.encode([value]))[0].SerializeToString()) for arm, c in arms.items()
        }
        rates: dict[str, list[float]] = {arm: [] for arm in arms}
        for round_number in range(args.rounds):
            order = list(arms) if round_number % 2 == 0 else list(reversed(arms))
            for arm in order:
                rates[arm].append(await round_trips(arms[arm], value, kind, args.seconds))
        median: Callable[[list[float]], float] = statistics.median
        plain, codec = median(rates["plain"]), median(rates["codec"])
        print(
            f"{name:<15}{sizes['plain']:>12,}{sizes['codec']:>12,}"
            f"{plain:>11,.0f}{codec:>11,.0f}{codec / plain:>12.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per arm per round")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
