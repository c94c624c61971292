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
from wiring.keys import Keyring

IDENTIFIER_PRIORITY = (
    "unified_social_credit_code",
    "app_package",
    "domain",
    "icp_filing",
    "account_id",
)
LATEST = 3  # detections the case and its view show beside the count
_ATTEMPTS = 5  # routings lost to a concurrent opener or a concurrent same key, then given up
_BATCH_ATTEMPTS = 3  # a batch lost to concurrent openers this often is routed item by item


def subject_key(subject: Subject) -> str:
    """The subject's primary identifier, `name=value`: what names it across detections."""
    identifiers = subject.identifiers
    name = next(key for key in IDENTIFIER_PRIORITY if getattr(identifiers, key) is not None)
    return f"{name}={getattr(identifiers, name)}"


def prefix_of(case_id: str) -> str:
    """`EV-{hash}` of `EV-{hash}-{generation}`."""
    return case_id.rsplit("-", 1)[0]


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
    SELECT d.generation, d.case_id, c.closed_at IS NOT NULL AS closed, c.interrupted, c.stage
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
           -- A route keeps the prefix of its first case (routes from before the keyed hash too).
           COALESCE(regexp_replace(l.case_id, '-[0-9]+$', ''), $5) AS prefix,
           CASE WHEN l.closed THEN NULL ELSE l.interrupted END AS interrupted,
           CASE WHEN l.closed THEN NULL ELSE l.stage END AS stage
      FROM (SELECT 1) AS one
      LEFT JOIN latest l ON true
), inserted AS (
    INSERT INTO detections (
        idempotency_key, office, violation_category, subject_key, generation, case_id, opens,
        body_hash, event, acting_key
    )
    SELECT $1, $2, $3, $4, t.generation, t.prefix || '-' || t.generation, t.opens, $6, $7, $9
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
SELECT 'target', NULL, t.prefix || '-' || t.generation, t.opens, NULL, t.stage, t.interrupted
  FROM target t
"""


@dataclass(frozen=True)
class Sighting:
    """A detection to record: its key, route, body (hashed) and sender."""

    key: str
    office: str
    category: str
    subject: str
    event: dict[str, Any]
    acting_key: str | None
    may_open: bool

    @property
    def route(self) -> tuple[str, str, str]:
        return (self.office, self.category, self.subject)


# A batch in three statements instead of one per detection: the keys already recorded, each
# route's latest case, then one multi-row INSERT of the rest.
_KNOWN_KEYS = """
SELECT d.idempotency_key, d.id, d.case_id, d.body_hash, c.stage, c.interrupted
  FROM detections d
  LEFT JOIN cases c ON c.case_id = d.case_id
 WHERE d.idempotency_key = ANY($1::text[])
"""
_LATEST_CASES = """
SELECT r.office, r.category, r.subject_key, l.generation, l.case_id, l.closed, l.interrupted,
       l.stage
  FROM unnest($1::text[], $2::text[], $3::text[]) AS r(office, category, subject_key)
  LEFT JOIN LATERAL (
      SELECT d.generation, d.case_id, c.closed_at IS NOT NULL AS closed, c.interrupted, c.stage
        FROM detections d
        LEFT JOIN cases c ON c.case_id = d.case_id
       WHERE d.office = r.office AND d.violation_category = r.category
         AND d.subject_key = r.subject_key
       ORDER BY d.generation DESC
       LIMIT 1
  ) AS l ON true
"""
_INSERT_MANY = """
INSERT INTO detections (
    idempotency_key, office, violation_category, subject_key, generation, case_id, opens,
    body_hash, event, acting_key
)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::boolean[],
    $8::text[], $9::jsonb[], $10::text[]
)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING idempotency_key, id
"""


class DetectionInbox:
    """All SQL of the detections inbox. Recording needs the keyring: a route's case id is a
    keyed hash of its office, category and subject (`Keyring.case_prefix`), so no one holding a
    list of domains can tell from Temporal's workflow ids which of them have cases."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring | None = None) -> None:
        self._pool = pool
        self._keyring = keyring

    def _prefix(self, route: tuple[str, str, str]) -> str:
        if self._keyring is None:
            raise RuntimeError("DetectionInbox records detections only with the keyring")
        return self._keyring.case_prefix(*route)

    async def record(self, sighting: Sighting) -> Routed:
        """Record a detection once and route it (one statement). `may_open=False` records it
        only if it joins an open case (the worker is behind: no new case now)."""
        key, event, subject = sighting.key, sighting.event, sighting.subject
        prefix = self._prefix(sighting.route)
        digest = body_hash(event)
        for _ in range(_ATTEMPTS):
            try:
                rows = await self._pool.fetch(
                    _ROUTE,
                    key,
                    sighting.office,
                    sighting.category,
                    subject,
                    prefix,
                    digest,
                    event,
                    sighting.may_open,
                    sighting.acting_key,
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
            if target["opens"] and not sighting.may_open:
                return Routed("would_open", target["case_id"], None, None)
            # Nothing inserted and no row with the key in this statement's snapshot: the same
            # key was being written concurrently. Route again: it is visible now.
        raise RuntimeError(f"detection {key!r} could not be routed after {_ATTEMPTS} attempts")

    async def record_many(self, sightings: list[Sighting]) -> list[Routed]:
        """Record a batch's detections, each once, routed as `record` would route them one by
        one in the batch's order — in three statements. A race with another request for the
        same keys or routes (a concurrent opener) is settled by routing those again."""
        if not sightings:
            return []
        for _ in range(_BATCH_ATTEMPTS):
            try:
                return await self._record_many(sightings)
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                continue  # another request opened one of these cases just now: route again
        return [await self.record(sighting) for sighting in sightings]

    async def _record_many(self, sightings: list[Sighting]) -> list[Routed]:
        digests = [body_hash(s.event) for s in sightings]
        routes = sorted({s.route for s in sightings})
        async with self._pool.acquire() as conn:
            known = {
                row["idempotency_key"]: row
                for row in await conn.fetch(_KNOWN_KEYS, [s.key for s in sightings])
            }
            latest = {
                (row["office"], row["category"], row["subject_key"]): row
                for row in await conn.fetch(_LATEST_CASES, *map(list, zip(*routes, strict=True)))
            }
            results: list[Routed | None] = [None] * len(sightings)
            pending: dict[str, int] = {}  # key → the item that inserts it
            opened: dict[tuple[str, str, str], str] = {}  # routes this batch opens
            rows: list[tuple[Any, ...]] = []
            for index, (sighting, digest) in enumerate(zip(sightings, digests, strict=True)):
                row = known.get(sighting.key)
                if row is not None:
                    same = row["body_hash"] == digest
                    results[index] = Routed(
                        "duplicate" if same else "reused_key",
                        row["case_id"],
                        row["id"],
                        row["stage"],
                        _json(row["interrupted"]),
                    )
                    continue
                if sighting.key in pending:  # twice in this batch: the first one counts
                    continue
                route = latest[sighting.route]
                known_case = route["case_id"]
                prefix = prefix_of(known_case) if known_case else self._prefix(sighting.route)
                generation, opens, interrupted, stage = _target(route)
                case_id = f"{prefix}-{generation}"
                if interrupted is not None:
                    results[index] = Routed("interrupted", case_id, None, stage, interrupted)
                    continue
                opener = opens and sighting.route not in opened
                if opener and not sighting.may_open:
                    results[index] = Routed("would_open", case_id, None, None)
                    continue
                if opener:
                    opened[sighting.route] = case_id
                pending[sighting.key] = index
                rows.append(
                    (
                        sighting.key,
                        sighting.office,
                        sighting.category,
                        sighting.subject,
                        generation,
                        case_id,
                        opener,
                        digest,
                        sighting.event,
                        sighting.acting_key,
                    )
                )
            inserted: dict[str, int] = {}
            if rows:
                # In one order (case, then key) for every request, so two batches opening the
                # same cases wait for each other instead of deadlocking.
                ordered = sorted(rows, key=lambda row: (row[5], row[0]))
                columns = [list(column) for column in zip(*ordered, strict=True)]
                inserted = {
                    row["idempotency_key"]: row["id"]
                    for row in await conn.fetch(_INSERT_MANY, *columns)
                }
        by_key = {row[0]: row for row in rows}
        for index, sighting in enumerate(sightings):
            if results[index] is not None:
                continue
            first = pending.get(sighting.key)
            written = by_key[sighting.key]
            if first == index and sighting.key in inserted:
                results[index] = Routed(
                    "opened" if written[6] else "joined",
                    written[5],
                    inserted[sighting.key],
                    None if written[6] else _target(latest[sighting.route])[3],
                )
            elif first != index and sighting.key in inserted:  # a repeat within the batch
                same = written[7] == digests[index]
                results[index] = Routed(
                    "duplicate" if same else "reused_key", written[5], inserted[sighting.key], None
                )
            else:  # written by another request meanwhile: route it on its own
                results[index] = await self.record(sighting)
        return [result for result in results if result is not None]

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


def _target(route: asyncpg.Record) -> tuple[int, bool, dict[str, Any] | None, str | None]:
    """The case a route's next detection goes to: generation, whether it opens it, how its run
    ended if without an outcome, its stage in the register."""
    generation, closed = route["generation"], route["closed"]
    if generation is None:
        return 1, True, None, None
    if closed:
        return generation + 1, True, None, None
    return generation, False, _json(route["interrupted"]), route["stage"]


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
