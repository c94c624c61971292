"""Faults injected for real on real processes (issue 9): the engine loses nothing, and does
nothing twice.

1. A worker SIGKILLed again and again (and restarted) beside another, while cases run the
   main path: every case closes, no audit row or document twice, every document series gapless.
2. The Temporal dev server SIGKILLed and restarted on its SQLite file: every timer parked
   before the kill fires after the restart, and the work goes on.
3. PostgreSQL stopped for 20 s while cases run through the API: the API answers 503
   `database-unavailable` with Retry-After meanwhile (never hangs), and afterwards the cases
   complete, nothing duplicated.
4. The API SIGKILLed mid-stream of events, restarted, the client retrying every event that got
   no 2xx: every event recorded exactly once, each route's case opened exactly once.

Each test prints its figures (run with -s) and puts them in its assertion messages.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from domain.models import case_workflow_id
from tests.faults import (
    Answer,
    ApiCaseDriver,
    FaultStack,
    bounded,
    call,
    case_body,
    check_records,
    command_body,
    history_counts,
    wait_until,
)
from tests.test_api_events import event
from workflows.campaign import (
    CampaignInput,
    CampaignProgress,
    CampaignWorkflow,
    campaign_case_id,
    campaign_workflow_id,
)

pytestmark = pytest.mark.faults


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[FaultStack]:
    stack = FaultStack(tmp_path)
    try:
        yield stack
    finally:
        await stack.close()
        assert stack.leftovers == [], f"processes outlived the test: {stack.leftovers}"


def report(title: str, figures: dict[str, Any]) -> str:
    text = f"[faults] {title}: " + "; ".join(f"{k}: {v}" for k, v in figures.items())
    print("\n" + text, flush=True)
    return text


def new_ids(prefix: str, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"{prefix}-{tag}-{i:03d}" for i in range(n)]


# --- 1. workers killed ----------------------------------------------------------------------

CASES_UNDER_KILLS = 50


@pytest.mark.timeout(240)
async def test_cases_close_exactly_once_while_a_worker_is_killed_again_and_again(
    stack: FaultStack,
) -> None:
    await stack.start_postgres()
    await stack.start_temporal()
    await stack.start_worker("worker-a")  # never killed
    await stack.start_worker("worker-b")  # killed and restarted while the cases run
    await stack.start_api()
    case_ids = new_ids("FW", CASES_UNDER_KILLS)
    kills: list[float] = []
    started = time.monotonic()

    async with await stack.http() as http:
        driver = ApiCaseDriver(http, "faults-workers", interview_lead=3, give_up_after=170)
        # Openings spread over the first 20 s, so that kills find cases at every stage.
        drives = asyncio.create_task(driver.run_all(case_ids, spacing=0.4, within=180))

        async def killer() -> None:
            rng = random.Random(9)
            while not drives.done() and len(kills) < 10:
                await asyncio.sleep(rng.uniform(2.0, 3.5))  # worker-b takes some of the work
                if drives.done():
                    return
                await stack.kill(stack.workers["worker-b"])
                kills.append(time.monotonic() - started)
                await asyncio.sleep(rng.uniform(0.3, 1.0))
                await stack.start_worker("worker-b")

        killing = asyncio.create_task(killer())
        try:
            failures = await drives
        finally:
            killing.cancel()
            (killed,) = await asyncio.gather(killing, return_exceptions=True)
        if isinstance(killed, Exception):
            raise killed  # the fault itself could not be injected: that says why

    records = await check_records(stack.dsn, case_ids)
    lost = await history_counts(await stack.client(), (case_workflow_id(c) for c in case_ids))
    figures = report(
        "workers killed",
        {
            "SIGKILLs of worker-b": len(kills),
            "at s": [round(k, 1) for k in kills],
            **records.figures(),
            "audit rows": records.audit_rows,
            "documents": records.documents,
            "tasks lost with the kills (histories)": dict(lost),
            **driver.figures(),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert failures == [], f"cases that did not close: {failures}\n{figures}"
    assert len(kills) >= 3, f"too few kills to mean anything\n{figures}"
    assert records.problems() == [], f"{records.problems()}\n{figures}"
    assert driver.server_errors() == [], (
        f"500s: {driver.server_errors()}\n{stack.unhandled('api')}\n{figures}"
    )


# --- 2. the Temporal server killed ----------------------------------------------------------

# Campaign pauses between waves of case starts (CampaignInput.pause_seconds, a product timer):
# short ones fall due while the server is down, long ones after it is back.
SHORT_PAUSE, LONG_PAUSE = 5.0, 20.0
OUTAGE_S = 8.0


def campaign_input(campaign_id: str, waves: int, per_wave: int, pause: float) -> CampaignInput:
    package = campaign_id.lower().replace("-", "")  # FT-… : starts with a letter
    return CampaignInput.model_validate(
        {
            "campaign_id": campaign_id,
            "title": "Qinglang: fault drill",
            "office": "faults-temporal",
            "violation_category": "personal_information",
            "legal_basis": "Personal Information Protection Law art. 66",
            "opened_by": "officer.li",
            "subjects": [
                {
                    "kind": "app",
                    "name": f"App {n}",
                    "identifiers": {"app_package": f"com.{package}.app{n}"},
                }
                for n in range(waves * per_wave)
            ],
            "concurrency": per_wave,
            "pause_seconds": pause,
        }
    )


async def timers(client: Client, workflow_id: str) -> dict[str, tuple[datetime, datetime | None]]:
    """Each timer of the workflow: when it started, when it fired (None: still pending)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    found: dict[str, tuple[datetime, datetime | None]] = {}
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timer_id = e.timer_started_event_attributes.timer_id
            found[timer_id] = (e.event_time.ToDatetime(tzinfo=UTC), None)
        elif e.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            timer_id = e.timer_fired_event_attributes.timer_id
            found[timer_id] = (found[timer_id][0], e.event_time.ToDatetime(tzinfo=UTC))
    return found


@pytest.mark.timeout(180)
async def test_timers_parked_before_the_temporal_server_is_killed_fire_after_its_restart(
    stack: FaultStack,
) -> None:
    await stack.start_all()
    client = await stack.client()
    tag = uuid.uuid4().hex[:6].upper()
    plans = {  # campaign id → (waves, cases per wave, pause)
        f"FT-{tag}-S1": (3, 3, SHORT_PAUSE),
        f"FT-{tag}-S2": (3, 3, SHORT_PAUSE),
        f"FT-{tag}-L1": (2, 3, LONG_PAUSE),
        f"FT-{tag}-L2": (2, 3, LONG_PAUSE),
    }
    for campaign_id, (waves, per_wave, pause) in plans.items():
        await client.start_workflow(
            CampaignWorkflow.run,
            campaign_input(campaign_id, waves, per_wave, pause),
            id=campaign_workflow_id(campaign_id),
            task_queue=stack.task_queue,
        )

    async def all_parked() -> dict[str, list[str]]:
        while True:
            parked = {
                campaign_id: [
                    timer_id
                    for timer_id, (_, fired) in (
                        await timers(client, campaign_workflow_id(campaign_id))
                    ).items()
                    if fired is None
                ]
                for campaign_id in plans
            }
            if all(parked.values()):
                return parked
            await asyncio.sleep(0.1)

    parked = await bounded("a pause timer parked in every campaign", all_parked(), 30)
    # Cases the first waves opened before the kill: taken to closed after the restart.
    before = [campaign_case_id(campaign_id, n) for campaign_id in plans for n in (1, 2, 3)]

    await stack.kill_temporal()
    killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
    await asyncio.sleep(OUTAGE_S)
    await stack.start_temporal()  # the same SQLite file, the same port
    restarted_at, restarted_wall = time.monotonic(), datetime.now(UTC)
    worker_alive = stack.workers["worker"].alive()

    client = await stack.client()

    progress = await bounded(
        "every campaign completing after the restart",
        asyncio.gather(
            *(
                client.get_workflow_handle(
                    campaign_workflow_id(campaign_id), result_type=CampaignProgress
                ).result()
                for campaign_id in plans
            )
        ),
        90,
    )
    started_by_campaigns = sum(p.started for p in progress)
    fired_after: list[str] = []  # parked before the kill, fired after the restart
    due_in_outage: list[str] = []  # of those, the ones that fell due while it was down
    not_fired: list[str] = []
    for campaign_id, timer_ids in parked.items():
        pause_s = timedelta(seconds=plans[campaign_id][2])
        seen = await timers(client, campaign_workflow_id(campaign_id))
        for timer_id in timer_ids:
            name = f"{campaign_id}/timer {timer_id}"
            started_at, fired_at = seen[timer_id]
            if fired_at is None or fired_at < killed_wall:
                not_fired.append(f"{name} (fired at {fired_at}, killed at {killed_wall})")
                continue
            fired_after.append(name)
            if started_at + pause_s < restarted_wall:
                due_in_outage.append(name)

    # A campaign is done once its last wave has started; those cases register a moment later.
    expected = {campaign_id: waves * per for campaign_id, (waves, per, _) in plans.items()}
    registered: dict[str, int] = {}
    conn = await asyncpg.connect(stack.dsn)
    try:
        for _ in range(300):
            rows = await conn.fetch(
                "SELECT campaign_id, count(*) AS n FROM cases"
                " WHERE campaign_id = ANY($1::text[]) AND last_seq >= 1 GROUP BY campaign_id",
                list(plans),
            )
            registered = {r["campaign_id"]: r["n"] for r in rows}
            if registered == expected:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()

    async with await stack.http() as http:
        driver = ApiCaseDriver(http, "faults-temporal", interview_lead=2, give_up_after=55)
        failures = await driver.run_all(before, within=60)
    records = await check_records(stack.dsn, before)
    figures = report(
        "Temporal killed",
        {
            "SIGKILLs of the dev server": 1,
            "outage s": round(restarted_at - killed_at, 1),
            "worker survived the outage": worker_alive,
            "campaigns": len(plans),
            "timers parked at the kill": sum(len(t) for t in parked.values()),
            "fired after the restart": len(fired_after),
            "of them due during the outage": len(due_in_outage),
            "never fired": not_fired,
            "campaign cases started": started_by_campaigns,
            "registered": sum(registered.values()),
            "of": sum(expected.values()),
            "pre-kill cases driven to closed after": len(before) - len(records.not_closed),
            "duplicates": records.duplicates,
            **driver.figures(),
        },
    )
    assert not_fired == [], f"timers parked before the kill never fired\n{figures}"
    assert failures == [], f"cases opened before the kill that did not close: {failures}\n{figures}"
    assert registered == expected, f"campaign cases not all opened: {registered}\n{figures}"
    assert records.problems() == [], f"{records.problems()}\n{figures}"
    assert driver.server_errors() == [], (
        f"500s: {driver.server_errors()}\n{stack.unhandled('api')}\n{figures}"
    )
    assert worker_alive, f"the worker died with the server:\n{stack.tail('worker')}\n{figures}"


# --- 3. PostgreSQL stopped ------------------------------------------------------------------

DB_OUTAGE_S = 20.0
CASES_UNDER_DB_OUTAGE = 30
HAMMER = 30  # concurrent requests kept in flight across the stop


@pytest.mark.timeout(180)
async def test_a_database_outage_is_503_meanwhile_and_the_cases_complete_after(
    stack: FaultStack,
) -> None:
    await stack.start_postgres(durable=True)
    await stack.start_temporal()
    await stack.start_worker()
    await stack.start_api()
    case_ids = new_ids("FD", CASES_UNDER_DB_OUTAGE)
    probes: list[tuple[str, Answer]] = []
    edge: list[Answer] = []  # answers to the requests in flight as the database stopped
    outage: dict[str, float] = {}
    started = time.monotonic()

    async with await stack.http() as http:
        office = "faults-database"
        driver = ApiCaseDriver(http, office, interview_lead=3, give_up_after=150)

        async def hammer(until: asyncio.Event) -> None:
            """Requests in flight across the moment the database goes: each is answered as
            before (200) or as during the outage (503), never otherwise."""

            async def loop(n: int) -> None:
                # Routes that read only PostgreSQL (the register, a case's detections): their
                # whole time is spent on the connections the stop cuts.
                paths = ("/cases?office=faults-database", f"/cases/{case_ids[n % 10]}/detections")
                for i in range(10**6):
                    if until.is_set():
                        return
                    edge.append(await call(http, "GET", paths[i % 2], within=15))

            await asyncio.gather(*(loop(n) for n in range(HAMMER)))

        drives = asyncio.create_task(driver.run_all(case_ids, spacing=0.25, within=160))
        await asyncio.sleep(5)  # cases at every stage of the main path
        enough = asyncio.Event()
        hammering = asyncio.create_task(hammer(enough))
        await asyncio.sleep(0.5)
        await stack.stop_postgres()
        outage["stopped"] = time.monotonic() - started
        await asyncio.sleep(1.0)
        enough.set()
        await hammering
        probe_cases = case_ids[:3]
        while time.monotonic() - started - outage["stopped"] < DB_OUTAGE_S - 2:
            for what, method, path, body in (
                ("GET /cases", "GET", "/cases", None),
                ("GET /cases/{id}", "GET", f"/cases/{probe_cases[0]}", None),
                ("POST /events", "POST", "/events", event(office=office)),
                (
                    "POST a command",
                    "POST",
                    f"/cases/{probe_cases[1]}/filing-decision",
                    command_body("decide_filing"),
                ),
                ("POST /cases", "POST", "/cases", case_body(new_ids("FX", 1)[0], office)),
            ):
                probes.append((what, await call(http, method, path, body, within=15)))
            await asyncio.sleep(1)
        left = DB_OUTAGE_S - (time.monotonic() - started - outage["stopped"])
        await asyncio.sleep(max(0.0, left))
        await stack.start_postgres()  # the same data directory and port
        outage["started"] = time.monotonic() - started
        failures = await drives

    records = await check_records(stack.dsn, case_ids)
    probe_answers = Counter(f"{what}: {a.describe()}" for what, a in probes)
    wrong = [
        f"{what}: {a.describe()} in {a.seconds:.1f} s"
        for what, a in probes
        if not (
            a.status == 503
            and a.problem_type.endswith("/database-unavailable")
            and a.headers is not None
            and a.headers.get("retry-after")
        )
    ]
    edge_answers = Counter(a.describe() for a in edge)
    edge_wrong = {
        what: n
        for what, n in edge_answers.items()
        if what not in ("200", "503 database-unavailable")
    }
    figures = report(
        "PostgreSQL stopped",
        {
            "outage s": round(outage["started"] - outage["stopped"], 1),
            "requests in flight across the stop": len(edge),
            "their answers": dict(edge_answers),
            "probes during the outage": len(probes),
            "probe answers": dict(probe_answers),
            "slowest probe s": round(max((a.seconds for _, a in probes), default=0), 2),
            **records.figures(),
            **driver.figures(),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert failures == [], f"cases that did not close: {failures}\n{figures}"
    assert probes, f"no probe ran during the outage\n{figures}"
    assert wrong == [], f"answers other than 503 database-unavailable: {wrong}\n{figures}"
    assert records.problems() == [], f"{records.problems()}\n{figures}"
    assert edge_wrong == {}, (
        f"requests caught by the stop answered {edge_wrong}\n{stack.unhandled('api')}\n{figures}"
    )
    # A request caught by the outage is 503 (or, for a command already sent to its case, 504
    # after the answer timeout), never an internal error.
    assert driver.server_errors() == [], (
        f"500s: {driver.server_errors()}\n{stack.unhandled('api')}\n{figures}"
    )


# --- 4. the API killed mid-stream -----------------------------------------------------------

ROUTES, EVENTS_PER_ROUTE, SENDERS = 50, 6, 16
KILL_AT = (0.2, 0.45, 0.7)  # shares of the events answered


@pytest.mark.timeout(120)
async def test_events_streamed_through_api_kills_are_recorded_exactly_once(
    stack: FaultStack,
) -> None:
    await stack.start_all()
    office = "faults-events"
    domains = [f"r{uuid.uuid4().hex[:10]}.faults.example.cn" for _ in range(ROUTES)]
    events = [
        event(f"fe-{uuid.uuid4().hex}", domain, office=office)
        for _ in range(EVENTS_PER_ROUTE)
        for domain in domains
    ]
    random.Random(4).shuffle(events)
    route_of = {e["idempotency_key"]: e["subject"]["identifiers"]["domain"] for e in events}
    first_2xx: dict[str, tuple[int, Answer]] = {}  # key → (attempt, answer)
    failures: Counter[str] = Counter()
    kills: list[int] = []
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for e in events:
        queue.put_nowait(e)
    started = time.monotonic()

    async with await stack.http(request_timeout=15) as http:

        async def sender() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                for attempt in range(1, 200):
                    answer = await call(http, "POST", "/events", body, within=15)
                    if answer.ok:
                        first_2xx[body["idempotency_key"]] = (attempt, answer)
                        break
                    failures[answer.describe()] += 1
                    await asyncio.sleep(answer.retry_after(default=0.3))
                else:
                    raise AssertionError(f"event {body['idempotency_key']} never answered 2xx")
                await asyncio.sleep(0.02)

        async def killer() -> None:
            for share in KILL_AT:
                wanted = share * len(events)
                await wait_until(
                    f"{share:.0%} of the events answered",
                    lambda: len(first_2xx) >= wanted,  # noqa: B023 (awaited here)
                    60,
                )
                assert stack.api is not None
                await stack.kill(stack.api)
                kills.append(len(first_2xx))
                await asyncio.sleep(1.0)  # the stream goes on: connections refused
                await stack.start_api()

        await bounded(
            "every event answered 2xx",
            asyncio.gather(killer(), *(sender() for _ in range(SENDERS))),
            80,
        )

    conn = await asyncpg.connect(stack.dsn)
    try:
        rows = await conn.fetch(
            "SELECT idempotency_key, case_id, opens FROM detections WHERE office = $1", office
        )

        async def all_registered() -> int:
            while True:
                n = await conn.fetchval(
                    "SELECT count(*) FROM cases WHERE office = $1 AND last_seq >= 1", office
                )
                if n >= ROUTES:
                    return int(n)
                await asyncio.sleep(0.2)

        registered = await bounded("every route's case registered", all_registered(), 30)
    finally:
        await conn.close()

    per_key = Counter(r["idempotency_key"] for r in rows)
    repeated = [key for key, n in per_key.items() if n > 1]
    missing = [key for key in route_of if key not in per_key]
    strangers = [key for key in per_key if key not in route_of]
    case_of = {r["idempotency_key"]: r["case_id"] for r in rows}
    routes: dict[str, set[str]] = {}
    openers: Counter[str] = Counter()
    for r in rows:
        routes.setdefault(route_of.get(r["idempotency_key"], "?"), set()).add(r["case_id"])
        openers[r["case_id"]] += int(r["opens"])
    split_routes = [domain for domain, cases in routes.items() if len(cases) != 1]
    bad_openers = [case for case in set(case_of.values()) if openers[case] != 1]
    misrouted = [
        key for key, (_, answer) in first_2xx.items() if answer.body["case_id"] != case_of.get(key)
    ]
    results = Counter(answer.body["result"] for _, answer in first_2xx.values())
    retried = Counter(
        answer.body["result"] for attempt, answer in first_2xx.values() if attempt > 1
    )
    figures = report(
        "API killed mid-stream",
        {
            "SIGKILLs of the API": len(kills),
            "after answers": kills,
            "events": len(events),
            "routes": ROUTES,
            "answered 2xx": len(first_2xx),
            "first 2xx results": dict(results),
            "2xx only on a retry": dict(retried),
            "failed attempts": dict(failures),
            "detections recorded": len(rows),
            "recorded twice": len(repeated),
            "lost": len(missing),
            "cases registered": registered,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert len(kills) == len(KILL_AT), figures
    errors = {what: n for what, n in failures.items() if what.startswith("500")}
    assert errors == {}, f"500s: {errors}\n{stack.unhandled('api')}\n{figures}"
    assert repeated == [] and missing == [] and strangers == [], (
        f"repeated {repeated[:5]}, missing {missing[:5]}, strangers {strangers[:5]}\n{figures}"
    )
    assert misrouted == [], f"answers naming another case: {misrouted[:5]}\n{figures}"
    assert split_routes == [] and bad_openers == [], (
        f"routes split over cases {split_routes[:5]}, cases without exactly one opener "
        f"{bad_openers[:5]}\n{figures}"
    )
    assert registered == ROUTES, f"{registered} cases for {ROUTES} routes\n{figures}"
