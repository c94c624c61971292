"""The case register and the audit trail in PostgreSQL: plain SQL, one place for the aggregate."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from domain.models import Deadline, OpenCaseInput, Stage
from domain.records import StepRecord

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A plain connection or one borrowed from the pool (the stubs make them generic).
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


class CaseRegisterRepository:
    """All SQL for the case register and its audit trail, on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def lock_case(self, case_id: str) -> None:
        """Serialise the attempts at one case's steps until the transaction ends, so a retry
        racing a slow first attempt finds its step written instead of writing it again."""
        await self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", case_id)

    async def insert_case(
        self,
        opened: OpenCaseInput,
        workflow_id: str,
        opened_at: datetime,
        policy_version: str,
    ) -> bool:
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
            workflow_id,
            opened.subject.kind.value,
            opened.subject.name,
            opened.subject.identifiers.model_dump(mode="json", exclude_none=True),
            opened.violation_category,
            opened.legal_basis,
            opened.severity.value,
            opened.office,
            opened.opened_by,
            Stage.FILING.value,
            opened_at,
            policy_version,
            opened.campaign_id,
        )
        return bool(status == "INSERT 0 1")

    async def find_step(self, idempotency_key: str) -> dict[str, Any] | None:
        """The payload of a step written before (a retry), or None."""
        payload = await self._conn.fetchval(
            "SELECT payload FROM case_audit WHERE idempotency_key = $1", idempotency_key
        )
        return None if payload is None else dict(payload)

    async def append_audit(self, step: StepRecord, payload: dict[str, Any]) -> bool:
        """Add the step once; False when its idempotency key was already written."""
        row_id = await self._conn.fetchval(
            """
            INSERT INTO case_audit (
                idempotency_key, case_id, workflow_id, seq, action,
                from_stage, to_stage, actor, occurred_at, payload
            ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id
            """,
            step.idempotency_key,
            step.case_id,
            step.workflow_id,
            step.seq,
            step.action,
            step.from_stage.value if step.from_stage else None,
            step.to_stage.value,
            step.actor,
            step.occurred_at,
            payload,
        )
        return row_id is not None

    async def advance_case(
        self, step: StepRecord, pending: Deadline | None, state: dict[str, Any] | None = None
    ) -> None:
        """Move the register row to the step's stage, with the case as of the step (what an
        operator reopens it from); an older step never overwrites a newer. A step written means
        the case's run is alive: an interruption found earlier is over."""
        await self._conn.execute(
            """
            UPDATE cases
               SET stage = $2, outcome = $3, deadline_at = $4::timestamptz,
                   updated_at = $5::timestamptz,
                   closed_at = CASE WHEN $6::boolean THEN $5::timestamptz END,
                   last_seq = $7::integer, deadline_provisional = $8::boolean,
                   state = COALESCE($9::jsonb, state), interrupted = NULL
             WHERE case_id = $1 AND last_seq < $7::integer
            """,
            step.case_id,
            step.to_stage.value,
            step.outcome.value if step.outcome else None,
            None if step.outcome is not None or pending is None else pending.due_at,
            step.occurred_at,
            step.outcome is not None,
            step.seq,
            bool(pending and pending.provisional and step.outcome is None),
            state,
        )
