"""GET /cases and GET /stats over HTTP, against a known register written by the real activities.

The register is shared by the whole session, so every case here belongs to offices named for
this module, and every request filters by one of them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from temporalio.testing import WorkflowEnvironment

from activities.register import CaseRegisterRepository
from api.app import create_app
from api.read_models import LOCAL_TZ
from api.routes import registry, stats
from domain.models import Deadline, Outcome, Stage, Subject, case_workflow_id
from domain.records import StepRecord
from tests.conftest import open_case_input
from wiring.api_keys import ApiKeyRepository, KeySpec
from wiring.settings import Settings

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
OFFICE = f"reading-{RUN}"
OTHER_OFFICE = f"reading-{RUN}-b"
CAMPAIGN = f"campaign-{RUN}"
NOW = datetime.now(UTC)


def bj(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    """A moment given in Beijing time."""
    return datetime(year, month, day, hour, minute, tzinfo=LOCAL_TZ)


@dataclass
class Step:
    action: str
    to_stage: Stage
    at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    outcome: Outcome | None = None
    deadline_at: datetime | None = None


@dataclass
class KnownCase:
    key: str
    opened_at: datetime
    steps: list[Step] = field(default_factory=list)
    office: str = OFFICE
    category: str = "prohibited_information"
    subject: Subject | None = None
    campaign: str | None = None

    @property
    def case_id(self) -> str:
        return f"RD-{RUN}-{self.key}"


def _website(name: str, domain: str) -> Subject:
    return Subject.model_validate(
        {"kind": "website", "name": name, "identifiers": {"domain": domain}}
    )


def _app(name: str, package: str) -> Subject:
    return Subject.model_validate(
        {"kind": "app", "name": name, "identifiers": {"app_package": package}}
    )


def _fine_decision(yuan: str) -> dict[str, Any]:
    return {"measure": "fine", "fine_yuan": yuan, "reasons": "repeated offence"}


SOON = NOW + timedelta(days=3)
LATER = NOW + timedelta(days=20)
A8_DEADLINE = bj(2025, 10, 20, 0)

# Office A: twelve cases whose 2025 figures are known; office B: one fined case.
CASES = [
    KnownCase(
        "a01",
        bj(2025, 1, 10, 10),
        [
            Step("interview_recorded", Stage.INTERVIEWED, bj(2025, 1, 15)),
            Step("decision_served", Stage.CLOSED, bj(2025, 2, 9, 10), outcome=Outcome.WARNED),
        ],
        subject=_website("Example News Alpha", f"alpha-{RUN}.example.cn"),
    ),
    KnownCase(
        "a02",
        bj(2025, 3, 1, 8),
        [
            Step("interview_recorded", Stage.INTERVIEWED, bj(2025, 3, 5)),
            Step(
                "penalty_decided",
                Stage.SERVICE_PENDING,
                bj(2025, 4, 1),
                _fine_decision("50000.00"),
            ),
            Step("fine_paid", Stage.CLOSED, bj(2025, 4, 11, 8), outcome=Outcome.PENALIZED),
        ],
        category="personal_information",
        subject=_app("Beta Cleaner", f"com.reading{RUN}.beta"),
    ),
    KnownCase(  # fined without an interview, paid at once
        "a03",
        bj(2025, 5, 1),
        [
            Step(
                "penalty_decided",
                Stage.SERVICE_PENDING,
                bj(2025, 5, 10),
                _fine_decision("12500.50"),
            ),
            Step("decision_served", Stage.PAYMENT_PENDING, bj(2025, 5, 12)),
            Step("fine_paid", Stage.CLOSED, bj(2025, 5, 21), outcome=Outcome.PENALIZED),
        ],
    ),
    KnownCase(
        "a04",
        bj(2025, 6, 1),
        [
            Step(
                "penalty_decided",
                Stage.SERVICE_PENDING,
                bj(2025, 6, 10),
                {"measure": "suspend_functions", "fine_yuan": None},
            ),
            Step("decision_served", Stage.CLOSED, bj(2025, 6, 20), outcome=Outcome.PENALIZED),
        ],
    ),
    KnownCase(  # the app stores carry out the decision: execution, not a clue transferred
        "a05",
        bj(2025, 7, 1),
        [
            Step(
                "penalty_decided",
                Stage.SERVICE_PENDING,
                bj(2025, 7, 3),
                {"measure": "app_removal", "fine_yuan": None},
            ),
            Step("decision_served", Stage.REFERRING, bj(2025, 7, 4)),
            Step(
                "referral_sent",
                Stage.REFERRING,
                bj(2025, 7, 5),
                {"authority": "app_stores", "closes_with": "app_removed"},
            ),
            Step(
                "referral_acknowledged",
                Stage.CLOSED,
                bj(2025, 7, 11),
                outcome=Outcome.APP_REMOVED,
            ),
        ],
    ),
    KnownCase(  # summary disposal: the telecom authority shuts the site
        "a06",
        bj(2025, 8, 1),
        [
            Step("filed_summary_disposal", Stage.REFERRING, bj(2025, 8, 1, 10)),
            Step(
                "referral_sent",
                Stage.REFERRING,
                bj(2025, 8, 1, 11),
                {"authority": "telecom", "closes_with": "shut_down"},
            ),
            Step("referral_acknowledged", Stage.CLOSED, bj(2025, 8, 3), outcome=Outcome.SHUT_DOWN),
        ],
    ),
    KnownCase(  # a clue transferred at filing
        "a07",
        bj(2025, 9, 1),
        [
            Step("clue_transferred", Stage.REFERRING, bj(2025, 9, 1, 10)),
            Step(
                "referral_sent",
                Stage.REFERRING,
                bj(2025, 9, 1, 11),
                {"authority": "police", "closes_with": "referred"},
            ),
            Step("referral_acknowledged", Stage.CLOSED, bj(2025, 9, 16), outcome=Outcome.REFERRED),
        ],
    ),
    KnownCase(  # a referral while the case goes on; open, past its deadline and its limit
        "a08",
        bj(2025, 10, 1),
        [
            Step("filed", Stage.FILED, bj(2025, 10, 2)),
            Step(
                "referral_sent",
                Stage.FILED,
                bj(2025, 10, 5),
                {"authority": "police", "closes_with": None},
            ),
            Step(
                "rectification_ordered",
                Stage.RECTIFYING,
                bj(2025, 10, 8),
                deadline_at=A8_DEADLINE,
            ),
            Step(  # 23:00 on 31 December in Beijing: still 2025 (15:00 UTC)
                "handling_limit_exceeded",
                Stage.RECTIFYING,
                bj(2025, 12, 31, 23),
                {"limit": "2025-12-31"},
                deadline_at=A8_DEADLINE,
            ),
        ],
    ),
    KnownCase(  # opened at the same moment as a10: the order falls back on the case id
        "a09",
        bj(2025, 11, 1),
        [Step("rectification_ordered", Stage.RECTIFYING, bj(2025, 11, 5), deadline_at=SOON)],
        campaign=CAMPAIGN,
    ),
    KnownCase(
        "a10",
        bj(2025, 11, 1),
        [
            # 00:30 on 1 January 2026 in Beijing (16:30 UTC on 31 December): a 2026 interview.
            Step("interview_recorded", Stage.INTERVIEWED, bj(2026, 1, 1, 0, 30)),
            Step("rectification_ordered", Stage.RECTIFYING, bj(2026, 1, 2), deadline_at=LATER),
        ],
        campaign=CAMPAIGN,
    ),
    KnownCase("a11", bj(2025, 1, 1, 1)),  # 17:00 UTC on 31 December 2024: a 2025 case
    KnownCase(  # a 2024 case (23:00 on 31 December in Beijing), warned in 2025
        "a12",
        bj(2024, 12, 31, 23),
        [
            Step("interview_recorded", Stage.INTERVIEWED, bj(2024, 12, 31, 23, 30)),
            Step("decision_served", Stage.CLOSED, bj(2025, 1, 5, 8), outcome=Outcome.WARNED),
        ],
    ),
    KnownCase(
        "b01",
        bj(2025, 3, 3),
        [
            Step("penalty_decided", Stage.SERVICE_PENDING, bj(2025, 3, 5), _fine_decision("999")),
            Step("decision_served", Stage.CLOSED, bj(2025, 3, 10), outcome=Outcome.PENALIZED),
        ],
        office=OTHER_OFFICE,
        category="personal_information",
    ),
]
BY_KEY = {case.key: case for case in CASES}


def _pending(at: datetime | None) -> Deadline | None:
    if at is None:
        return None
    last_day = at.astimezone(LOCAL_TZ).date().isoformat()
    return Deadline(due_at=at, last_day=last_day, days=1, kind="calendar", explanation="test")


async def _register(pool: asyncpg.Pool, case: KnownCase) -> None:
    """Write the case as its steps' activity would: the register row, then each step's audit
    row and register move (through the register's own repository: the cases here open in
    2024 and 2025, before the policy in force, which the opening activity would refuse)."""
    overrides: dict[str, Any] = {"office": case.office, "violation_category": case.category}
    if case.subject is not None:
        overrides["subject"] = case.subject
    opened = open_case_input(case.case_id, **overrides)
    workflow_id = case_workflow_id(case.case_id)
    steps = [Step("case_opened", Stage.FILING, case.opened_at), *case.steps]
    async with pool.acquire() as conn, conn.transaction():
        register = CaseRegisterRepository(conn)
        assert await register.insert_case(opened, workflow_id, case.opened_at, "2026.1")
        stage: Stage | None = None
        for seq, step in enumerate(steps, start=1):
            record = StepRecord(
                case_id=case.case_id,
                workflow_id=workflow_id,
                office=case.office,
                seq=seq,
                action=step.action,
                from_stage=stage,
                to_stage=step.to_stage,
                actor="officer.reading",
                occurred_at=step.at,
                payload=step.payload,
                outcome=step.outcome,
            )
            assert await register.append_audit(record, step.payload)
            await register.advance_case(record, _pending(step.deadline_at))
            stage = step.to_stage
    if case.campaign is not None:  # as POST /campaigns opens them
        await pool.execute(
            "UPDATE cases SET campaign_id = $2 WHERE case_id = $1", case.case_id, case.campaign
        )


@pytest.fixture(scope="module")
async def register(pool: asyncpg.Pool) -> dict[str, KnownCase]:
    for case in CASES:
        await _register(pool, case)
    return BY_KEY


def _with_reading_routes(app: FastAPI) -> FastAPI:
    """Add the reading routers unless create_app already does."""
    present = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    if ("/cases", "GET") not in present:
        app.include_router(registry.router)
    if ("/stats", "GET") not in present:
        app.include_router(stats.router)
    return app


@pytest.fixture(scope="module")
async def api(
    dev_env: WorkflowEnvironment,
    pg_dsn: str,
    pool: asyncpg.Pool,
    register: dict[str, KnownCase],
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        Settings(
            _env_file=None,
            database_url=pg_dsn,
            temporal_address=dev_env.client.service_client.config.target_host,
            task_queue=f"tq-reading-{RUN}",
            temporal_ui_url="http://localhost:8233",
        )
    )
    _with_reading_routes(app)
    async with pool.acquire() as conn:  # a supervisor reads every office
        spec = KeySpec.checked("supervisor", None, f"reading tests {RUN}", "tests")
        created = await ApiKeyRepository(conn).create(spec)
    headers = {"Authorization": f"Bearer {created.key}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://rectify", headers=headers
        ) as client:
            yield client


async def list_keys(api: httpx.AsyncClient, **params: Any) -> list[str]:
    """The keys of the cases listed (one page of 200), in the order listed."""
    response = await api.get("/cases", params={"office": OFFICE, "limit": 200, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    return [item["case_id"].rsplit("-", 1)[1] for item in body["items"]]


def newest_first(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: (BY_KEY[k].opened_at, BY_KEY[k].case_id), reverse=True)


OFFICE_A = [case.key for case in CASES if case.office == OFFICE]


# --- GET /cases --------------------------------------------------------------------------------


async def test_office_lists_its_cases_newest_first(api: httpx.AsyncClient) -> None:
    keys = await list_keys(api)
    assert keys == newest_first(OFFICE_A)
    assert keys[:2] == ["a10", "a09"]  # same opened_at: case id descending
    assert keys[-2:] == ["a11", "a12"]
    assert await list_keys(api, office=OTHER_OFFICE) == ["b01"]


async def test_item_carries_the_register_row(api: httpx.AsyncClient) -> None:
    response = await api.get("/cases", params={"office": OFFICE, "overdue": "true"})
    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    case = BY_KEY["a08"]
    assert item == {
        "case_id": case.case_id,
        "workflow_id": f"case:{case.case_id}",
        "stage": "rectifying",
        "outcome": None,
        "office": OFFICE,
        "violation_category": "prohibited_information",
        "subject_kind": "website",
        "subject_name": "Example News",
        "deadline_at": "2025-10-19T16:00:00Z",
        "deadline_provisional": False,
        "opened_at": "2025-10-01T01:00:00Z",
        "closed_at": None,
        "policy_version": "2026.1",
        "campaign_id": None,
        "overdue": True,
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"stage": "rectifying"}, ["a08", "a09", "a10"]),
        ({"stage": "filing"}, ["a11"]),
        ({"category": "personal_information"}, ["a02"]),
        ({"overdue": "true"}, ["a08"]),
        ({"overdue": "false"}, [k for k in OFFICE_A if k != "a08"]),
        ({"deadline_within_days": 7}, ["a09"]),
        ({"deadline_within_days": 30}, ["a09", "a10"]),
        ({"campaign": CAMPAIGN}, ["a09", "a10"]),
        ({"outcome": "warned"}, ["a01", "a12"]),
        ({"outcome": "penalized"}, ["a02", "a03", "a04"]),
        ({"closed": "true"}, ["a01", "a02", "a03", "a04", "a05", "a06", "a07", "a12"]),
        ({"closed": "false"}, ["a08", "a09", "a10", "a11"]),
        ({"closed": "false", "stage": "rectifying", "overdue": "false"}, ["a09", "a10"]),
        # Dates are Beijing days: a11 (01:00 on 1 January) is January's, a12 (23:00 the day
        # before) is not.
        ({"opened_from": "2025-01-01", "opened_to": "2025-01-31"}, ["a01", "a11"]),
        ({"opened_to": "2024-12-31"}, ["a12"]),
        ({"opened_from": "2025-11-01"}, ["a09", "a10"]),
        ({"opened_from": "2025-10-01", "opened_to": "2025-10-01"}, ["a08"]),
    ],
    ids=lambda value: (
        "&".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else ""
    ),
)
async def test_filter(api: httpx.AsyncClient, params: dict[str, Any], expected: list[str]) -> None:
    assert await list_keys(api, **params) == newest_first(expected)


async def test_subject_by_name_part_or_exact_identifier(api: httpx.AsyncClient) -> None:
    assert await list_keys(api, subject="news ALPHA") == ["a01"]  # any case
    assert await list_keys(api, subject="Beta Cle") == ["a02"]
    assert await list_keys(api, subject=f"com.reading{RUN}.beta") == ["a02"]  # identifier
    assert await list_keys(api, subject=f"alpha-{RUN}.example.cn") == ["a01"]
    assert await list_keys(api, subject=f"com.reading{RUN}") == []  # identifiers match whole
    assert await list_keys(api, subject="%") == []  # LIKE wildcards are literal
    assert await list_keys(api, subject="_") == []
    assert len(await list_keys(api, subject="example news")) == 11  # all but a02


@pytest.mark.parametrize("limit", [1, 5])
async def test_pages_cover_the_list_once_in_order(api: httpx.AsyncClient, limit: int) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while pages <= len(OFFICE_A):  # a cursor that does not advance must not loop forever
        params: dict[str, Any] = {"office": OFFICE, "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await api.get("/cases", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert len(page["items"]) <= limit
        seen += [item["case_id"].rsplit("-", 1)[1] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == limit
    assert seen == newest_first(OFFICE_A)  # no gap, no duplicate, the same order
    assert pages == -(-len(OFFICE_A) // limit)


async def test_pages_keep_their_filter(api: httpx.AsyncClient) -> None:
    first = (
        await api.get("/cases", params={"office": OFFICE, "closed": "true", "limit": 3})
    ).json()
    rest = (
        await api.get(
            "/cases",
            params={
                "office": OFFICE,
                "closed": "true",
                "limit": 10,
                "cursor": first["next_cursor"],
            },
        )
    ).json()
    keys = [item["case_id"].rsplit("-", 1)[1] for item in first["items"] + rest["items"]]
    assert keys == newest_first(["a01", "a02", "a03", "a04", "a05", "a06", "a07", "a12"])
    assert rest["next_cursor"] is None


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        _b64("{}"),
        _b64('["2025-01-01T00:00:00+00:00"]'),
        _b64('["yesterday", "RD-1"]'),
        _b64('["2025-01-01T00:00:00", "RD-1"]'),  # no offset
        _b64('["2025-01-01T00:00:00+00:00", 7]'),
        _b64('["0001-01-01T00:00:00+14:00", "RD-1"]'),  # before year 1 in UTC
        _b64('["9999-12-31T23:59:59-14:00", "RD-1"]'),  # after year 9999 in UTC
        _b64('["2025-01-01T00:00:00+00:00", "RD-\\u0000"]'),
        _b64('["2025-01-01T00:00:00+00:00", "RD-\\ud800"]'),
        "x" * 1001,
    ],
)
async def test_bad_cursor_is_422_naming_it(api: httpx.AsyncClient, cursor: str) -> None:
    response = await api.get("/cases", params={"office": OFFICE, "cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["type"].endswith("/invalid-request")
    assert [e["field"] for e in problem["errors"]] == ["query.cursor"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 201}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"stage": "asleep"}, "query.stage"),
        ({"outcome": "forgiven"}, "query.outcome"),
        ({"overdue": "perhaps"}, "query.overdue"),
        ({"closed": "2"}, "query.closed"),
        ({"deadline_within_days": 0}, "query.deadline_within_days"),
        ({"deadline_within_days": -3}, "query.deadline_within_days"),
        ({"opened_from": "2025-02-30"}, "query.opened_from"),
        ({"opened_to": "last week"}, "query.opened_to"),
        ({"opened_from": "2025-03-01", "opened_to": "2025-02-01"}, "query.opened_to"),
        ({"subject": ""}, "query.subject"),
        ({"subject": "a\x00b"}, "query.subject"),
        ({"office": "x" * 201}, "query.office"),
    ],
)
async def test_bad_parameter_is_422_naming_it(
    api: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await api.get("/cases", params={"office": OFFICE, **params})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]], problem
    assert field in problem["detail"]


async def test_limit_bounds_are_accepted(api: httpx.AsyncClient) -> None:
    for limit in (1, 200):
        response = await api.get("/cases", params={"office": OFFICE, "limit": limit})
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == min(limit, len(OFFICE_A))


# --- GET /stats --------------------------------------------------------------------------------


async def get_stats(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get("/stats", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    as_of = datetime.fromisoformat(body.pop("as_of"))
    assert abs(as_of - datetime.now(UTC)) < timedelta(minutes=5)
    return body


async def test_year_figures_of_an_office(api: httpx.AsyncClient) -> None:
    assert await get_stats(api, year=2025, office=OFFICE) == {
        "year": 2025,
        "office": OFFICE,
        "category": None,
        "interviewed": 2,  # a01, a02 (a12's was in 2024, a10's in 2026)
        "warned": 2,  # a01, a12 (opened in 2024, closed in 2025)
        "fined": 2,  # a02, a03 (penalty_decided, fine)
        "fines_total_yuan": "62500.50",
        "suspended_or_updated": 1,  # a04
        "apps_removed": 1,  # a05
        "shut_down_or_licence_cancelled": 1,  # a06
        "clues_transferred": 2,  # a07 at filing, a08 while open; not a05/a06's execution
        "opened": 11,  # a01-a11 (a11 at 01:00 on 1 January in Beijing)
        "closed": 8,  # a01-a07, a12
        "overdue": 1,  # a08
        "over_handling_limit": 1,  # a08 (23:00 on 31 December in Beijing)
        # 2, 4.375, 10, 15 | 19, 20, 30, 41 days
        "median_days_to_close": 17.0,
    }


async def test_year_is_the_beijing_year_of_each_event(api: httpx.AsyncClient) -> None:
    assert await get_stats(api, year=2024, office=OFFICE) == {
        "year": 2024,
        "office": OFFICE,
        "category": None,
        "interviewed": 1,  # a12, 23:30 on 31 December 2024
        "warned": 0,
        "fined": 0,
        "fines_total_yuan": "0.00",
        "suspended_or_updated": 0,
        "apps_removed": 0,
        "shut_down_or_licence_cancelled": 0,
        "clues_transferred": 0,
        "opened": 1,  # a12
        "closed": 0,
        "overdue": 0,
        "over_handling_limit": 0,
        "median_days_to_close": None,
    }
    in_2026 = await get_stats(api, year=2026, office=OFFICE)
    assert (in_2026["interviewed"], in_2026["opened"], in_2026["closed"]) == (1, 0, 0)  # a10


async def test_category_and_office_narrow_the_figures(api: httpx.AsyncClient) -> None:
    personal = await get_stats(api, year=2025, office=OFFICE, category="personal_information")
    assert {k: personal[k] for k in ("fined", "fines_total_yuan", "opened", "closed")} == {
        "fined": 1,
        "fines_total_yuan": "50000.00",
        "opened": 1,
        "closed": 1,
    }
    assert personal["median_days_to_close"] == 41.0
    assert personal["interviewed"] == 1 and personal["warned"] == 0
    other = await get_stats(api, year=2025, office=OTHER_OFFICE)
    assert (other["fined"], other["fines_total_yuan"], other["opened"]) == (1, "999.00", 1)
    assert (other["interviewed"], other["median_days_to_close"]) == (0, 7.0)


async def test_default_year_is_this_beijing_year(api: httpx.AsyncClient) -> None:
    body = await get_stats(api, office=OFFICE)
    assert body["year"] == datetime.now(LOCAL_TZ).year


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"year": "last"}, "query.year"),
        ({"year": 1999}, "query.year"),
        ({"year": 2101}, "query.year"),
        ({"office": ""}, "query.office"),
        ({"category": "a\x00"}, "query.category"),
    ],
)
async def test_bad_stats_parameter_is_422(
    api: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await api.get("/stats", params=params)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize("path", ["/cases", "/stats"])
async def test_reading_needs_a_key(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path, params={"office": OFFICE}, headers={"Authorization": ""})
    assert response.status_code == 401, response.text
