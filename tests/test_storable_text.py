"""Text PostgreSQL cannot store is refused at the edge, naming the field; a step the database
refuses anyway fails at once (never retried for ever while it holds the case's lock).

Part of issue 9 (hostile input); the rest of that issue is still open."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import ValidationError
from temporalio import activity, workflow
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.steps import StepActivities
from domain.commands import RecordPayment
from domain.models import Stage, SubjectIdentifiers
from domain.records import UNSTORABLE, StepRecord
from tests.conftest import POLICIES, open_case_input
from tests.test_api_events import event
from tests.test_api_integration import api, case_body  # noqa: F401 (the fixture)
from tests.test_register_activities import audit_rows, opening, run_open, step
from worker.interceptors import CaseLoggingInterceptor

pytestmark = pytest.mark.integration
FULL_WIDTH_30000 = "\uff13\uff10\uff10\uff10\uff10"  # what an IME may type for 30000


def fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    return [error["field"] for error in response.json()["errors"]]


async def test_nul_in_a_body_is_422_naming_the_field(api: httpx.AsyncClient) -> None:  # noqa: F811
    named = case_body(
        subject={"kind": "app", "name": "a\x00b", "identifiers": {"app_package": "com.a.b"}}
    )
    assert fields(await api.post("/cases", json=named)) == ["subject.name"]
    detected = event(payload={"evidence": ["ok", {"note": "x\x00"}]})
    assert fields(await api.post("/events", json=detected)) == ["payload"]
    batch = await api.post("/events/batch", json={"events": [event(source="mon\x00itor")]})
    assert batch.json()["results"][0]["problem"]["errors"][0]["field"] == "source"
    opened = await api.post("/cases", json=case_body())
    case_id = opened.json()["case_id"]
    refused = await api.post(
        f"/cases/{case_id}/filing-decision",
        json={"actor": "officer.li", "decision": "filed", "reasons": "a\x00b"},
    )
    assert fields(refused) == ["reasons"]
    assert "NUL" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/cases/x%00y", "path"),
        ("/cases/x%00y/history", "path"),
        ("/cases?subject=a%00b", "subject"),
        ("/cases?opened_from=0001-01-01", "opened_from"),
        ("/cases?opened_to=9999-12-31", "opened_to"),
    ],
)
async def test_unstorable_path_and_query_values_are_422(
    api: httpx.AsyncClient,  # noqa: F811
    url: str,
    field: str,
) -> None:
    response = await api.get(url)
    assert field in fields(response)[0]
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_step_the_database_refuses_fails_at_once_and_writes_nothing(
    pool: asyncpg.Pool,
) -> None:
    opened = open_case_input()
    await run_open(pool, opening(opened))
    before = await audit_rows(pool, opened.case_id)
    valid = step(opened.case_id, 2, "filed", Stage.FILED)
    # Past every model (as a bug, or data from an older version, would be): built unvalidated.
    values: dict[str, Any] = {**dict(valid), "payload": {"reasons": "a\x00b"}}
    hostile = StepRecord.model_construct(**values)
    with pytest.raises(ApplicationError) as failed:
        await ActivityEnvironment().run(StepActivities(pool, POLICIES).record_step, hostile)
    assert failed.value.type == UNSTORABLE and failed.value.non_retryable
    assert "a\x00b" not in failed.value.message  # named by class, never by its values
    assert "UntranslatableCharacter" in failed.value.message or "SQLSTATE" in failed.value.message
    assert await audit_rows(pool, opened.case_id) == before
    # An alert is on record, once, even when the step is tried again.
    with pytest.raises(ApplicationError):
        await ActivityEnvironment().run(StepActivities(pool, POLICIES).record_step, hostile)
    alerts = await pool.fetch("SELECT kind, detail FROM alerts WHERE case_id = $1", opened.case_id)
    assert [(a["kind"], a["detail"]["seq"], a["detail"]["action"]) for a in alerts] == [
        (UNSTORABLE, 2, "filed")
    ]
    assert "a\x00b" not in str(alerts[0]["detail"])
    # The case's next step still goes through.
    await ActivityEnvironment().run(StepActivities(pool, POLICIES).record_step, valid)
    assert len(await audit_rows(pool, opened.case_id)) == len(before) + 1


@pytest.mark.parametrize(
    ("fields_given", "field"),
    [
        ({"amount_yuan": FULL_WIDTH_30000, "paid_at": "2026-11-28T09:30:00+08:00"}, "amount_yuan"),
        ({"amount_yuan": "1e5", "paid_at": "2026-11-28T09:30:00+08:00"}, "amount_yuan"),
        ({"amount_yuan": "30000", "paid_at": "9999-11-28T09:30:00+08:00"}, "paid_at"),
    ],
)
def test_amounts_in_ascii_digits_and_dates_within_the_years_a_case_runs(
    fields_given: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        RecordPayment.model_validate({"actor": "officer.li", **fields_given})
    assert [error["loc"] for error in refused.value.errors()] == [(field,)]
    paid = RecordPayment.model_validate(
        {"actor": "officer.li", "amount_yuan": "30000.50", "paid_at": "2026-11-28T09:30:00+08:00"}
    )
    assert str(paid.amount_yuan) == "30000.50"


async def test_an_interview_in_year_9999_is_422(api: httpx.AsyncClient) -> None:  # noqa: F811
    case_id = (await api.post("/cases", json=case_body())).json()["case_id"]
    await api.post(
        f"/cases/{case_id}/filing-decision",
        json={"actor": "officer.li", "decision": "filed", "reasons": "Evidence."},
    )
    response = await api.post(
        f"/cases/{case_id}/interview/schedule",
        json={
            "actor": "officer.li",
            "scheduled_for": "9999-12-01T10:00:00+08:00",
            "place": "Room 3",
            "reason": "Repeated violations",
            "attendees_required": ["legal representative"],
        },
    )
    assert fields(response) == ["scheduled_for"]


def test_an_amount_in_exponent_form_is_kept_as_the_json_reads_it_back() -> None:
    """`Decimal("1E+2")` (what `normalize()` gives) is 100, and its JSON reads back."""
    paid = RecordPayment(
        actor="officer.li", amount_yuan=Decimal("1E+2"), paid_at=datetime(2026, 1, 5, tzinfo=UTC)
    )
    assert str(paid.amount_yuan) == "100"
    assert RecordPayment.model_validate_json(paid.model_dump_json()) == paid


@pytest.mark.parametrize(
    "identifiers",
    [
        {"unified_social_credit_code": "91\uff11\uff11\uff10\uff10\uff10\uff10MA01234567"},
        {"icp_filing": "京ICP备\uff11\uff12\uff13\uff14\uff15\uff16号"},
    ],
)
def test_identifiers_take_ascii_digits_only(identifiers: dict[str, str]) -> None:
    """Full-width digits would make the same subject another one to every lookup."""
    with pytest.raises(ValidationError) as refused:
        SubjectIdentifiers.model_validate(identifiers)
    assert [error["loc"] for error in refused.value.errors()] == [(next(iter(identifiers)),)]


async def test_a_payload_is_kept_as_sent_or_refused_naming_it(
    api: httpx.AsyncClient,  # noqa: F811
) -> None:
    """Its keys are not trimmed; JSON nested 340 deep (700 bytes) or holding NaN is a 422
    naming `payload`, not a 500."""
    body = event(payload={"url": "a", " url": "b"})
    opened = await api.post("/events", json=body)
    assert opened.status_code == 201, opened.text
    kept = (await api.get(f"/cases/{opened.json()['case_id']}/detections")).json()
    assert kept["detections"][0]["payload"] == {"url": "a", " url": "b"}
    deep = json.dumps(event(payload={"x": 0})).replace(
        '{"x": 0}', '{"x": ' + "[" * 340 + "]" * 340 + "}"
    )
    for raw in (deep, json.dumps(event()).replace('"payload": {', '"payload": {"n": NaN, ')):
        answer = await api.post(
            "/events", content=raw, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        assert fields(answer) == ["payload"]


async def test_the_case_view_shows_its_alerts(
    api: httpx.AsyncClient,  # noqa: F811
    pool: asyncpg.Pool,
) -> None:
    """A step the database refused is on record in the case's view, without its values."""
    case_id = (await api.post("/cases", json=case_body())).json()["case_id"]
    for _ in range(50):  # the opening is registered by the workflow's first activity
        if await pool.fetchval("SELECT 1 FROM cases WHERE case_id = $1", case_id):
            break
        await asyncio.sleep(0.1)
    valid = step(case_id, 2, "filed", Stage.FILED)
    hostile = StepRecord.model_construct(**{**dict(valid), "payload": {"reasons": "a\x00b"}})
    with pytest.raises(ApplicationError):
        await ActivityEnvironment().run(StepActivities(pool, POLICIES).record_step, hostile)
    view = (await api.get(f"/cases/{case_id}")).json()
    [alert] = view["alerts"]
    assert (alert["kind"], alert["detail"]["action"], alert["detail"]["seq"]) == (
        UNSTORABLE,
        "filed",
        2,
    )
    assert "a\x00b" not in json.dumps(alert)


@activity.defn(name="writes_what_the_database_refuses")
async def writes_what_the_database_refuses() -> None:
    raise asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence")


@workflow.defn(name="RefusedWriteWorkflow", sandboxed=False)
class RefusedWriteWorkflow:
    @workflow.run
    async def run(self) -> str:
        try:  # the default retry policy: unlimited attempts
            await workflow.execute_activity(
                writes_what_the_database_refuses, start_to_close_timeout=timedelta(seconds=10)
            )
        except ActivityError as exc:
            cause = exc.cause
            assert isinstance(cause, ApplicationError)
            return f"{cause.type} {cause.non_retryable} {exc.retry_state}"
        return "written"


async def test_any_activity_the_database_refuses_fails_at_once(ts_env: WorkflowEnvironment) -> None:
    """The worker's interceptor: a DataError in any activity is never retried (it could not
    succeed), whatever the activity's own handling."""
    async with Worker(
        ts_env.client,
        task_queue="refused",
        workflows=[RefusedWriteWorkflow],
        activities=[writes_what_the_database_refuses],
        interceptors=[CaseLoggingInterceptor()],
    ):
        outcome = await ts_env.client.execute_workflow(
            RefusedWriteWorkflow.run, id=f"refused-{uuid.uuid4().hex[:8]}", task_queue="refused"
        )
    assert outcome == f"{UNSTORABLE} True {RetryState.NON_RETRYABLE_FAILURE}"
