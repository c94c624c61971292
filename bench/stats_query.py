"""How fast the register reads are at scale: GET /stats and GET /cases statements, side by side
with and without the indexes of migrations/0005_read_indexes.sql.

    .venv/bin/python -m bench.stats_query [--cases 100000] [--runs 15] [--seed 7]

It starts a scratch embedded PostgreSQL, applies the migrations, COPYs N synthetic cases with
their audit trails (about five rows a case), then times each statement the endpoints run (the
SQL comes from api/read_models.py) `--runs` times. Then it drops the indexes 0005 creates,
ANALYZEs, and times them again. It prints medians and the ratio: figures, not pass/fail. Each
statement stops repeating after `--budget` seconds so the whole run stays within two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from api.read_models import (
    LOCAL_TZ,
    CaseCursor,
    CaseFilters,
    CaseListReader,
    CaseStatisticsReader,
    StatsScope,
)
from domain.models import Outcome, Stage
from wiring.db import create_pool
from wiring.embedded import EmbeddedPostgres, free_port
from wiring.migrate import migrate
from wiring.settings import REPO_ROOT

MIGRATIONS = REPO_ROOT / "migrations"
READ_INDEXES = MIGRATIONS / "0005_read_indexes.sql"

OFFICES = [f"office-{n:02d}" for n in range(40)]
CATEGORIES = [
    "prohibited_information",
    "personal_information",
    "algorithm_recommendation",
    "counterfeit_site",
    "minors_protection",
    "illegal_app",
    "online_rumours",
    "data_security",
]
WORDS = ["Sunrise", "Jade", "Harbour", "Lotus", "Summit", "Pearl", "Orchid", "Dragon", "Cloud"]
OPEN_STAGES = [
    Stage.FILING,
    Stage.FILED,
    Stage.INTERVIEW_SCHEDULED,
    Stage.RECTIFYING,
    Stage.VERIFYING,
    Stage.INVESTIGATING,
    Stage.LEGAL_REVIEW,
    Stage.DECISION_PENDING,
    Stage.REFERRING,
]
OUTCOMES = [
    ("rectified", 45),
    ("warned", 15),
    ("penalized", 15),
    ("app_removed", 5),
    ("shut_down", 5),
    ("referred", 5),
    ("not_filed", 7),
    ("withdrawn", 3),
]
CASE_COLUMNS = [
    "case_id",
    "workflow_id",
    "subject_kind",
    "subject_name",
    "subject_identifiers",
    "violation_category",
    "legal_basis",
    "severity",
    "office",
    "opened_by",
    "stage",
    "outcome",
    "deadline_at",
    "opened_at",
    "updated_at",
    "closed_at",
    "last_seq",
    "policy_version",
    "campaign_id",
]
AUDIT_COLUMNS = [
    "idempotency_key",
    "case_id",
    "workflow_id",
    "seq",
    "action",
    "from_stage",
    "to_stage",
    "actor",
    "occurred_at",
    "payload",
]


# --- the synthetic register ------------------------------------------------------------------


def _steps(rng: random.Random, outcome: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The audit actions of one case after `case_opened`, in order."""
    steps: list[tuple[str, dict[str, Any]]] = [("filed", {})]
    if rng.random() < 0.45:
        steps += [("interview_scheduled", {}), ("interview_recorded", {})]
    if rng.random() < 0.5:
        steps.append(("rectification_ordered", {"period_days": 15}))
    if rng.random() < 0.03:
        steps.append(("handling_limit_exceeded", {"limit": "90 days"}))
    if outcome == "penalized":
        if rng.random() < 0.7:
            fine = f"{rng.randrange(1, 1000) * 500}.00"
            steps.append(("penalty_decided", {"measure": "fine", "fine_yuan": fine}))
        else:
            steps.append(("penalty_decided", {"measure": "suspend_functions", "fine_yuan": None}))
        steps.append(("decision_served", {}))
    elif outcome in ("app_removed", "shut_down"):
        measure = "app_removal" if outcome == "app_removed" else "shutdown"
        steps.append(("penalty_decided", {"measure": measure, "fine_yuan": None}))
        steps.append(("referral_sent", {"authority": "executor", "closes_with": outcome}))
        steps.append(("referral_acknowledged", {}))
    elif outcome == "referred":
        steps.append(("referral_sent", {"authority": "police", "closes_with": "referred"}))
        steps.append(("referral_acknowledged", {}))
    elif outcome is not None:
        steps.append((f"closed_{outcome}", {}))
    elif rng.random() < 0.04:
        steps.append(("referral_sent", {"authority": "police", "closes_with": None}))
    return steps


def synthetic_register(
    n: int, seed: int, now: datetime
) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """N cases opened between January 2023 and a month ago, with their audit rows."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=LOCAL_TZ)
    span = (now - timedelta(days=30) - start).total_seconds()
    outcomes, weights = zip(*OUTCOMES, strict=True)
    for i in range(n):
        case_id = f"BN-{i:07d}"
        workflow_id = f"case:{case_id}"
        opened_at = start + timedelta(seconds=rng.random() * span)
        age_days = (now - opened_at).days
        closes = rng.random() < (0.85 if age_days > 120 else 0.3)
        closed_at: datetime | None = None
        outcome: str | None = None
        if closes:
            closed_at = min(opened_at + timedelta(days=rng.uniform(1, 200)), now)
            outcome = rng.choices(outcomes, weights)[0]
        steps = _steps(rng, outcome)
        until = closed_at or min(now, opened_at + timedelta(days=100))
        gap = (until - opened_at) / (len(steps) + 1)
        audit: list[tuple[Any, ...]] = [
            (
                f"{workflow_id}/1/case_opened",
                case_id,
                workflow_id,
                1,
                "case_opened",
                None,
                "filing",
                "bench",
                opened_at,
                "{}",
            ),
        ]
        for seq, (action, payload) in enumerate(steps, start=2):
            at = closed_at if closed_at and seq == len(steps) + 1 else opened_at + gap * (seq - 1)
            audit.append(
                (
                    f"{workflow_id}/{seq}/{action}",
                    case_id,
                    workflow_id,
                    seq,
                    action,
                    "filing",
                    "filing",
                    "bench",
                    at,
                    json.dumps(payload),
                )
            )
        stage = "closed" if closes else rng.choice(OPEN_STAGES).value
        deadline = None
        if not closes and rng.random() < 0.6:
            deadline = opened_at + timedelta(days=rng.uniform(10, 150))
        kind = rng.choice(["website", "app", "account", "platform"])
        name = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {kind} {i}"
        identifiers = (
            {"domain": f"s{i}.example.cn"}
            if kind == "website"
            else {"app_package": f"cn.bench.app{i}"}
        )
        campaign = f"campaign-{rng.randrange(50):02d}" if rng.random() < 0.05 else None
        case = (
            case_id,
            workflow_id,
            kind,
            name,
            json.dumps(identifiers),
            rng.choice(CATEGORIES),
            "bench",
            "general",
            rng.choice(OFFICES),
            "bench",
            stage,
            outcome,
            deadline,
            opened_at,
            audit[-1][8],
            closed_at,
            len(audit),
            "2026.1",
            campaign,
        )
        yield case, audit


async def load_register(dsn: str, n: int, seed: int, now: datetime) -> int:
    cases: list[tuple[Any, ...]] = []
    audit: list[tuple[Any, ...]] = []
    for case, rows in synthetic_register(n, seed, now):
        cases.append(case)
        audit.extend(rows)
    # In the order a live register is written: cases as they open, the audit trail as it grows.
    cases.sort(key=lambda row: row[CASE_COLUMNS.index("opened_at")])
    audit.sort(key=lambda row: row[AUDIT_COLUMNS.index("occurred_at")])
    conn = await asyncpg.connect(dsn)  # asyncpg's own jsonb codec: payloads go in as text
    try:
        await conn.copy_records_to_table("cases", records=cases, columns=CASE_COLUMNS)
        await conn.copy_records_to_table("case_audit", records=audit, columns=AUDIT_COLUMNS)
        await conn.execute("VACUUM ANALYZE cases")
        await conn.execute("VACUUM ANALYZE case_audit")
    finally:
        await conn.close()
    return len(audit)


# --- the statements --------------------------------------------------------------------------


def statements(now: datetime, cursor: CaseCursor) -> list[tuple[str, str, list[Any]]]:
    """(label, sql, args): the very statements GET /stats and GET /cases run."""

    def stats(label: str, **scope: Any) -> tuple[str, str, list[Any]]:
        sql, args = CaseStatisticsReader.statement(StatsScope(year=2025, **scope), now=now)
        return label, sql, args

    def page(label: str, after: CaseCursor | None = None, **f: Any) -> tuple[str, str, list[Any]]:
        sql, args = CaseListReader.statement(CaseFilters(**f), limit=50, after=after, now=now)
        return label, sql, args

    return [
        stats("stats 2025, all offices"),
        stats("stats 2025, one office", office="office-07"),
        stats("stats 2025, one category", category="personal_information"),
        stats("stats 2025, office + category", office="office-07", category="illegal_app"),
        page("list: first page"),
        page("list: page after a cursor", after=cursor),
        page("list: office", office="office-07"),
        page("list: office, after a cursor", after=cursor, office="office-07"),
        page("list: category", category="data_security"),
        page("list: stage legal_review", stage=Stage.LEGAL_REVIEW),
        page("list: overdue", overdue=True),
        page("list: deadline within 7 days", deadline_within_days=7),
        page(
            "list: opened in March 2025", opened_from=_d("2025-03-01"), opened_to=_d("2025-03-31")
        ),
        page("list: campaign", campaign="campaign-07"),
        page("list: subject name part", subject="orchid jade"),
        page("list: subject identifier", subject="s4242.example.cn"),
        page("list: closed warned", outcome=Outcome.WARNED),
    ]


def _d(text: str) -> Any:
    return datetime.fromisoformat(text).date()


async def time_statements(
    pool: asyncpg.Pool, todo: list[tuple[str, str, list[Any]]], runs: int, budget: float
) -> dict[str, float]:
    """Median milliseconds per statement (one warm-up run first, not counted)."""
    medians: dict[str, float] = {}
    async with pool.acquire() as conn:
        for label, sql, args in todo:
            await conn.fetch(sql, *args)
            timings: list[float] = []
            deadline = time.perf_counter() + budget
            while len(timings) < runs and time.perf_counter() < deadline:
                began = time.perf_counter()
                await conn.fetch(sql, *args)
                timings.append((time.perf_counter() - began) * 1000)
            medians[label] = statistics.median(timings)
    return medians


def read_index_names() -> list[str]:
    return re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", READ_INDEXES.read_text())


async def main_async(n: int, runs: int, seed: int, budget: float) -> None:
    began = time.perf_counter()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="rectify-bench-") as scratch:
        server = EmbeddedPostgres(
            Path(scratch) / "data", free_port(), database="rectify_bench", durable=False
        )
        server.start()
        try:
            await migrate(server.dsn, MIGRATIONS)
            audit_rows = await load_register(server.dsn, n, seed, now)
            loaded = time.perf_counter() - began
            print(f"{n:,} cases, {audit_rows:,} audit rows loaded in {loaded:.1f} s")
            pool = await create_pool(server.dsn, min_size=1, max_size=2)
            try:
                middle = await pool.fetchrow(
                    "SELECT opened_at, case_id FROM cases ORDER BY opened_at DESC, case_id DESC "
                    "OFFSET $1 LIMIT 1",
                    n // 3,
                )
                assert middle is not None
                todo = statements(now, CaseCursor(middle["opened_at"], middle["case_id"]))
                with_indexes = await time_statements(pool, todo, runs, budget)
                dropped = read_index_names()
                for name in dropped:
                    await pool.execute(f"DROP INDEX {name}")
                await pool.execute("ANALYZE cases; ANALYZE case_audit")
                pool.terminate()  # no cached plan survives into the second run
                pool = await create_pool(server.dsn, min_size=1, max_size=2)
                without = await time_statements(pool, todo, runs, budget)
            finally:
                await pool.close()
        finally:
            server.stop()
    print(f"median of up to {runs} runs, ms; without 0005 = dropped: {', '.join(dropped)}\n")
    print(f"{'statement':<36}{'with 0005':>11}{'without':>11}{'ratio':>9}")
    for label, _, _ in todo:
        fast, slow = with_indexes[label], without[label]
        print(f"{label:<36}{fast:>11.2f}{slow:>11.2f}{slow / fast:>8.1f}x")
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per statement")
    args = parser.parse_args()
    asyncio.run(main_async(args.cases, args.runs, args.seed, args.budget))


if __name__ == "__main__":
    main()
