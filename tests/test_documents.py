"""Documents against a real PostgreSQL: written once per step, numbered 1, 2, 3... without gaps."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.documents import (
    CASE_NOT_REGISTERED,
    DOCUMENT_KEY_REUSED,
    DocumentActivities,
    DocumentRepository,
    series_year,
)
from activities.register import CaseRegisterActivities
from domain.models import Stage, case_workflow_id
from domain.records import (
    AuditEntry,
    CaseOpenedRecord,
    DocumentKind,
    DocumentRecord,
    IssueDocumentRequest,
)
from tests.conftest import open_case_input

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DECISION = DocumentKind.DECISION_LETTER


def new_office() -> str:
    """A fresh office per test: its series start at 1 whatever other tests issued."""
    return f"of{uuid.uuid4().hex[:8]}"


async def registered_case(pool: asyncpg.Pool, office: str) -> str:
    """A case row for documents to belong to, written the way the workflow writes it."""
    opened = open_case_input(office=office)
    entry = AuditEntry(
        case_id=opened.case_id,
        workflow_id=case_workflow_id(opened.case_id),
        seq=1,
        action="case_opened",
        from_stage=None,
        to_stage=Stage.OPENED,
        actor="officer.li",
        occurred_at=T0,
    )
    record = CaseOpenedRecord(opened=opened, entry=entry)
    assert await ActivityEnvironment().run(CaseRegisterActivities(pool).record_case_opened, record)
    return opened.case_id


def issue_request(
    case_id: str,
    office: str,
    step: str,
    kind: DocumentKind = DECISION,
    issued_at: datetime = T0,
    **overrides: Any,
) -> IssueDocumentRequest:
    values: dict[str, Any] = {
        "case_id": case_id,
        "workflow_id": case_workflow_id(case_id),
        "step": step,
        "kind": kind,
        "office": office,
        "actor": "officer.li",
        "issued_at": issued_at,
        "title": f"{kind.value} for {case_id}",
        "content": {"step": step, "fine_yuan": 50_000},
    }
    values.update(overrides)
    return IssueDocumentRequest.model_validate(values)


async def issue(pool: asyncpg.Pool, request: IssueDocumentRequest) -> DocumentRecord:
    return await ActivityEnvironment().run(DocumentActivities(pool).issue_document, request)


async def series_counter(
    pool: asyncpg.Pool, office: str, year: int, kind: DocumentKind = DECISION
) -> int | None:
    value = await pool.fetchval(
        "SELECT last_sequence FROM document_series WHERE office = $1 AND year = $2 AND kind = $3",
        office,
        year,
        kind.value,
    )
    return None if value is None else int(value)


async def sequences(pool: asyncpg.Pool, office: str, kind: DocumentKind = DECISION) -> list[int]:
    rows = await pool.fetch(
        "SELECT sequence FROM documents WHERE office = $1 AND kind = $2 ORDER BY sequence",
        office,
        kind.value,
    )
    return [row["sequence"] for row in rows]


async def test_same_request_twice_writes_one_document(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    request = issue_request(case_id, office, "7/decision_letter")
    first = await issue(pool, request)
    again = await issue(pool, request)  # the retry after a crash
    assert again == first
    assert (first.kind, first.sequence, first.year) == (DECISION, 1, 2026)
    assert first.number == f"{office}-decision_letter-2026-0001"
    assert first.issued_at == T0
    row = await pool.fetchrow("SELECT * FROM documents WHERE case_id = $1", case_id)
    assert await pool.fetchval("SELECT count(*) FROM documents WHERE case_id = $1", case_id) == 1
    assert row is not None and row["id"] == first.document_id
    assert row["idempotency_key"] == f"{case_workflow_id(case_id)}/7/decision_letter"
    assert (row["title"], row["actor"]) == (request.title, "officer.li")
    assert row["content"] == {"step": "7/decision_letter", "fine_yuan": 50_000}
    assert await series_counter(pool, office, 2026) == 1


async def test_concurrent_issues_are_numbered_without_gaps_per_office(pool: asyncpg.Pool) -> None:
    offices = [new_office(), new_office()]
    cases = {office: await registered_case(pool, office) for office in offices}
    requests = [
        issue_request(cases[office], office, f"doc-{n}") for n in range(20) for office in offices
    ]
    records = await asyncio.gather(*(issue(pool, request) for request in requests))
    for office in offices:
        mine = [r for r, q in zip(records, requests, strict=True) if q.office == office]
        assert sorted(r.sequence for r in mine) == list(range(1, 21))
        assert sorted(r.number for r in mine) == [
            f"{office}-decision_letter-2026-{n:04d}" for n in range(1, 21)
        ]
        assert await sequences(pool, office) == list(range(1, 21))
        assert await series_counter(pool, office, 2026) == 20


async def test_retry_takes_no_number(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    a = issue_request(case_id, office, "3/prior_notice")
    first_a = await issue(pool, a)
    retried_a = await issue(pool, a)
    b = await issue(pool, issue_request(case_id, office, "5/decision_letter"))
    assert (first_a.sequence, retried_a.sequence, b.sequence) == (1, 1, 2)
    assert await sequences(pool, office) == [1, 2]


async def test_concurrent_attempts_with_one_key_write_one_document(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    request = issue_request(case_id, office, "9/decision_letter")
    records = await asyncio.gather(*(issue(pool, request) for _ in range(8)))
    assert len({r.document_id for r in records}) == 1
    assert {r.number for r in records} == {f"{office}-decision_letter-2026-0001"}
    assert await series_counter(pool, office, 2026) == 1
    after = await issue(pool, issue_request(case_id, office, "10/decision_letter"))
    assert after.sequence == 2


async def test_attempt_losing_the_key_race_gives_its_number_back(pool: asyncpg.Pool) -> None:
    """Attempt B checks the key while attempt A's insert is uncommitted, then waits on the series
    lock; when A commits, B takes number 2, hits the key, rolls back and returns A's document."""
    office = new_office()
    case_id = await registered_case(pool, office)
    request = issue_request(case_id, office, "4/rectification_order")
    year = series_year(request.issued_at)
    async with pool.acquire() as conn_a:
        tx = conn_a.transaction()
        await tx.start()
        try:
            repo_a = DocumentRepository(conn_a)
            sequence = await repo_a.take_number(office, year, request.kind)
            written_by_a = await repo_a.insert(request, year, sequence)
            attempt_b = asyncio.create_task(issue(pool, request))
            await wait_for_lock_waiter(pool, conn_a.get_server_pid())
            assert not attempt_b.done()
        except BaseException:
            await tx.rollback()
            raise
        await tx.commit()
    returned_to_b = await asyncio.wait_for(attempt_b, 10)
    assert returned_to_b == written_by_a
    assert written_by_a.sequence == 1
    assert await series_counter(pool, office, 2026) == 1
    assert await sequences(pool, office) == [1]


async def wait_for_lock_waiter(pool: asyncpg.Pool, holder_pid: int) -> None:
    """Until some backend waits on a lock held by `holder_pid`."""
    for _ in range(500):
        blocked = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
            holder_pid,
        )
        if blocked:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second attempt never waited on the series lock")


async def test_series_are_separate_per_kind_and_year(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    next_year = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)
    issued = [
        await issue(pool, issue_request(case_id, office, "1", DECISION)),
        await issue(pool, issue_request(case_id, office, "2", DocumentKind.PRIOR_NOTICE)),
        await issue(pool, issue_request(case_id, office, "3", DECISION)),
        await issue(pool, issue_request(case_id, office, "4", DECISION, next_year)),
        await issue(pool, issue_request(case_id, office, "5", DocumentKind.PRIOR_NOTICE)),
    ]
    assert [d.number for d in issued] == [
        f"{office}-decision_letter-2026-0001",
        f"{office}-prior_notice-2026-0001",
        f"{office}-decision_letter-2026-0002",
        f"{office}-decision_letter-2027-0001",
        f"{office}-prior_notice-2026-0002",
    ]
    assert await series_counter(pool, office, 2026, DECISION) == 2
    assert await series_counter(pool, office, 2027, DECISION) == 1
    assert await series_counter(pool, office, 2026, DocumentKind.PRIOR_NOTICE) == 2


async def test_year_is_the_shanghai_year(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    new_year_in_beijing = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)  # 2027-01-01 00:30 +08:00
    late_evening = datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC)  # 2026-12-31 23:59:59 +08:00
    first_of_2027 = await issue(
        pool, issue_request(case_id, office, "a", DECISION, new_year_in_beijing)
    )
    last_of_2026 = await issue(pool, issue_request(case_id, office, "b", DECISION, late_evening))
    assert (first_of_2027.year, first_of_2027.sequence) == (2027, 1)
    assert first_of_2027.number == f"{office}-decision_letter-2027-0001"
    assert (last_of_2026.year, last_of_2026.sequence) == (2026, 1)
    assert series_year(datetime(2027, 1, 1, 0, 30, tzinfo=UTC) - timedelta(hours=8)) == 2027


async def test_failed_insert_gives_its_number_back(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    first = await issue(pool, issue_request(case_id, office, "1"))
    unregistered = issue_request(f"T-missing-{uuid.uuid4().hex[:8]}", office, "1")
    with pytest.raises(ApplicationError) as refused:
        await issue(pool, unregistered)
    assert refused.value.type == CASE_NOT_REGISTERED and refused.value.non_retryable
    assert isinstance(refused.value.__cause__, asyncpg.ForeignKeyViolationError)
    assert await series_counter(pool, office, 2026) == 1
    second = await issue(pool, issue_request(case_id, office, "2"))
    assert (first.sequence, second.sequence) == (1, 2)
    assert await sequences(pool, office) == [1, 2]


async def test_one_key_for_two_different_documents_is_refused(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    await issue(pool, issue_request(case_id, office, "6", DocumentKind.PRIOR_NOTICE))
    with pytest.raises(ApplicationError) as refused:
        await issue(pool, issue_request(case_id, office, "6", DECISION))
    assert refused.value.type == DOCUMENT_KEY_REUSED and refused.value.non_retryable
    assert await series_counter(pool, office, 2026, DECISION) is None


async def test_documents_are_listed_per_case_in_issue_order(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    other_case = await registered_case(pool, office)
    later = await issue(pool, issue_request(case_id, office, "2", issued_at=T0 + timedelta(days=3)))
    earlier = await issue(pool, issue_request(case_id, office, "1", DocumentKind.PRIOR_NOTICE))
    await issue(pool, issue_request(other_case, office, "1"))
    async with pool.acquire() as conn:
        listed = await DocumentRepository(conn).for_case(case_id)
    assert [d.document_id for d in listed] == [earlier.document_id, later.document_id]
    assert [d.record() for d in listed] == [earlier, later]
    assert listed[0].title == f"prior_notice for {case_id}"
    assert listed[0].content == {"step": "1", "fine_yuan": 50_000}
    assert (listed[0].case_id, listed[0].office, listed[0].actor) == (case_id, office, "officer.li")


async def test_documents_and_series_cannot_be_rewritten(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    document = await issue(pool, issue_request(case_id, office, "1"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="documents are records"):
        await pool.execute(
            "UPDATE documents SET title = 'edited' WHERE id = $1", document.document_id
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="documents are records"):
        await pool.execute("DELETE FROM documents WHERE id = $1", document.document_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="count up by one"):
        await pool.execute(
            "UPDATE document_series SET last_sequence = last_sequence + 5 WHERE office = $1", office
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="count up by one"):
        await pool.execute("DELETE FROM document_series WHERE office = $1", office)
    assert await sequences(pool, office) == [1]
    assert await series_counter(pool, office, 2026) == 1


async def test_a_document_cannot_skip_the_series(pool: asyncpg.Pool) -> None:
    """Only the number the series just handed out fits: no made-up sequences, so no gaps."""
    office = new_office()
    case_id = await registered_case(pool, office)
    await issue(pool, issue_request(case_id, office, "1"))
    request = issue_request(case_id, office, "2")
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="series is at 1"):
            await DocumentRepository(conn).insert(request, 2026, 5)
    assert await sequences(pool, office) == [1]
