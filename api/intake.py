"""The detections inbox: every detection is one row in PostgreSQL, routed to its office's case.

A detection belongs to the case of its office, violation category and subject (the route). The
first detection of a route opens case `EV-{hash}-1`, later ones join it, and one after that case
closed opens `-2`, and so on. One statement records a detection and decides its case, so
detections sent at once for one route land on one case and exactly one of them opens it (a
partial unique index; the loser of that race is routed again and joins).

This is the only table the API writes (../shared/ARCHITECTURE.md): the register, the audit trail
and the documents are the activities'. The case's workflow is not told of each detection; the
API tells it coalesced (api/detection_news.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from domain.commands import DetectionRef
from domain.models import Subject

IDENTIFIER_PRIORITY = (
    "unified_social_credit_code",
    "app_package",
    "domain",
    "icp_filing",
    "account_id",
)
LATEST = 3  # detections the case and its view show beside the count
_ATTEMPTS = 5  # routings lost to a concurrent opener or a concurrent same key, then given up


def subject_key(subject: Subject) -> str:
    """The subject's primary identifier, `name=value`: what names it across detections."""
    identifiers = subject.identifiers.model_dump(exclude_none=True)
    name = next(key for key in IDENTIFIER_PRIORITY if key in identifiers)
    return f"{name}={identifiers[name]}"


def case_prefix(office: str, category: str, subject: str) -> str:
    """`EV-{hash}`: office, category and subject key, hashed; a generation number follows."""
    digest = hashlib.sha256(f"{office}|{category}|{subject}".encode()).hexdigest()
    return f"EV-{digest[:16]}"


def body_hash(body: dict[str, Any]) -> str:
    """The hash that tells a repeat of a detection from another body under its key."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Routed:
    """Where a detection went, or why it went nowhere."""

    kind: Literal["opened", "joined", "duplicate", "reused_key", "interrupted", "would_open"]
    case_id: str
    detection: int | None
    stage: str | None  # the case's stage in the register; None: not in it yet
    interrupted: dict[str, Any] | None = None


_ROUTE = """
WITH latest AS (
    SELECT d.generation, c.closed_at IS NOT NULL AS closed, c.interrupted, c.stage
      FROM detections d
      LEFT JOIN cases c ON c.case_id = d.case_id
     WHERE d.office = $2 AND d.violation_category = $3 AND d.subject_key = $4
     ORDER BY d.generation DESC
     LIMIT 1
), target AS (
    SELECT CASE WHEN l.generation IS NULL THEN 1
                WHEN l.closed THEN l.generation + 1
                ELSE l.generation END AS generation,
           (l.generation IS NULL OR l.closed) AS opens,
           CASE WHEN l.closed THEN NULL ELSE l.interrupted END AS interrupted,
           CASE WHEN l.closed THEN NULL ELSE l.stage END AS stage
      FROM (SELECT 1) AS one
      LEFT JOIN latest l ON true
), inserted AS (
    INSERT INTO detections (
        idempotency_key, office, violation_category, subject_key, generation, case_id, opens,
        body_hash, event, acting_key
    )
    SELECT $1, $2, $3, $4, t.generation, $5 || '-' || t.generation, t.opens, $6, $7, $9
      FROM target t
     WHERE t.interrupted IS NULL AND (NOT t.opens OR $8::boolean)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, case_id, opens
)
SELECT 'inserted' AS kind, i.id, i.case_id, i.opens, NULL AS body_hash, t.stage, t.interrupted
  FROM inserted i, target t
UNION ALL
SELECT 'existing', d.id, d.case_id, d.opens, d.body_hash, c.stage, c.interrupted
  FROM detections d
  LEFT JOIN cases c ON c.case_id = d.case_id
 WHERE d.idempotency_key = $1
UNION ALL
SELECT 'target', NULL, $5 || '-' || t.generation, t.opens, NULL, t.stage, t.interrupted
  FROM target t
"""


class DetectionInbox:
    """All SQL of the detections inbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(
        self,
        *,
        key: str,
        office: str,
        category: str,
        subject: str,
        event: dict[str, Any],
        acting_key: str | None,
        may_open: bool,
    ) -> Routed:
        """Record a detection once and route it (one statement). `may_open=False` records it
        only if it joins an open case (the worker is behind: no new case now)."""
        prefix = case_prefix(office, category, subject)
        digest = body_hash(event)
        for _ in range(_ATTEMPTS):
            try:
                rows = await self._pool.fetch(
                    _ROUTE,
                    key,
                    office,
                    category,
                    subject,
                    prefix,
                    digest,
                    event,
                    may_open,
                    acting_key,
                )
            except asyncpg.UniqueViolationError:
                continue  # another detection opened this case just now: join it
            by_kind = {row["kind"]: row for row in rows}
            if (row := by_kind.get("inserted")) is not None:
                return Routed(
                    "opened" if row["opens"] else "joined", row["case_id"], row["id"], row["stage"]
                )
            if (row := by_kind.get("existing")) is not None:
                same = row["body_hash"] == digest
                return Routed(
                    "duplicate" if same else "reused_key",
                    row["case_id"],
                    row["id"],
                    row["stage"],
                    _json(row["interrupted"]),
                )
            target = by_kind["target"]
            if target["interrupted"] is not None:
                return Routed(
                    "interrupted",
                    target["case_id"],
                    None,
                    target["stage"],
                    _json(target["interrupted"]),
                )
            if target["opens"] and not may_open:
                return Routed("would_open", target["case_id"], None, None)
            # Nothing inserted and no row with the key in this statement's snapshot: the same
            # key was being written concurrently. Route again: it is visible now.
        raise RuntimeError(f"detection {key!r} could not be routed after {_ATTEMPTS} attempts")

    async def opener(self, case_id: str) -> dict[str, Any] | None:
        """The event that opened the case (what its workflow is started with)."""
        event = await self._pool.fetchval(
            "SELECT event FROM detections WHERE case_id = $1 AND opens", case_id
        )
        return None if event is None else _json(event)

    async def summary(self, case_id: str) -> tuple[int, list[DetectionRef]]:
        """The case's detection count and its latest few."""
        async with self._pool.acquire() as conn:
            count = await conn.fetchval(
                "SELECT count(*) FROM detections WHERE case_id = $1", case_id
            )
            rows = await conn.fetch(
                "SELECT idempotency_key, event, received_at FROM detections"
                " WHERE case_id = $1 ORDER BY id DESC LIMIT $2",
                case_id,
                LATEST,
            )
        return int(count), [_ref(row) for row in rows]

    async def page(
        self, case_id: str, *, after: int | None, limit: int
    ) -> list[tuple[int, DetectionRef, dict[str, Any]]]:
        """Detections of a case in the order received, after the cursor `after`."""
        rows = await self._pool.fetch(
            "SELECT id, idempotency_key, event, received_at FROM detections"
            " WHERE case_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            case_id,
            after or 0,
            limit,
        )
        return [(row["id"], _ref(row), _json(row["event"])["payload"]) for row in rows]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _ref(row: asyncpg.Record) -> DetectionRef:
    event = _json(row["event"])
    received: datetime = row["received_at"]
    return DetectionRef(
        idempotency_key=row["idempotency_key"],
        type=event["type"],
        source=event["source"],
        occurred_at=datetime.fromisoformat(event["occurred_at"]),
        received_at=received,
    )
