"""The register as supervisors read it: case lists and a year's figures, plain SQL in one place.

Reads only: the register (`cases`) and the audit trail (`case_audit`) are written by activities.
Every value goes in as a bind parameter; a filter that is absent adds no predicate, so each
combination of filters is its own statement with its own plan (no `$1 IS NULL OR ...`, which a
generic plan cannot use an index for). The indexes are in migrations/0005_read_indexes.sql.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter

from domain.models import Outcome, Stage, SubjectIdentifiers, SubjectKind

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

# Dates and years are China's: a case opened at 23:30 on 31 December in Beijing is that year's.
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
# Free text goes to PostgreSQL as a bind parameter; text there cannot hold NUL.
NO_NUL = r"^[^\x00]*$"


# --- the case list ---------------------------------------------------------------------------


class Interruption(BaseModel):
    """The case's run ended without an outcome (failed, terminated, timed out, cancelled), as
    the API found it: an operator decides, `rectify cases reopen|close`. Cleared by the next
    step a new run writes."""

    status: str = Field(description="failed, terminated, timed_out or canceled")
    run_id: str = Field(description="the run that ended")
    detected_at: datetime = Field(description="when the API found it so")
    ended_at: datetime | None = Field(None, description="when the run ended")
    detail: str | None = Field(None, description="the termination reason or failure message")


class CaseListItem(BaseModel):
    """One case as the register holds it."""

    case_id: str
    workflow_id: str
    stage: Stage
    outcome: Outcome | None
    office: str
    violation_category: str
    subject_kind: SubjectKind
    subject_name: str
    deadline_at: datetime | None = Field(description="the pending deadline, if the case has one")
    deadline_provisional: bool
    opened_at: datetime
    closed_at: datetime | None
    policy_version: str | None
    campaign_id: str | None
    overdue: bool = Field(description="open, and its deadline has passed")
    interrupted: Interruption | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="present when its run ended without an outcome: an operator must reopen or "
        "close it",
    )


class CasePage(BaseModel):
    items: list[CaseListItem]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )
    temporal_query: str | None = Field(
        None,
        description="with `subject`: the Temporal Web UI's query for the cases of the subject"
        " holding that identifier (the visibility store keeps only keyed hashes of identifiers)",
    )


@dataclass(frozen=True)
class CaseFilters:
    """What a supervisor narrows the list to; None means no filter."""

    stage: Stage | None = None
    category: str | None = None
    office: str | None = None
    subject: str | None = None
    overdue: bool | None = None
    deadline_within_days: int | None = None
    opened_from: date | None = None
    opened_to: date | None = None
    campaign: str | None = None
    outcome: Outcome | None = None
    closed: bool | None = None


_AWARE: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


class InvalidCursor(ValueError):
    """A cursor this API did not hand out (or one that was altered)."""


@dataclass(frozen=True)
class CaseCursor:
    """The keyset position after the last item of a page: (opened_at, case_id)."""

    opened_at: datetime
    case_id: str

    def encode(self) -> str:
        raw = json.dumps([self.opened_at.isoformat(), self.case_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> CaseCursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            opened_at, case_id = json.loads(raw)
            if not isinstance(opened_at, str):
                raise TypeError("a cursor's time is an ISO 8601 string")
            moment = _AWARE.validate_strings(opened_at)  # with its offset
            moment = moment.astimezone(UTC)  # year 1 at +14:00 overflows here, not in asyncpg
            case_id.encode()  # a lone surrogate from a forged \ud800 fails here, not in asyncpg
        except (ValueError, TypeError, AttributeError, OverflowError, binascii.Error) as exc:
            raise InvalidCursor("not a cursor this API handed out") from exc
        if not isinstance(case_id, str) or "\x00" in case_id:
            raise InvalidCursor("not a cursor this API handed out")
        return cls(moment, case_id)


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), LOCAL_TZ)


class _Statement:
    """A WHERE clause built from the filters present; every value is a bind parameter."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def bind(self, value: Any, cast: str) -> str:
        self.args.append(value)
        return f"${len(self.args)}::{cast}"

    def where(self, condition: str) -> None:
        self.conditions.append(condition)

    def clause(self) -> str:
        return "\n   AND ".join(self.conditions) if self.conditions else "TRUE"


def _like_pattern(text: str) -> str:
    """`%text%` for ILIKE, with the caller's own % _ and \\ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _identifier_probes(value: str) -> list[dict[str, str]]:
    """One single-key object per identifier kind: `@> ANY(...)` is an exact match on any of
    them, served by the GIN index on subject_identifiers (jsonb_path_ops)."""
    return [{key: value} for key in SubjectIdentifiers.model_fields]


LIST_COLUMNS = """
    case_id, workflow_id, stage, outcome, office, violation_category, subject_kind,
    subject_name, deadline_at, deadline_provisional, opened_at, closed_at, policy_version,
    campaign_id, interrupted"""


class CaseListReader:
    """The register's list: filters and keyset pages, newest first."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @staticmethod
    def statement(
        filters: CaseFilters, *, limit: int, after: CaseCursor | None, now: datetime
    ) -> tuple[str, list[Any]]:
        """The SQL and its arguments for one page (`limit` + 1 rows: one more says there is a
        next page). Public so the bench times the very statement the endpoint runs."""
        q = _Statement()
        at_now = q.bind(now, "timestamptz")
        f = filters
        if f.stage is not None:
            q.where(f"stage = {q.bind(f.stage.value, 'text')}")
        if f.category is not None:
            q.where(f"violation_category = {q.bind(f.category, 'text')}")
        if f.office is not None:
            q.where(f"office = {q.bind(f.office, 'text')}")
        if f.subject is not None:
            name = q.bind(_like_pattern(f.subject), "text")
            probes = q.bind(_identifier_probes(f.subject), "jsonb[]")
            q.where(f"(subject_name ILIKE {name} OR subject_identifiers @> ANY({probes}))")
        if f.overdue is True:
            q.where(f"closed_at IS NULL AND deadline_at < {at_now}")
        elif f.overdue is False:
            q.where(f"(closed_at IS NOT NULL OR deadline_at IS NULL OR deadline_at >= {at_now})")
        if f.deadline_within_days is not None:
            until = q.bind(now + timedelta(days=f.deadline_within_days), "timestamptz")
            q.where(f"closed_at IS NULL AND deadline_at >= {at_now} AND deadline_at <= {until}")
        if f.opened_from is not None:
            q.where(f"opened_at >= {q.bind(local_midnight(f.opened_from), 'timestamptz')}")
        if f.opened_to is not None:
            end = local_midnight(f.opened_to + timedelta(days=1))
            q.where(f"opened_at < {q.bind(end, 'timestamptz')}")
        if f.campaign is not None:
            q.where(f"campaign_id = {q.bind(f.campaign, 'text')}")
        if f.outcome is not None:
            q.where(f"outcome = {q.bind(f.outcome.value, 'text')}")
        if f.closed is True:
            q.where("closed_at IS NOT NULL")
        elif f.closed is False:
            q.where("closed_at IS NULL")
        if after is not None:
            at = q.bind(after.opened_at, "timestamptz")
            case_id = q.bind(after.case_id, "text")
            # The plain `opened_at <=` lets an index on opened_at alone bound the scan too.
            q.where(f"opened_at <= {at} AND (opened_at, case_id) < ({at}, {case_id})")
        sql = f"""
SELECT {LIST_COLUMNS},
       (closed_at IS NULL AND deadline_at IS NOT NULL AND deadline_at < {at_now}) AS overdue
  FROM cases
 WHERE {q.clause()}
 ORDER BY opened_at DESC, case_id DESC
 LIMIT {q.bind(limit + 1, "integer")}"""
        return sql, q.args

    async def page(
        self, filters: CaseFilters, *, limit: int, after: CaseCursor | None, now: datetime
    ) -> CasePage:
        sql, args = self.statement(filters, limit=limit, after=after, now=now)
        rows = await self._conn.fetch(sql, *args)
        items = [CaseListItem.model_validate(dict(row)) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = CaseCursor(last.opened_at, last.case_id).encode()
        return CasePage(items=items, next_cursor=next_cursor)


# --- the year's figures ----------------------------------------------------------------------


class CaseStatistics(BaseModel):
    """The published summary's categories for one year, plus the register's own figures.
    Each figure counts cases (a case counts once per figure), except the fines total."""

    year: int = Field(description="Asia/Shanghai calendar year")
    office: str | None
    category: str | None
    as_of: datetime = Field(description="the moment `overdue` was measured against")
    interviewed: int
    warned: int
    fined: int
    fines_total_yuan: Decimal
    suspended_or_updated: int
    apps_removed: int
    shut_down_or_licence_cancelled: int
    clues_transferred: int
    opened: int
    closed: int
    overdue: int
    over_handling_limit: int
    median_days_to_close: float | None = Field(description="rounded to 0.01 day; null: none")


@dataclass(frozen=True)
class StatsScope:
    year: int
    office: str | None = None
    category: str | None = None

    def bounds(self) -> tuple[datetime, datetime]:
        """[1 January, next 1 January) at midnight in Beijing."""
        return local_midnight(date(self.year, 1, 1)), local_midnight(date(self.year + 1, 1, 1))


# The audit actions the figures read; each is one range scan of case_audit_action_occurred_idx.
STATS_ACTIONS = (
    "interview_recorded",
    "penalty_decided",
    "referral_sent",
    "handling_limit_exceeded",
)
# A referral that carries out the case's own decision (app stores remove the app, the telecom
# authority shuts the site) is execution, not a clue handed to another authority.
EXECUTION_OUTCOMES = ("app_removed", "shut_down")


class CaseStatisticsReader:
    """One year's figures in one statement: three independent aggregates, each an index range
    scan (audit actions by occurred_at; cases by closed_at, index-only since the index carries
    what the figures and filters read; cases by opened_at). The payload is read only for the
    actions whose figures need it."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @staticmethod
    def statement(scope: StatsScope, *, now: datetime) -> tuple[str, list[Any]]:
        q = _Statement()
        start, end = scope.bounds()
        y0, y1 = q.bind(start, "timestamptz"), q.bind(end, "timestamptz")
        at_now = q.bind(now, "timestamptz")
        actions = q.bind(list(STATS_ACTIONS), "text[]")
        execution = q.bind(list(EXECUTION_OUTCOMES), "text[]")
        if scope.office is not None:
            q.where(f"c.office = {q.bind(scope.office, 'text')}")
        if scope.category is not None:
            q.where(f"c.violation_category = {q.bind(scope.category, 'text')}")
        scoped = q.clause()
        join = "JOIN cases c ON c.case_id = a.case_id" if q.conditions else ""
        sql = f"""
WITH actions AS (
    SELECT a.case_id, a.action,
           CASE WHEN a.action = 'penalty_decided' THEN a.payload ->> 'measure' END AS measure,
           CASE WHEN a.action = 'referral_sent' THEN a.payload ->> 'closes_with' END
               AS closes_with,
           CASE WHEN a.action = 'penalty_decided' AND a.payload ->> 'measure' = 'fine'
                THEN (a.payload ->> 'fine_yuan')::numeric
           END AS fine_yuan
      FROM case_audit a {join}
     WHERE a.action = ANY({actions})
       AND a.occurred_at >= {y0} AND a.occurred_at < {y1}
       AND {scoped}
), acted AS (
    SELECT count(DISTINCT case_id) FILTER (WHERE action = 'interview_recorded') AS interviewed,
           count(DISTINCT case_id) FILTER (WHERE measure = 'fine') AS fined,
           coalesce(sum(fine_yuan), 0) AS fines_total_yuan,
           count(DISTINCT case_id) FILTER (
               WHERE measure = 'suspend_functions') AS suspended_or_updated,
           count(DISTINCT case_id) FILTER (
               WHERE action = 'referral_sent'
                 AND (closes_with IS NULL OR closes_with <> ALL({execution}))
           ) AS clues_transferred,
           count(DISTINCT case_id) FILTER (
               WHERE action = 'handling_limit_exceeded') AS over_handling_limit
      FROM actions
), closed AS (
    SELECT count(*) AS closed,
           count(*) FILTER (WHERE c.outcome = 'warned') AS warned,
           count(*) FILTER (WHERE c.outcome = 'app_removed') AS apps_removed,
           count(*) FILTER (WHERE c.outcome = 'shut_down') AS shut_down_or_licence_cancelled,
           extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (
               ORDER BY c.closed_at - c.opened_at)) / 86400 AS median_days_to_close
      FROM cases c
     WHERE c.closed_at >= {y0} AND c.closed_at < {y1}
       AND {scoped}
), opened AS (
    SELECT count(*) AS opened,
           count(*) FILTER (WHERE c.closed_at IS NULL AND c.deadline_at < {at_now}) AS overdue
      FROM cases c
     WHERE c.opened_at >= {y0} AND c.opened_at < {y1}
       AND {scoped}
)
SELECT * FROM acted, closed, opened"""
        return sql, q.args

    async def year(self, scope: StatsScope, *, now: datetime) -> CaseStatistics:
        sql, args = self.statement(scope, now=now)
        row = await self._conn.fetchrow(sql, *args)
        assert row is not None  # aggregates without GROUP BY always answer one row
        figures = dict(row)
        median = figures.pop("median_days_to_close")
        total: Decimal = figures.pop("fines_total_yuan")
        return CaseStatistics(
            year=scope.year,
            office=scope.office,
            category=scope.category,
            as_of=now,
            fines_total_yuan=total.quantize(Decimal("0.01")),
            median_days_to_close=None if median is None else round(float(median), 2),
            **figures,
        )
