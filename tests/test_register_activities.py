"""The register activities against a real PostgreSQL: a retry writes nothing twice."""

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
from activities.register import CaseRegisterActivities
from domain.models import Outcome, Stage, case_workflow_id
from domain.records import AuditEntry, CaseOpenedRecord
from tests.conftest import open_case_input

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def entry(case_id: str, seq: int, action: str, to_stage: Stage, **kw: Any) -> AuditEntry:
    return AuditEntry(
        case_id=case_id,
        workflow_id=case_workflow_id(case_id),
        seq=seq,
        action=action,
        from_stage=kw.pop("from_stage", None),
        to_stage=to_stage,
        actor="officer.li",
        occurred_at=T0 + timedelta(minutes=seq),
        payload={"seq": seq},
        **kw,
    )


async def case_row(pool: asyncpg.Pool, case_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    assert row is not None, f"no register row for {case_id}"
    return row


async def open_case(pool: asyncpg.Pool, env: ActivityEnvironment) -> str:
    opened = open_case_input()
    record = CaseOpenedRecord(
        opened=opened, entry=entry(opened.case_id, 1, "case_opened", Stage.OPENED)
    )
    activities = CaseRegisterActivities(pool)
    assert await env.run(activities.record_case_opened, record) is True
    assert await env.run(activities.record_case_opened, record) is False
    return opened.case_id


async def test_case_opened_twice_writes_one_row(pool: asyncpg.Pool) -> None:
    env = ActivityEnvironment()
    case_id = await open_case(pool, env)
    assert await pool.fetchval("SELECT count(*) FROM cases WHERE case_id = $1", case_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM case_audit WHERE case_id = $1", case_id) == 1
    row = await case_row(pool, case_id)
    assert row["subject_identifiers"] == {"domain": f"{case_id.lower()}.example.cn"}
    assert (row["stage"], row["last_seq"]) == ("opened", 1)


async def test_transition_run_twice_writes_once(pool: asyncpg.Pool) -> None:
    env = ActivityEnvironment()
    case_id = await open_case(pool, env)
    activities = CaseRegisterActivities(pool)
    step = entry(case_id, 2, "interview_scheduled", Stage.INTERVIEW_SCHEDULED)
    assert await env.run(activities.record_transition, step) is True
    assert await env.run(activities.record_transition, step) is False  # the retry
    rows = await pool.fetch(
        "SELECT seq, action, payload FROM case_audit WHERE case_id = $1 ORDER BY seq", case_id
    )
    assert [(r["seq"], r["action"]) for r in rows] == [
        (1, "case_opened"),
        (2, "interview_scheduled"),
    ]
    assert rows[1]["payload"] == {"seq": 2}


async def test_register_never_moves_backwards(pool: asyncpg.Pool) -> None:
    env = ActivityEnvironment()
    case_id = await open_case(pool, env)
    activities = CaseRegisterActivities(pool)
    late = entry(case_id, 2, "interview_scheduled", Stage.INTERVIEW_SCHEDULED)
    closing = entry(case_id, 3, "verification_passed", Stage.CLOSED, outcome=Outcome.RECTIFIED)
    await env.run(activities.record_transition, closing)
    await env.run(activities.record_transition, late)  # arrives after a newer step
    row = await case_row(pool, case_id)
    assert (row["stage"], row["outcome"], row["last_seq"]) == ("closed", "rectified", 3)
    assert row["closed_at"] == closing.occurred_at


async def test_audit_trail_is_append_only(pool: asyncpg.Pool) -> None:
    case_id = await open_case(pool, ActivityEnvironment())
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
