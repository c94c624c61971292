"""The step activities against a real PostgreSQL: the opening and every later step are one
transaction each, and a retry gets the same answer back and writes nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.calendar import (
    WorkingDayCalendar,
    arrangement_from_package,
    calendar_period_deadline,
)
from activities.steps import StepActivities
from domain.models import Deadline, OpenCaseInput, Outcome, Stage, case_workflow_id
from domain.records import OpeningRequest, OpeningResult, PeriodRequest, StepRecord, StepResult
from tests.conftest import POLICIES, open_case_input

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def opening(opened: OpenCaseInput, opened_at: datetime = T0) -> OpeningRequest:
    return OpeningRequest(
        opened=opened, workflow_id=case_workflow_id(opened.case_id), opened_at=opened_at
    )


def step(case_id: str, seq: int, action: str, to_stage: Stage, **kw: Any) -> StepRecord:
    values: dict[str, Any] = {
        "case_id": case_id,
        "workflow_id": case_workflow_id(case_id),
        "office": "beijing",
        "seq": seq,
        "action": action,
        "from_stage": None,
        "to_stage": to_stage,
        "actor": "officer.li",
        "occurred_at": T0 + timedelta(minutes=seq),
        "payload": {"seq": seq},
    }
    values.update(kw)
    return StepRecord.model_validate(values)


async def case_row(pool: asyncpg.Pool, case_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    assert row is not None, f"no register row for {case_id}"
    return row


async def audit_rows(pool: asyncpg.Pool, case_id: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM case_audit WHERE case_id = $1 ORDER BY seq, id", case_id)


async def run_open(pool: asyncpg.Pool, request: OpeningRequest) -> OpeningResult:
    return await ActivityEnvironment().run(StepActivities(pool, POLICIES).open_case, request)


async def run_step(pool: asyncpg.Pool, record: StepRecord) -> StepResult:
    return await ActivityEnvironment().run(StepActivities(pool, POLICIES).record_step, record)


# --- the opening ------------------------------------------------------------------------------


async def test_case_opened_twice_writes_one_row(pool: asyncpg.Pool) -> None:
    opened = open_case_input()
    request = opening(opened)
    first = await run_open(pool, request)
    row_before = await case_row(pool, opened.case_id)
    again = await run_open(pool, request)  # the retry after a lost answer
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.filing_deadline == first.filing_deadline
    assert again.policy == first.policy
    assert (first.policy.version, first.policy.prior_cases) == ("2026.1", 0)
    case_id = opened.case_id
    assert await pool.fetchval("SELECT count(*) FROM cases WHERE case_id = $1", case_id) == 1
    (audit,) = await audit_rows(pool, case_id)
    assert (audit["seq"], audit["action"], audit["idempotency_key"]) == (
        1,
        "case_opened",
        f"{case_id}/1",
    )
    assert (audit["from_stage"], audit["to_stage"], audit["actor"]) == (
        None,
        "filing",
        "officer.li",
    )
    assert audit["payload"]["policy_version"] == "2026.1"
    assert audit["payload"]["prior_cases"] == 0
    stored = Deadline.model_validate(audit["payload"]["deadlines"]["filing"])
    assert stored == first.filing_deadline
    row = await case_row(pool, case_id)
    assert dict(row) == dict(row_before)  # the retry wrote nothing
    assert row["subject_identifiers"] == {"domain": f"{case_id.lower()}.example.cn"}
    assert (row["stage"], row["last_seq"], row["policy_version"]) == ("filing", 1, "2026.1")
    assert row["deadline_at"] == first.filing_deadline.due_at
    assert row["deadline_provisional"] is False
    assert row["workflow_id"] == case_workflow_id(case_id)


async def test_the_register_keeps_the_one_opening_time(pool: asyncpg.Pool) -> None:
    # 23:30 on 2 March in Beijing (15:30 UTC): the filing period counts from the Beijing day.
    opened_at = datetime(2026, 3, 2, 15, 30, 12, 345678, tzinfo=UTC)
    opened = open_case_input()
    result = await run_open(pool, opening(opened, opened_at))
    row = await case_row(pool, opened.case_id)
    assert row["opened_at"] == opened_at
    assert row["updated_at"] == opened_at
    (audit,) = await audit_rows(pool, opened.case_id)
    assert audit["occurred_at"] == opened_at
    filing = result.filing_deadline
    assert (filing.days, filing.kind, filing.start_day) == (15, "working", "2026-03-02")
    # A retry carries the same request; it never moves the opening time.
    await run_open(pool, opening(opened, opened_at))
    assert (await case_row(pool, opened.case_id))["opened_at"] == opened_at


async def test_an_opening_key_is_the_case_not_the_run(pool: asyncpg.Pool) -> None:
    """The retry of an opening by a later run (another opened_at) finds the case opened."""
    opened = open_case_input()
    first = await run_open(pool, opening(opened, T0))
    later = await run_open(pool, opening(opened, T0 + timedelta(hours=5)))
    assert later.duplicate and later.filing_deadline == first.filing_deadline
    assert (await case_row(pool, opened.case_id))["opened_at"] == T0
    assert len(await audit_rows(pool, opened.case_id)) == 1


# --- later steps ------------------------------------------------------------------------------


async def test_step_run_twice_writes_once(pool: asyncpg.Pool) -> None:
    opened = open_case_input()
    await run_open(pool, opening(opened))
    case_id = opened.case_id
    record = step(case_id, 2, "filed", Stage.FILED, from_stage=Stage.FILING)
    first = await run_step(pool, record)
    row_before = await case_row(pool, case_id)
    again = await run_step(pool, record)  # the retry
    assert (first.seq, first.duplicate, again.seq, again.duplicate) == (2, False, 2, True)
    assert (first.documents, first.deadlines) == ([], {})
    assert (again.documents, again.deadlines) == ([], {})
    rows = await audit_rows(pool, case_id)
    assert [(r["seq"], r["action"]) for r in rows] == [(1, "case_opened"), (2, "filed")]
    assert rows[1]["payload"] == {"seq": 2}
    assert rows[1]["idempotency_key"] == f"{case_id}/2"
    assert (rows[1]["from_stage"], rows[1]["to_stage"]) == ("filing", "filed")
    row = await case_row(pool, case_id)
    assert dict(row) == dict(row_before)
    assert (row["stage"], row["last_seq"], row["updated_at"]) == ("filed", 2, record.occurred_at)
    assert row["deadline_at"] is None  # the step set no deadline and named none pending


async def test_step_retry_returns_the_deadlines_it_counted(pool: asyncpg.Pool) -> None:
    opened = open_case_input()
    await run_open(pool, opening(opened))
    case_id = opened.case_id
    at = datetime(2026, 9, 29, 2, 0, tzinfo=UTC)  # Tuesday 29 September, 10:00 in Beijing
    record = step(
        case_id,
        2,
        "rectification_ordered",
        Stage.RECTIFYING,
        occurred_at=at,
        periods=[
            PeriodRequest(name="rectification", start=at, days=5, kind="working"),
            PeriodRequest(name="handling", start=at, days=15),
        ],
        pending_periods=["rectification", "handling"],
    )
    first = await run_step(pool, record)
    assert set(first.deadlines) == {"rectification", "handling"}
    assert first.deadlines["rectification"].last_day == "2026-10-12"  # across National Day
    assert first.deadlines["handling"].last_day == "2026-10-14"
    again = await run_step(pool, record)
    assert again.duplicate and again.deadlines == first.deadlines
    (_, audit) = await audit_rows(pool, case_id)
    assert {
        name: Deadline.model_validate(value)
        for name, value in audit["payload"]["deadlines"].items()
    } == first.deadlines
    row = await case_row(pool, case_id)
    # The register shows the latest of the named pending periods.
    assert row["deadline_at"] == first.deadlines["handling"].due_at
    assert row["deadline_provisional"] is False


async def test_register_never_moves_backwards(pool: asyncpg.Pool) -> None:
    opened = open_case_input()
    await run_open(pool, opening(opened))
    case_id = opened.case_id
    late = step(case_id, 2, "filed", Stage.FILED, from_stage=Stage.FILING)
    closing = step(case_id, 3, "verification_passed", Stage.CLOSED, outcome=Outcome.RECTIFIED)
    await run_step(pool, closing)
    row_closed = await case_row(pool, case_id)
    written = await run_step(pool, late)  # arrives after a newer step
    assert not written.duplicate  # its audit row is written: the trail keeps every step
    row = await case_row(pool, case_id)
    assert dict(row) == dict(row_closed)
    assert (row["stage"], row["outcome"], row["last_seq"]) == ("closed", "rectified", 3)
    assert row["closed_at"] == closing.occurred_at
    assert row["deadline_at"] is None
    assert [r["seq"] for r in await audit_rows(pool, case_id)] == [1, 2, 3]


async def test_audit_trail_is_append_only(pool: asyncpg.Pool) -> None:
    opened = open_case_input()
    await run_open(pool, opening(opened))
    case_id = opened.case_id
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("UPDATE case_audit SET actor = 'someone' WHERE case_id = $1", case_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("DELETE FROM case_audit WHERE case_id = $1", case_id)
    assert await pool.fetchval("SELECT count(*) FROM case_audit WHERE case_id = $1", case_id) == 1


def test_calendar_deadline_ends_at_midnight_shanghai() -> None:
    # Ordered at 23:30 on 2026-03-02 in Beijing (15:30 UTC): day one is 03-03.
    calendar_2026 = WorkingDayCalendar.of(arrangement_from_package(2026))
    ordered = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
    deadline = calendar_period_deadline(ordered, 15, calendar_2026)
    assert deadline.last_day == "2026-03-17"
    assert deadline.due_at == datetime(2026, 3, 17, 16, 0, tzinfo=UTC)
    assert deadline.kind == "calendar" and "2026-03-17" in deadline.explanation
    assert (deadline.start_day, deadline.provisional) == ("2026-03-02", False)
    # 16:30 UTC is already 03-03 in Beijing: the count starts a day later.
    later = calendar_period_deadline(ordered + timedelta(hours=1), 15, calendar_2026)
    assert later.last_day == "2026-03-18"
