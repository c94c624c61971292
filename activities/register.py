"""The case register and the audit trail in PostgreSQL: idempotent writes, plain SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import structlog
from temporalio import activity

from domain.records import AuditEntry, CaseOpenedRecord

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A plain connection or one borrowed from the pool (the stubs make them generic).
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


class CaseRegisterRepository:
    """All SQL for the case aggregate's writes, on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def insert_case(self, record: CaseOpenedRecord) -> bool:
        opened, entry = record.opened, record.entry
        status = await self._conn.execute(
            """
            INSERT INTO cases (
                case_id, workflow_id, subject_kind, subject_name, subject_identifiers,
                violation_category, legal_basis, severity, office, opened_by,
                stage, opened_at, updated_at, last_seq, policy_version, campaign_id
            ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, 0, $13, $14)
            ON CONFLICT (case_id) DO NOTHING
            """,
            opened.case_id,
            entry.workflow_id,
            opened.subject.kind.value,
            opened.subject.name,
            opened.subject.identifiers.model_dump(mode="json", exclude_none=True),
            opened.violation_category,
            opened.legal_basis,
            opened.severity.value,
            opened.office,
            opened.opened_by,
            entry.to_stage.value,
            entry.occurred_at,
            record.policy_version,
            opened.campaign_id,
        )
        return bool(status == "INSERT 0 1")

    async def append_audit(self, entry: AuditEntry) -> bool:
        """Add the entry once; False when this idempotency key was already written."""
        row_id = await self._conn.fetchval(
            """
            INSERT INTO case_audit (
                idempotency_key, case_id, workflow_id, seq, action,
                from_stage, to_stage, actor, occurred_at, payload
            ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id
            """,
            entry.idempotency_key,
            entry.case_id,
            entry.workflow_id,
            entry.seq,
            entry.action,
            entry.from_stage.value if entry.from_stage else None,
            entry.to_stage.value,
            entry.actor,
            entry.occurred_at,
            entry.payload,
        )
        return row_id is not None

    async def advance_case(self, entry: AuditEntry) -> None:
        """Move the register row to the entry's stage; an older entry never overwrites a newer."""
        closed = entry.outcome is not None
        await self._conn.execute(
            """
            UPDATE cases
               SET stage = $2, outcome = $3, deadline_at = $4::timestamptz,
                   updated_at = $5::timestamptz,
                   closed_at = CASE WHEN $6::boolean THEN $5::timestamptz END,
                   last_seq = $7::integer, deadline_provisional = $8::boolean
             WHERE case_id = $1 AND last_seq < $7::integer
            """,
            entry.case_id,
            entry.to_stage.value,
            entry.outcome.value if entry.outcome else None,
            entry.deadline_at,
            entry.occurred_at,
            closed,
            entry.seq,
            entry.deadline_provisional,
        )


class CaseRegisterActivities:
    """Activities that write the register; registered on the worker as bound methods."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="record_case_opened")
    async def record_case_opened(self, record: CaseOpenedRecord) -> bool:
        """Create the register row and the first audit entry; True if written now."""
        async with self._pool.acquire() as conn, conn.transaction():
            repo = CaseRegisterRepository(conn)
            created = await repo.insert_case(record)
            written = await repo.append_audit(record.entry)
            if written:
                await repo.advance_case(record.entry)
        log.info("case registered", created=created, audit_written=written)
        return written

    @activity.defn(name="record_transition")
    async def record_transition(self, entry: AuditEntry) -> bool:
        """Append one step to the audit trail and move the register; True if written now."""
        async with self._pool.acquire() as conn, conn.transaction():
            repo = CaseRegisterRepository(conn)
            written = await repo.append_audit(entry)
            if written:
                await repo.advance_case(entry)
        log.info(
            "case step recorded",
            action=entry.action,
            stage=entry.to_stage.value,
            seq=entry.seq,
            duplicate=not written,
        )
        return written
