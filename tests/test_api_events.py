"""POST /events and /events/batch on a real dev server: each detection recorded once in the
inbox and routed to its office's case; opened, joined, duplicate; the workflow told coalesced."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.intake import subject_key
from api.routes.events import EventIn
from tests.keys import TEST_KEYRING
from tests.test_api_integration import api_client

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, dev_worker: Worker, pg_dsn: str, task_queue: str
) -> AsyncIterator[httpx.AsyncClient]:
    """Update-with-start needs a full Temporal server: the dev server, not the test server."""
    async with api_client(dev_env, pg_dsn, task_queue, detection_signal_interval_s=0.3) as client:
        yield client


def event(key: str | None = None, domain: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "idempotency_key": key or f"k-{uuid.uuid4().hex}",
        "type": "violation_detected",
        "source": "monitoring",
        "occurred_at": "2026-11-28T09:30:00+08:00",
        "payload": {"url": "https://example.cn/1"},
        "subject": {
            "kind": "website",
            "name": "Example",
            "identifiers": {"domain": domain or f"s{uuid.uuid4().hex[:12]}.example.cn"},
        },
        "violation_category": "prohibited_information",
        "legal_basis": "Cybersecurity Law art. 61",
        "office": "events-office",
        **extra,
    }


async def send(api: httpx.AsyncClient, body: dict[str, Any], status: int) -> dict[str, Any]:
    response = await api.post("/events", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def event_rows(pool: asyncpg.Pool, case_id: str) -> int:
    count = await pool.fetchval("SELECT count(*) FROM detections WHERE case_id = $1", case_id)
    return int(count)


async def registered(pool: asyncpg.Pool, case_id: str) -> None:
    """Wait (bounded) until the case's opening step is in the register."""
    for _ in range(200):
        if await pool.fetchval("SELECT last_seq FROM cases WHERE case_id = $1", case_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{case_id} never reached the register")


async def test_first_event_opens_repeats_join_and_duplicates_count_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    first = event()
    opened = await send(api, first, 201)
    assert opened["result"] == "opened" and opened["case_id"].endswith("-1")
    assert (await send(api, first, 200))["result"] == "duplicate"
    domain = first["subject"]["identifiers"]["domain"]
    joined = await send(api, event(domain=domain), 200)
    assert (joined["result"], joined["case_id"]) == ("joined", opened["case_id"])
    assert await event_rows(pool, opened["case_id"]) == 2
    await registered(pool, opened["case_id"])
    opener = await pool.fetchval(
        "SELECT opened_by FROM cases WHERE case_id = $1", opened["case_id"]
    )
    assert opener == f"event:{first['idempotency_key']}"
    # The detections live in the inbox; the audit trail holds the procedure's steps only.
    actions = await pool.fetch(
        "SELECT action FROM case_audit WHERE case_id = $1", opened["case_id"]
    )
    assert [row["action"] for row in actions] == ["case_opened"]


async def test_concurrent_duplicates_take_effect_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    same = event()
    responses = await asyncio.gather(*(api.post("/events", json=same) for _ in range(8)))
    results = sorted(r.json()["result"] for r in responses)
    assert results == ["duplicate"] * 7 + ["opened"]
    case_ids = {r.json()["case_id"] for r in responses}
    assert len(case_ids) == 1
    assert await event_rows(pool, case_ids.pop()) == 1


async def test_after_the_case_closes_the_next_detection_opens_a_new_case(
    api: httpx.AsyncClient,
) -> None:
    first = event()
    opened = await send(api, first, 201)
    closed = await api.post(
        f"/cases/{opened['case_id']}/filing-decision",
        json={"actor": "officer.li", "decision": "not_filed", "reasons": "No violation."},
    )
    assert closed.json()["outcome"] == "not_filed"
    domain = first["subject"]["identifiers"]["domain"]
    again = await send(api, event(domain=domain), 201)
    assert again["result"] == "opened"
    assert again["case_id"] == opened["case_id"].removesuffix("-1") + "-2"


async def test_batch_answers_per_item(api: httpx.AsyncClient) -> None:
    a = event()
    domain = a["subject"]["identifiers"]["domain"]
    response = await api.post(
        "/events/batch", json={"events": [a, event(domain=domain), a, event()]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["index"] for item in body["results"]] == [0, 1, 2, 3]
    # Two subjects: two cases opened; the repeat detection joined; the repeated key counted once.
    assert (body["opened"], body["joined"], body["duplicate"], body["failed"]) == (2, 1, 1, 0)
    assert {item["receipt"]["case_id"] for item in body["results"][:3]} == {
        body["results"][0]["receipt"]["case_id"]
    }


async def test_bad_events_are_422_naming_the_field(api: httpx.AsyncClient) -> None:
    response = await api.post("/events", json=event(type="rumour"))
    assert response.status_code == 422
    assert "type" in [e["field"] for e in response.json()["errors"]]
    response = await api.post("/events", json=event(occurred_at="2026-11-28T09:30:00"))
    assert response.status_code == 422 and "timezone" in response.json()["detail"]
    response = await api.post("/events/batch", json={"events": []})
    assert response.status_code == 422 and "events" in response.json()["detail"]


async def test_unknown_category_is_refused_naming_it(api: httpx.AsyncClient) -> None:
    bad = event(violation_category="astrology")
    problem = await send(api, bad, 409)
    assert "unknown violation category 'astrology'" in problem["detail"]
    assert "prohibited_information" in problem["detail"]  # the known ones are listed
    # Opened directly, the case answers why it never opened.
    case_id = f"T-{uuid.uuid4().hex[:10]}"
    body = {k: bad[k] for k in ("subject", "violation_category", "legal_basis", "office")}
    opened = await api.post(
        "/cases", json=body | {"case_id": case_id, "severity": "general", "opened_by": "x"}
    )
    assert opened.status_code == 201
    for _ in range(50):
        response = await api.get(f"/cases/{case_id}")
        if response.status_code == 409:
            break
        await asyncio.sleep(0.1)
    assert response.status_code == 409
    assert "unknown violation category 'astrology'" in response.json()["detail"]


async def test_openings_and_events_record_the_acting_key(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    opened = await send(api, event(), 201)
    await registered(pool, opened["case_id"])
    keys = await pool.fetch(
        "SELECT action, payload->>'acting_key' AS key FROM case_audit WHERE case_id = $1"
        " ORDER BY seq",
        opened["case_id"],
    )
    prefix = api.headers["authorization"].split("_")[1]
    assert [(row["action"], row["key"]) for row in keys] == [("case_opened", prefix)]
    sender = await pool.fetchval(
        "SELECT acting_key FROM detections WHERE case_id = $1", opened["case_id"]
    )
    assert sender == prefix
    forged = await api.post("/events", json=event(acting_key="someone-else"))
    assert forged.status_code == 422 and "acting_key" in forged.json()["detail"]
    forged_case = await api.post(
        "/cases",
        json={k: event()[k] for k in ("subject", "violation_category", "legal_basis", "office")}
        | {"severity": "general", "opened_by": "x", "acting_key": "someone-else"},
    )
    assert forged_case.status_code == 422


async def test_a_batch_of_only_bad_items_answers_each_422(api: httpx.AsyncClient) -> None:
    nobody = event()
    nobody["subject"]["identifiers"] = {}
    response = await api.post("/events/batch", json={"events": [nobody, event(type="rumour")]})
    assert response.status_code == 200, response.text
    assert [item["status"] for item in response.json()["results"]] == [422, 422]
    assert "at least one identifier" in response.json()["results"][0]["problem"]["detail"]


async def test_a_bad_item_in_a_batch_is_answered_in_its_place(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/events/batch", json={"events": [event(), event(type="rumour"), event()]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [item["status"] for item in body["results"]]
    assert statuses == [201, 422, 201]
    problem = body["results"][1]["problem"]
    assert "type" in problem["detail"] and problem["type"].endswith("/invalid-request")
    assert problem["status"] == 422 and problem["errors"][0]["field"] == "type"
    assert (body["opened"], body["failed"]) == (2, 1)


async def test_a_key_reused_for_another_body_is_409_naming_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    first = event()
    opened = await send(api, first, 201)
    # The same key for another category: refused, no second case opened.
    other = {**first, "violation_category": "fraud"}
    problem = await send(api, other, 409)
    assert problem["type"].endswith("/idempotency-key-reused")
    assert first["idempotency_key"] in problem["detail"]
    assert "case_id" not in problem
    count = await pool.fetchval(
        "SELECT count(*) FROM detections WHERE idempotency_key = $1", first["idempotency_key"]
    )
    assert count == 1
    assert (await send(api, first, 200))["case_id"] == opened["case_id"]


async def test_each_office_has_its_own_case_and_keys_reveal_nothing_across(
    dev_env: WorkflowEnvironment, dev_worker: Worker, pg_dsn: str, task_queue: str
) -> None:
    domain = f"s{uuid.uuid4().hex[:12]}.example.cn"
    async with (
        api_client(dev_env, pg_dsn, task_queue, role="enforcement-system", office="beijing") as bj,
        api_client(dev_env, pg_dsn, task_queue, role="enforcement-system", office="shanghai") as sh,
    ):
        shanghai = await send(sh, event(domain=domain, office="shanghai"), 201)
        beijing = await send(bj, event(domain=domain, office="beijing"), 201)
        assert beijing["case_id"] != shanghai["case_id"]
        joined = await send(bj, event(domain=domain, office="beijing"), 200)
        assert (joined["result"], joined["case_id"]) == ("joined", beijing["case_id"])
        # Beijing cannot send Shanghai's events, nor learn anything from a key Shanghai used.
        taken = event(domain=domain, office="shanghai")
        await send(sh, taken, 200)
        refused = await bj.post("/events", json={**taken, "office": "beijing"})
        assert refused.status_code == 409
        assert shanghai["case_id"] not in refused.text and "shanghai" not in refused.text
        assert (await bj.post("/events", json=taken)).status_code == 403
    # A supervisor over every office sees the subject has a case in each.
    async with api_client(dev_env, pg_dsn, task_queue, role="supervisor") as everyone:
        for _ in range(100):
            listed = (await everyone.get("/cases", params={"subject": domain})).json()
            if len(listed["items"]) == 2:
                break
            await asyncio.sleep(0.1)
        assert {(c["office"], c["case_id"]) for c in listed["items"]} == {
            ("beijing", beijing["case_id"]),
            ("shanghai", shanghai["case_id"]),
        }


async def test_detections_reach_the_workflow_coalesced_and_page_from_the_inbox(
    api: httpx.AsyncClient, pool: asyncpg.Pool, dev_env: WorkflowEnvironment
) -> None:
    first = event()
    opened = await send(api, first, 201)
    case_id = opened["case_id"]
    await registered(pool, case_id)
    handle = dev_env.client.get_workflow_handle(f"case:{case_id}")
    before = (await handle.fetch_history()).events
    domain = first["subject"]["identifiers"]["domain"]
    batch = [event(domain=domain) for _ in range(300)]
    response = await api.post("/events/batch", json={"events": batch})
    assert response.status_code == 200, response.text
    assert response.json()["joined"] == 300
    for _ in range(100):
        state = (await api.get(f"/cases/{case_id}")).json()["state"]
        if state["detections"]["count"] == 301:
            break
        await asyncio.sleep(0.1)
    assert state["detections"]["count"] == 301
    newest = await pool.fetchval(
        "SELECT idempotency_key FROM detections WHERE case_id = $1 ORDER BY id DESC LIMIT 1",
        case_id,
    )
    assert state["detections"]["latest"][0]["idempotency_key"] == newest
    after = (await handle.fetch_history()).events
    # 300 detections, a handful of signals: the history grows by a few events, not 3,000.
    assert len(after) - len(before) <= 15, len(after) - len(before)
    view = (await api.get(f"/cases/{case_id}")).json()
    assert view["detections"]["count"] == 301
    # Paging through the inbox: every detection once, in the order received.
    seen: list[str] = []
    after_cursor: int | None = None
    while True:
        params = {"limit": 120} | ({"after": after_cursor} if after_cursor is not None else {})
        page = (await api.get(f"/cases/{case_id}/detections", params=params)).json()
        seen += [d["idempotency_key"] for d in page["detections"]]
        after_cursor = page["next_after"]
        if after_cursor is None:
            break
    # A batch's items are recorded a few at a time: every one once, the opener first.
    assert seen[0] == first["idempotency_key"] and len(seen) == len(set(seen)) == 301
    assert set(seen[1:]) == {e["idempotency_key"] for e in batch}
    assert page["count"] == 301
    missing = await api.get("/cases/EV-nothing-1/detections")
    assert missing.status_code == 404


async def test_a_batch_for_one_subject_answers_every_item(api: httpx.AsyncClient) -> None:
    domain = f"s{uuid.uuid4().hex[:12]}.example.cn"
    response = await api.post(
        "/events/batch", json={"events": [event(domain=domain) for _ in range(500)]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["opened"], body["joined"], body["failed"]) == (1, 499, 0)
    assert len({item["receipt"]["case_id"] for item in body["results"]}) == 1


async def test_a_terminated_case_refuses_detections_until_an_operator_decides(
    api: httpx.AsyncClient, pool: asyncpg.Pool, dev_env: WorkflowEnvironment
) -> None:
    first = event()
    opened = await send(api, first, 201)
    case_id = opened["case_id"]
    await registered(pool, case_id)
    await dev_env.client.get_workflow_handle(f"case:{case_id}").terminate(reason="drill")
    domain = first["subject"]["identifiers"]["domain"]
    # Recorded (the inbox keeps it); the news to the case finds its run ended and the
    # register is marked, so from then on the subject's detections are refused.
    await send(api, event(domain=domain), 200)
    for _ in range(100):
        if await pool.fetchval("SELECT interrupted FROM cases WHERE case_id = $1", case_id):
            break
        await asyncio.sleep(0.1)
    problem = await send(api, event(domain=domain), 409)
    assert problem["type"].endswith("/case-interrupted")
    assert case_id in problem["detail"] and "terminated" in problem["detail"]
    assert "rectify cases reopen" in problem["detail"]
    view = (await api.get(f"/cases/{case_id}")).json()
    assert view["interrupted"]["status"] == "terminated"
    assert view["interrupted"]["detail"].startswith("drill")
    # Nothing opened a new case behind the operator's back.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM detections WHERE case_id <> $1 AND subject_key = $2",
            case_id,
            f"domain={domain}",
        )
        == 0
    )


async def test_a_case_whose_opener_never_started_it_is_started_by_the_next_news(
    api: httpx.AsyncClient, pool: asyncpg.Pool, dev_env: WorkflowEnvironment
) -> None:
    """The opener's request died between its INSERT and its start: the next detection is
    recorded, and the news for it finds no workflow and starts the case from the opener."""
    lost = EventIn.model_validate(event())
    key = subject_key(lost.subject)
    case_id = f"{TEST_KEYRING.case_prefix(lost.office, lost.violation_category, key)}-1"
    await pool.execute(
        "INSERT INTO detections (idempotency_key, office, violation_category, subject_key,"
        " generation, case_id, opens, body_hash, event) VALUES ($1, $2, $3, $4, 1, $5, true,"
        " 'x', $6)",
        lost.idempotency_key,
        lost.office,
        lost.violation_category,
        key,
        case_id,
        lost.body(),
    )
    domain = lost.subject.identifiers.domain
    joined = await send(api, event(domain=domain), 200)
    assert (joined["result"], joined["case_id"], joined["stage"]) == ("joined", case_id, None)
    await registered(pool, case_id)
    opener = await pool.fetchval("SELECT opened_by FROM cases WHERE case_id = $1", case_id)
    assert opener == f"event:{lost.idempotency_key}"


@pytest.mark.parametrize("path", ["/events", "/events/batch"])
async def test_a_route_keeps_the_case_id_prefix_of_its_first_case(
    api: httpx.AsyncClient, pool: asyncpg.Pool, path: str
) -> None:
    """Case ids are keyed hashes of the route now; a route recorded before (an unkeyed SHA-256
    prefix) keeps its own, so its detections still join the case it opened."""
    first = EventIn.model_validate(event())
    key = subject_key(first.subject)
    legacy = f"EV-{uuid.uuid4().hex[:16]}-1"
    await pool.execute(
        "INSERT INTO detections (idempotency_key, office, violation_category, subject_key,"
        " generation, case_id, opens, body_hash, event) VALUES ($1, $2, $3, $4, 1, $5, true,"
        " 'x', $6)",
        first.idempotency_key,
        first.office,
        first.violation_category,
        key,
        legacy,
        first.body(),
    )
    later = event(domain=first.subject.identifiers.domain)
    if path == "/events":
        joined = await send(api, later, 200)
    else:
        answer = await api.post(path, json={"events": [later]})
        assert answer.status_code == 200, answer.text
        joined = answer.json()["results"][0]["receipt"]
    assert (joined["result"], joined["case_id"]) == ("joined", legacy)
    keyed = TEST_KEYRING.case_prefix(first.office, first.violation_category, key)
    assert keyed != legacy.rsplit("-", 1)[0]


async def test_a_batch_routes_like_one_by_one_and_races_settle_on_one_opener(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    a, b = (f"s{uuid.uuid4().hex[:12]}.example.cn" for _ in range(2))
    reused = event(domain=a)
    items = [event(domain=a), event(domain=b), reused, event(domain=b), reused]
    items.append({**reused, "payload": {"url": "https://example.cn/other"}})
    body = (await api.post("/events/batch", json={"events": items})).json()
    answers = [(r["status"], (r["receipt"] or {}).get("result")) for r in body["results"]]
    assert answers == [
        (201, "opened"),
        (201, "opened"),
        (200, "joined"),
        (200, "joined"),
        (200, "duplicate"),
        (409, None),
    ]
    assert "already used for another event" in body["results"][5]["problem"]["detail"]
    # Two batches at once for one new subject: one opener, every item on the one case.
    c = f"s{uuid.uuid4().hex[:12]}.example.cn"
    both = await asyncio.gather(
        *(
            api.post("/events/batch", json={"events": [event(domain=c) for _ in range(50)]})
            for _ in range(2)
        )
    )
    results = [item for response in both for item in response.json()["results"]]
    assert sorted(r["receipt"]["result"] for r in results).count("opened") == 1
    assert len({r["receipt"]["case_id"] for r in results}) == 1
    opened = await pool.fetchval(
        "SELECT count(*) FROM detections WHERE subject_key = $1 AND opens", f"domain={c}"
    )
    assert opened == 1


async def test_concurrent_batches_opening_the_same_subjects_neither_deadlock_nor_fail(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    domains = [f"s{uuid.uuid4().hex[:12]}.example.cn" for _ in range(40)]

    def batch(order: list[str]) -> dict[str, Any]:
        return {"events": [event(domain=domain) for domain in order for _ in range(3)]}

    orders = [domains, domains[::-1], domains[20:] + domains[:20], domains[::2] + domains[1::2]]
    responses = await asyncio.gather(*(api.post("/events/batch", json=batch(o)) for o in orders))
    assert [r.status_code for r in responses] == [200] * 4
    results = [item for r in responses for item in r.json()["results"]]
    assert all(item["status"] in (200, 201) for item in results), results
    opened = await pool.fetch(
        "SELECT subject_key, count(*) FILTER (WHERE opens) AS openers, count(DISTINCT case_id)"
        " AS cases, count(*) AS rows FROM detections WHERE subject_key = ANY($1)"
        " GROUP BY subject_key",
        [f"domain={domain}" for domain in domains],
    )
    assert len(opened) == 40
    assert {(row["openers"], row["cases"], row["rows"]) for row in opened} == {(1, 1, 12)}
