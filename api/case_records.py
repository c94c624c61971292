"""What PostgreSQL holds about one case: its register row, audit trail and documents.

Reads only (activities write them): GET /cases/{id} falls back to these when the case's
workflow cannot answer, and GET /cases/{id}/history merges them with the Temporal history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from api.read_models import Interruption
from api.schemas import DecidedPenalty, IssuedDocument, RegisterRow
from api.timeline import AuditRow, DocumentRow

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


class CaseRecords:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def register(self, case_id: str) -> RegisterRow | None:
        row = await self._conn.fetchrow(
            """SELECT case_id, workflow_id, stage, outcome, office, violation_category,
                      subject_name, deadline_at, deadline_provisional, opened_at, closed_at
                 FROM cases WHERE case_id = $1""",
            case_id,
        )
        return None if row is None else RegisterRow.model_validate(dict(row))

    async def interruption(self, case_id: str) -> Interruption | None:
        """How the case's run ended, when it ended without an outcome and an operator has not
        decided yet (the register's `interrupted`, set when the API found it)."""
        value = await self._conn.fetchval(
            "SELECT interrupted FROM cases WHERE case_id = $1 AND closed_at IS NULL", case_id
        )
        if value is None:
            return None
        if isinstance(value, str):  # a connection without the pool's JSON codec
            return Interruption.model_validate_json(value)
        return Interruption.model_validate(value)

    async def audit(self, case_id: str) -> list[AuditRow]:
        rows = await self._conn.fetch(
            """SELECT seq, action, from_stage, to_stage, actor, occurred_at, payload
                 FROM case_audit WHERE case_id = $1 ORDER BY seq""",
            case_id,
        )
        return [AuditRow.model_validate(dict(row)) for row in rows]

    async def documents(self, case_id: str) -> list[DocumentRow]:
        rows = await self._conn.fetch(
            """SELECT kind, number, title, actor, issued_at, step
                 FROM documents WHERE case_id = $1 ORDER BY issued_at, id""",
            case_id,
        )
        return [DocumentRow.model_validate(dict(row)) for row in rows]

    async def issued(self, case_id: str) -> list[IssuedDocument]:
        return [
            IssuedDocument(kind=d.kind, number=d.number, issued_at=d.issued_at)
            for d in await self.documents(case_id)
        ]

    async def decided_penalty(self, case_id: str) -> DecidedPenalty | None:
        """The penalty decision of the audit trail (its latest, should there be two)."""
        row = await self._conn.fetchrow(
            """SELECT actor, occurred_at, payload FROM case_audit
                WHERE case_id = $1 AND action = 'penalty_decided'
                ORDER BY seq DESC LIMIT 1""",
            case_id,
        )
        if row is None:
            return None
        payload: dict[str, Any] = row["payload"] or {}
        return DecidedPenalty(
            measure=str(payload.get("measure", "")),
            fine_yuan=payload.get("fine_yuan"),
            legal_basis=payload.get("legal_basis"),
            decided_at=row["occurred_at"],
            decided_by=row["actor"],
        )
