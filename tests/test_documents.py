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
    ISSUED_AT_WITHOUT_ZONE,
    DocumentRepository,
    series_year,
)
from activities.steps import StepActivities
from domain.models import Stage, case_workflow_id
from domain.records import (
    UNSTORABLE,
    DocumentDraft,
    DocumentKind,
    DocumentRecord,
    IssueDocumentRequest,
    OpeningRequest,
    PeriodRequest,
    StepRecord,
    StepResult,
)
from tests.conftest import POLICIES, open_case_input

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DECISION = DocumentKind.DECISION_LETTER


def new_office() -> str:
    """A fresh office per test: its series start at 1 whatever other tests issued."""
    return f"of{uuid.uuid4().hex[:8]}"


async def registered_case(pool: asyncpg.Pool, office: str) -> str:
    """A case row for documents to belong to, opened the way the workflow opens it."""
    opened = open_case_input(office=office)
    request = OpeningRequest(
        opened=opened, workflow_id=case_workflow_id(opened.case_id), opened_at=T0
    )
    result = await ActivityEnvironment().run(StepActivities(pool, POLICIES).open_case, request)
    assert not result.duplicate
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
    """One document on its own connection (record_step issues them inside its transaction)."""
    async with pool.acquire() as conn:
        record, _ = await DocumentRepository(conn).issue(request)
    return record


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
    async with pool.acquire() as conn:
        first, written = await DocumentRepository(conn).issue(request)
        again, written_again = await DocumentRepository(conn).issue(request)  # the retry
    assert (written, written_again) == (True, False)
    assert again == first
    assert (first.kind, first.sequence, first.year) == (DECISION, 1, 2026)
    assert first.number == f"{office}-decision_letter-2026-0001"
    assert first.issued_at == T0
    row = await pool.fetchrow("SELECT * FROM documents WHERE case_id = $1", case_id)
    assert await pool.fetchval("SELECT count(*) FROM documents WHERE case_id = $1", case_id) == 1
    assert row is not None and row["id"] == first.document_id
    assert row["idempotency_key"] == f"{case_id}/7/decision_letter"  # the case, not the run
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


# --- documents issued by a step (record_step) -------------------------------------------------


def step_record(case_id: str, office: str, seq: int, *kinds: DocumentKind, **kw: Any) -> StepRecord:
    values: dict[str, Any] = {
        "case_id": case_id,
        "workflow_id": case_workflow_id(case_id),
        "office": office,
        "seq": seq,
        "action": f"step_{seq}",
        "from_stage": Stage.FILED,
        "to_stage": Stage.DEFENCE,
        "actor": "officer.li",
        "occurred_at": T0 + timedelta(hours=seq),
        "documents": [
            DocumentDraft(kind=kind, title=f"{kind.value} {seq}", content={"seq": seq})
            for kind in kinds
        ],
    }
    values.update(kw)
    return StepRecord.model_validate(values)


async def record(pool: asyncpg.Pool, step: StepRecord) -> StepResult:
    return await ActivityEnvironment().run(StepActivities(pool, POLICIES).record_step, step)


async def audit_seqs(pool: asyncpg.Pool, case_id: str) -> list[int]:
    rows = await pool.fetch("SELECT seq FROM case_audit WHERE case_id = $1 ORDER BY id", case_id)
    return [row["seq"] for row in rows]


async def test_a_step_retry_gets_the_same_documents_and_takes_no_number(
    pool: asyncpg.Pool,
) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    notice = DocumentKind.PRIOR_NOTICE
    step = step_record(case_id, office, 2, notice, DECISION)
    first = await record(pool, step)
    again = await record(pool, step)  # the retry after a lost answer
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.documents == first.documents
    assert [d.number for d in first.documents] == [
        f"{office}-prior_notice-2026-0001",
        f"{office}-decision_letter-2026-0001",
    ]
    assert await audit_seqs(pool, case_id) == [1, 2]  # no second audit row
    assert await series_counter(pool, office, 2026, notice) == 1
    assert await series_counter(pool, office, 2026, DECISION) == 1
    audit = await pool.fetchval(
        "SELECT payload FROM case_audit WHERE case_id = $1 AND seq = 2", case_id
    )
    assert audit["documents"] == [d.number for d in first.documents]
    assert audit["document"] == first.documents[0].number
    rows = await pool.fetch(
        "SELECT step, idempotency_key, title, content, issued_at FROM documents"
        " WHERE case_id = $1 ORDER BY id",
        case_id,
    )
    assert [(r["step"], r["idempotency_key"]) for r in rows] == [
        ("2/prior_notice", f"{case_id}/2/prior_notice"),
        ("2/decision_letter", f"{case_id}/2/decision_letter"),
    ]
    assert [r["title"] for r in rows] == ["prior_notice 2", "decision_letter 2"]
    assert rows[0]["content"] == {"seq": 2}
    assert {r["issued_at"] for r in rows} == {step.occurred_at}
    # The next step's letter takes the next number: the retry left no gap.
    later = await record(pool, step_record(case_id, office, 3, DECISION))
    assert [d.sequence for d in later.documents] == [2]
    assert await sequences(pool, office) == [1, 2]
    assert await sequences(pool, office, notice) == [1]


async def test_concurrent_attempts_at_one_step_write_it_once(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    step = step_record(case_id, office, 2, DECISION)
    results = await asyncio.gather(*(record(pool, step) for _ in range(6)))
    assert sorted(r.duplicate for r in results) == [False] + [True] * 5
    assert {tuple(d.number for d in r.documents) for r in results} == {
        (f"{office}-decision_letter-2026-0001",)
    }
    assert await audit_seqs(pool, case_id) == [1, 2]
    assert await series_counter(pool, office, 2026) == 1
    assert await sequences(pool, office) == [1]


async def test_a_failed_step_writes_nothing_and_gives_its_numbers_back(
    pool: asyncpg.Pool,
) -> None:
    """The documents are numbered, then the audit row fails (PostgreSQL refuses a NUL in
    jsonb): the one transaction rolls back, numbers and all."""
    office = new_office()
    case_id = await registered_case(pool, office)
    register_before = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    valid = step_record(case_id, office, 2, DECISION, payload={"note": "ab"})
    # Past the models, which refuse it (as a bug would): PostgreSQL refuses the NUL in jsonb.
    broken = StepRecord.model_construct(**{**dict(valid), "payload": {"note": "a\x00b"}})
    with pytest.raises(ApplicationError) as refused:
        await record(pool, broken)
    assert refused.value.type == UNSTORABLE and refused.value.non_retryable
    assert await audit_seqs(pool, case_id) == [1]
    assert await pool.fetchval("SELECT count(*) FROM documents WHERE case_id = $1", case_id) == 0
    assert await series_counter(pool, office, 2026) is None
    after = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    assert register_before is not None and after is not None
    assert dict(after) == dict(register_before)
    # The retry that works takes number 1.
    fixed = await record(pool, valid)
    assert (fixed.duplicate, [d.sequence for d in fixed.documents]) == (False, [1])


async def test_a_document_without_a_zone_refuses_the_whole_step(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    naive = step_record(case_id, office, 2, DECISION, occurred_at=datetime(2026, 3, 2, 9, 0))
    with pytest.raises(ApplicationError) as refused:
        await record(pool, naive)
    assert refused.value.type == ISSUED_AT_WITHOUT_ZONE and refused.value.non_retryable
    assert await audit_seqs(pool, case_id) == [1]
    assert await series_counter(pool, office, 2026) is None


async def test_a_steps_documents_state_the_deadlines_it_set(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    at = datetime(2026, 9, 29, 2, 0, tzinfo=UTC)  # Tuesday 29 September, 10:00 in Beijing
    step = step_record(
        case_id,
        office,
        2,
        DocumentKind.RECTIFICATION_ORDER,
        occurred_at=at,
        periods=[PeriodRequest(name="rectification", start=at, days=5, kind="working")],
        pending_periods=["rectification"],
    )
    result = await record(pool, step)
    deadline = result.deadlines["rectification"]
    assert deadline.last_day == "2026-10-12"
    content = await pool.fetchval("SELECT content FROM documents WHERE case_id = $1", case_id)
    assert content == {
        "seq": 2,
        "deadlines": {
            "rectification": {"last_day": "2026-10-12", "explanation": deadline.explanation}
        },
    }
    again = await record(pool, step)
    assert (again.documents, again.deadlines) == (result.documents, result.deadlines)


async def test_two_documents_of_one_kind_in_one_step(pool: asyncpg.Pool) -> None:
    office = new_office()
    case_id = await registered_case(pool, office)
    result = await record(pool, step_record(case_id, office, 2, DECISION, DECISION))
    assert len({d.document_id for d in result.documents}) == 2
    assert await sequences(pool, office) == [1, 2]
