"""Enforcement documents in PostgreSQL: written once per step, numbered without gaps.

Each document takes the next number of its series (office, Asia/Shanghai year, kind) in the same
transaction as its insert. The series row stays locked until commit, so concurrent issues get
consecutive numbers, and a transaction that fails gives its number back: no gaps, no duplicates.
A retried request finds its document by idempotency key and takes no number.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from temporalio.exceptions import ApplicationError

from domain.records import DocumentKind, DocumentRecord, IssueDocumentRequest

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A plain connection or one borrowed from the pool (the stubs make them generic).
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

SERIES_TZ = ZoneInfo("Asia/Shanghai")

# ApplicationError types, raised non-retryable: retrying cannot fix any of them.
CASE_NOT_REGISTERED = "CaseNotRegistered"
DOCUMENT_KEY_REUSED = "DocumentKeyReused"
ISSUED_AT_WITHOUT_ZONE = "IssuedAtWithoutZone"

_IDEMPOTENCY_CONSTRAINT = "documents_idempotency_key_key"
_CASE_CONSTRAINT = "documents_case_id_fkey"
_RECORD_COLUMNS = "id AS document_id, kind, number, sequence, year, issued_at"


def series_year(issued_at: datetime) -> int:
    """The calendar year in China when the document was issued: its series' year."""
    if issued_at.utcoffset() is None:
        raise ApplicationError(
            f"issued_at {issued_at.isoformat()} has no time zone: its year is ambiguous",
            type=ISSUED_AT_WITHOUT_ZONE,
            non_retryable=True,
        )
    return issued_at.astimezone(SERIES_TZ).year


def document_number(office: str, kind: DocumentKind, year: int, sequence: int) -> str:
    return f"{office}-{kind.value}-{year}-{sequence:04d}"


class CaseDocument(DocumentRecord):
    """A document as a case lists it: the record plus what it says and who issued it."""

    case_id: str
    workflow_id: str
    step: str
    office: str
    title: str
    content: dict[str, Any]
    actor: str
    created_at: datetime

    def record(self) -> DocumentRecord:
        """Just the record, as the activity returns it (the contract refuses extra fields)."""
        return DocumentRecord.model_validate(
            self.model_dump(include=set(DocumentRecord.model_fields))
        )


_CASE_DOCUMENT_COLUMNS = (
    f"{_RECORD_COLUMNS}, case_id, workflow_id, step, office, title, content, actor, created_at"
)


class DocumentRepository:
    """All SQL for documents and their number series, on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def find(self, idempotency_key: str) -> CaseDocument | None:
        row = await self._conn.fetchrow(
            f"SELECT {_CASE_DOCUMENT_COLUMNS} FROM documents WHERE idempotency_key = $1",
            idempotency_key,
        )
        return None if row is None else CaseDocument.model_validate(dict(row))

    async def take_number(self, office: str, year: int, kind: DocumentKind) -> int:
        """The series' next number. Call inside the transaction that inserts the document: the
        series row stays locked until it ends, and a rollback gives the number back."""
        sequence = await self._conn.fetchval(
            """
            INSERT INTO document_series (office, year, kind, last_sequence)
            VALUES ($1, $2, $3, 1)
            ON CONFLICT (office, year, kind)
            DO UPDATE SET last_sequence = document_series.last_sequence + 1
            RETURNING last_sequence
            """,
            office,
            year,
            kind.value,
        )
        return int(sequence)

    async def insert(
        self, request: IssueDocumentRequest, year: int, sequence: int
    ) -> DocumentRecord:
        row = await self._conn.fetchrow(
            f"""
            INSERT INTO documents (
                idempotency_key, case_id, workflow_id, step, kind, office,
                year, sequence, number, title, content, actor, issued_at
            ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            RETURNING {_RECORD_COLUMNS}
            """,
            request.idempotency_key,
            request.case_id,
            request.workflow_id,
            request.step,
            request.kind.value,
            request.office,
            year,
            sequence,
            document_number(request.office, request.kind, year, sequence),
            request.title,
            request.content,
            request.actor,
            request.issued_at,
        )
        assert row is not None  # INSERT ... RETURNING without ON CONFLICT returns the row
        return DocumentRecord.model_validate(dict(row))

    async def issue(self, request: IssueDocumentRequest) -> tuple[DocumentRecord, bool]:
        """Write the document once; (record, True) if written now, (the earlier one, False) if
        this idempotency key was already written (a retry)."""
        existing = await self.find(request.idempotency_key)
        if existing is not None:
            return _same_document(existing, request), False
        year = series_year(request.issued_at)
        try:
            async with self._conn.transaction():
                sequence = await self.take_number(request.office, year, request.kind)
                record = await self.insert(request, year, sequence)
        except asyncpg.UniqueViolationError as exc:
            # Another attempt with this key committed while we waited on the series lock; our
            # transaction, and the number it took, rolled back.
            if exc.constraint_name != _IDEMPOTENCY_CONSTRAINT:
                raise
            existing = await self.find(request.idempotency_key)
            if existing is None:
                raise
            return _same_document(existing, request), False
        except asyncpg.ForeignKeyViolationError as exc:
            if exc.constraint_name != _CASE_CONSTRAINT:
                raise
            raise ApplicationError(
                f"case {request.case_id} is not in the register: no document for it",
                type=CASE_NOT_REGISTERED,
                non_retryable=True,
            ) from exc
        return record, True

    async def issue_in_step(self, request: IssueDocumentRequest) -> DocumentRecord:
        """Issue a document inside the step's transaction (which holds the case's lock)."""
        record, _ = await self.issue(request)
        return record

    async def for_step(self, case_id: str, seq: int) -> list[DocumentRecord]:
        """The documents one step issued, in the order it issued them."""
        rows = await self._conn.fetch(
            f"""
            SELECT {_RECORD_COLUMNS}
              FROM documents
             WHERE case_id = $1 AND split_part(step, '/', 1) = $2
             ORDER BY id
            """,
            case_id,
            str(seq),
        )
        return [DocumentRecord.model_validate(dict(row)) for row in rows]

    async def for_case(self, case_id: str) -> list[CaseDocument]:
        rows = await self._conn.fetch(
            f"""
            SELECT {_CASE_DOCUMENT_COLUMNS}
              FROM documents
             WHERE case_id = $1
             ORDER BY issued_at, id
            """,
            case_id,
        )
        return [CaseDocument.model_validate(dict(row)) for row in rows]


def _same_document(existing: CaseDocument, request: IssueDocumentRequest) -> DocumentRecord:
    """A retry gets back the document it wrote. A different document under the same key is a
    bug in the caller's step keys; handing back the other document would hide it."""
    wrote = (existing.case_id, existing.office, existing.kind, existing.issued_at)
    asked = (request.case_id, request.office, request.kind, request.issued_at)
    if wrote != asked:
        raise ApplicationError(
            f"idempotency key {request.idempotency_key} already holds {existing.number} "
            f"(case {existing.case_id}); it cannot also be a {request.kind.value} of case "
            f"{request.case_id} issued at {request.issued_at.isoformat()}",
            type=DOCUMENT_KEY_REUSED,
            non_retryable=True,
        )
    return existing.record()
