"""Access control: API keys (hashed, created and revoked by the CLI), roles and offices.

Through the real app, worker, Temporal dev server and PostgreSQL. Every key here is for offices
named for this run, so the shared database's other cases never count.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from api.auth import ADMIN_ONLY, AccessRoute, Rule, check_access_rules, rule_of
from api.routes import registry, stats
from domain.procedure import COMMANDS
from domain.roles import Role
from ops.cli import main as rectify_main
from ops.keys_cli import DEV_KEYS_FILE, dev_keys_banner, ensure_dev_keys
from tests.conftest import new_case_id
from tests.test_api_integration import create_key
from wiring.api_keys import ApiKeyRepository, InvalidKeySpec, KeySpec
from wiring.logs import configure_logging, flush_logs
from wiring.settings import Settings

RUN = uuid.uuid4().hex[:8]
OFFICE, OTHER = f"auth-{RUN}", f"auth-{RUN}-b"
KEY = re.compile(r"rk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves (included routers are resolved lazily)."""
    return list(route_rules(app))


def route_rules(app: FastAPI) -> dict[tuple[str, str], Rule | None]:
    """The access rule of every route, by (method, path)."""
    return {
        (method, context.path or ""): rule_of(context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        for method in context.methods or ()
    }


def app_rules() -> dict[tuple[str, str], Rule | None]:
    return route_rules(_with_reading_routes(create_app(Settings(_env_file=None))))


def _with_reading_routes(app: FastAPI) -> FastAPI:
    """GET /cases and /stats, unless create_app mounts them already."""
    present = set(api_routes(app))
    if ("GET", "/cases") not in present:
        app.include_router(registry.router)
    if ("GET", "/stats") not in present:
        app.include_router(stats.router)
    return app


def settings_for(dev_env: WorkflowEnvironment, pg_dsn: str, task_queue: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=pg_dsn,
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=task_queue,
        temporal_ui_url="http://localhost:8233",
    )


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment,
    dev_worker: Worker,
    pg_dsn: str,
    pool: asyncpg.Pool,
    task_queue: str,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with no key of its own: each request shows one with `as_()`."""
    app = _with_reading_routes(create_app(settings_for(dev_env, pg_dsn, task_queue)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rectify") as client:
            yield client


@pytest.fixture
async def keys(pg_dsn: str, pool: asyncpg.Pool) -> dict[str, str]:
    specs: dict[str, tuple[str, str | None]] = {
        "system": ("enforcement-system", OFFICE),
        "officer": ("officer", OFFICE),
        "other_officer": ("officer", OTHER),
        "supervisor": ("supervisor", None),
        "office_supervisor": ("supervisor", OFFICE),
        "admin": ("admin", None),
    }
    return {name: await create_key(pg_dsn, *spec) for name, spec in specs.items()}


def as_(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def prefix(key: str) -> str:
    return key.split("_")[1]


def case_body(case_id: str, office: str = OFFICE) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "subject": {
            "kind": "website",
            "name": "Example News",
            "identifiers": {"domain": f"{case_id.lower()}.example.cn"},
        },
        "violation_category": "prohibited_information",
        "legal_basis": "Cybersecurity Law art. 61",
        "severity": "general",
        "office": office,
        "opened_by": "monitoring",
    }


def event(office: str = OFFICE) -> dict[str, Any]:
    return {
        "idempotency_key": f"auth-{uuid.uuid4().hex}",
        "type": "violation_detected",
        "source": "monitoring",
        "occurred_at": "2026-11-28T09:30:00+08:00",
        "subject": {
            "kind": "website",
            "name": "Example",
            "identifiers": {"domain": f"s{uuid.uuid4().hex[:12]}.example.cn"},
        },
        "violation_category": "prohibited_information",
        "legal_basis": "Cybersecurity Law art. 61",
        "office": office,
    }


FILING = {"actor": "officer.li", "decision": "filed", "reasons": "monitoring evidence"}
EXTENSION = {"actor": "supervisor.wang", "reasons": "evidence still coming in"}


async def opened_case(api: httpx.AsyncClient, keys: dict[str, str], office: str = OFFICE) -> str:
    case_id = new_case_id()
    response = await api.post("/cases", json=case_body(case_id, office), headers=as_(keys["admin"]))
    assert response.status_code == 201, response.text
    return case_id


def assert_problem(response: httpx.Response, status: int, kind: str, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith(f"/{kind}"), problem
    for word in words:
        assert word in problem["detail"], problem


# --- the table ----------------------------------------------------------------------------------


def test_every_route_has_a_rule_and_commands_take_theirs_from_the_procedure() -> None:
    rules = app_rules()
    assert [route for route, rule in rules.items() if rule is None] == []
    for command in COMMANDS:
        rule = rules[("POST", f"/cases/{{case_id}}/{command.path}")]
        assert rule is not None and rule.roles == {command.role}, command.name
        assert rule.office.name == "CASE"


def test_a_route_without_a_rule_is_refused_when_the_app_is_built() -> None:
    guarded = APIRouter(route_class=AccessRoute)
    with pytest.raises(RuntimeError, match="/forgotten has no access rule"):
        guarded.add_api_route("/forgotten", lambda: None)
    guarded.add_api_route("/ruled", lambda: None, dependencies=[Depends(ADMIN_ONLY)])
    plain = APIRouter()
    plain.add_api_route("/plain", lambda: None)
    app = FastAPI()
    app.include_router(guarded)
    check_access_rules(app)
    app.include_router(plain)
    with pytest.raises(RuntimeError, match="/plain"):
        check_access_rules(app)


@pytest.mark.parametrize(
    ("method", "path", "roles"),
    [
        ("POST", "/cases", ["enforcement-system", "admin"]),
        ("POST", "/events", ["enforcement-system", "admin"]),
        ("POST", "/events/batch", ["enforcement-system", "admin"]),
        ("GET", "/cases", ["officer", "supervisor", "admin"]),
        ("GET", "/cases/{case_id}", ["officer", "supervisor", "admin"]),
        ("GET", "/cases/{case_id}/history", ["officer", "supervisor", "admin"]),
        ("GET", "/stats", ["supervisor", "admin"]),
        ("POST", "/cases/{case_id}/filing-decision", ["officer", "admin"]),
        ("POST", "/cases/{case_id}/referrals/{referral_id}/transfer", ["officer", "admin"]),
        ("POST", "/cases/{case_id}/extension-decision", ["supervisor", "admin"]),
        ("POST", "/cases/{case_id}/penalty-decision", ["supervisor", "admin"]),
        ("POST", "/cases/{case_id}/referrals/{referral_id}/approval", ["supervisor", "admin"]),
        ("PUT", "/calendar/{year}", ["admin"]),
        ("GET", "/policy", ["admin"]),
    ],
)
def test_role_table(method: str, path: str, roles: list[str]) -> None:
    rules = app_rules()
    rule = rules[(method, path)]
    assert rule is not None and rule.allowed() == roles
    assert not rule.open
    health = rules[("GET", "/health")]
    assert health is not None and health.open


def test_key_spec_is_checked_before_the_database() -> None:
    with pytest.raises(InvalidKeySpec, match="unknown role 'boss'"):
        KeySpec.checked("boss", "beijing", "label", "me")
    for role in ("officer", "enforcement-system"):
        with pytest.raises(InvalidKeySpec, match="give --office"):
            KeySpec.checked(role, None, "label", "me")
    with pytest.raises(InvalidKeySpec, match="office must not be empty"):
        KeySpec.checked("officer", "  ", "label", "me")
    assert KeySpec.checked("supervisor", None, " Desk ", "me").label == "Desk"


# --- 401 ----------------------------------------------------------------------------------------


async def test_no_key_is_401_with_a_bearer_challenge(api: httpx.AsyncClient) -> None:
    for response in (
        await api.get(f"/cases/{new_case_id()}"),
        await api.post("/cases", json=case_body(new_case_id())),
        await api.post(f"/cases/{new_case_id()}/filing-decision", json=FILING),
        await api.post("/events", json=event()),
        await api.get("/stats"),
    ):
        assert_problem(response, 401, "unauthenticated", "needs an API key")
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_malformed_unknown_and_revoked_keys_are_401(
    api: httpx.AsyncClient, pg_dsn: str, keys: dict[str, str]
) -> None:
    admin = keys["admin"]
    revoked = await create_key(pg_dsn, "admin")
    conn = await asyncpg.connect(pg_dsn)
    try:
        await ApiKeyRepository(conn).revoke(prefix(revoked))
    finally:
        await conn.close()
    wrong_secret = admin[:-4] + ("AAAA" if not admin.endswith("AAAA") else "BBBB")
    cases: list[tuple[dict[str, str], str]] = [
        ({"Authorization": f"Basic {admin}"}, "must read `Bearer rk_"),
        ({"Authorization": "Bearer"}, "must read `Bearer rk_"),
        (as_("not-a-key"), "malformed API key"),
        ({"X-API-Key": "rk_0123"}, "malformed API key"),
        (as_(f"rk_{'0' * 12}_{'A' * 43}"), f"unknown API key {'0' * 12}"),
        (as_(wrong_secret), f"unknown API key {prefix(admin)}"),
        (as_(revoked), f"API key {prefix(revoked)} was revoked at"),
        ({**as_(admin), "X-API-Key": keys["officer"]}, "two different API keys"),
    ]
    for headers, detail in cases:
        response = await api.get(f"/cases/{new_case_id()}", headers=headers)
        assert_problem(response, 401, "unauthenticated", detail)
        assert (
            response.headers["www-authenticate"] == 'Bearer realm="rectify", error="invalid_token"'
        )
    # The same key by either header passes (and an unknown case is then 404).
    for headers in (as_(admin), {"X-API-Key": admin}, {**as_(admin), "X-API-Key": admin}):
        response = await api.get(f"/cases/{new_case_id()}", headers=headers)
        assert_problem(response, 404, "case-not-found")


async def test_health_and_docs_need_no_key(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health")).status_code == 200
    assert (await api.get("/health", headers=as_("garbage"))).status_code == 200
    assert (await api.get("/docs")).status_code == 200
    schema = (await api.get("/openapi.json")).json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    approval = schema["paths"]["/cases/{case_id}/extension-decision"]["post"]
    assert approval["x-roles"] == ["supervisor", "admin"]
    assert "**Roles:** supervisor, admin." in approval["description"]
    assert approval["security"] == [{"bearer": []}, {"apiKey": []}]
    assert {"401", "403"} <= set(approval["responses"])
    health = schema["paths"]["/health"]["get"]
    assert "security" not in health and "No API key needed." in health["description"]


# --- 403: each role's boundary -----------------------------------------------------------------


async def test_enforcement_system_opens_cases_and_sends_events_for_its_office_only(
    api: httpx.AsyncClient, keys: dict[str, str], pool: asyncpg.Pool
) -> None:
    system = as_(keys["system"])
    ours = await api.post("/cases", json=case_body(new_case_id()), headers=system)
    assert ours.status_code == 201, ours.text
    case_id = ours.json()["case_id"]
    assert (await api.post("/events", json=event(), headers=system)).status_code == 201

    foreign_id = new_case_id()
    foreign = await api.post("/cases", json=case_body(foreign_id, OTHER), headers=system)
    assert_problem(foreign, 403, "other-office", f"acts for office {OFFICE!r}", repr(OTHER))
    assert foreign.json()["api_key"] == prefix(keys["system"])
    assert_problem(
        await api.get(f"/cases/{foreign_id}", headers=as_(keys["admin"])), 404, "case-not-found"
    )

    # A batch naming another office is refused whole: none of its events is delivered.
    ours_in_batch = event()
    batch = {"events": [ours_in_batch, event(OTHER)]}
    assert_problem(
        await api.post("/events/batch", json=batch, headers=system), 403, "other-office", OTHER
    )
    assert (await api.post("/events", json=ours_in_batch, headers=system)).json()["result"] == (
        "opened"
    )

    # Commands and reads are not an enforcement system's.
    command = await api.post(f"/cases/{case_id}/filing-decision", json=FILING, headers=system)
    assert_problem(
        command, 403, "role-not-allowed", "role enforcement-system, which may not", "officer"
    )
    assert_problem(await api.get(f"/cases/{case_id}", headers=system), 403, "role-not-allowed")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM case_audit WHERE case_id = $1 AND action = 'filed'", case_id
        )
        == 0
    )


async def test_officer_acts_on_its_own_office_cases_only(
    api: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    officer, other = as_(keys["officer"]), as_(keys["other_officer"])
    case_id = await opened_case(api, keys)
    # At once after opening (the register row may not be written yet): the case is asked.
    filed = await api.post(f"/cases/{case_id}/filing-decision", json=FILING, headers=officer)
    assert filed.status_code == 200, filed.text
    assert (await api.get(f"/cases/{case_id}", headers=officer)).status_code == 200
    assert (await api.get(f"/cases/{case_id}/history", headers=officer)).status_code == 200

    for response in (
        await api.get(f"/cases/{case_id}", headers=other),
        await api.get(f"/cases/{case_id}/history", headers=other),
        await api.post(f"/cases/{case_id}/penalty-procedure", json=FILING, headers=other),
    ):
        assert_problem(
            response, 403, "other-office", f"case {case_id} belongs to office {OFFICE!r}"
        )

    # An approval is a supervisor's, whatever the office.
    approval = await api.post(
        f"/cases/{case_id}/handling-limit-extension", json=EXTENSION, headers=officer
    )
    assert_problem(approval, 403, "role-not-allowed", "role officer, which may not", "supervisor")
    assert_problem(
        await api.post(
            f"/cases/{case_id}/referrals/1/approval", json={"actor": "x"}, headers=officer
        ),
        403,
        "role-not-allowed",
    )
    # An unknown case stays 404; the register lists only its office; no statistics.
    missing = new_case_id()
    assert_problem(
        await api.post(f"/cases/{missing}/filing-decision", json=FILING, headers=officer),
        404,
        "case-not-found",
        f"no case {missing}",
    )
    assert (await api.get("/cases", params={"office": OFFICE}, headers=officer)).status_code == 200
    for params in ({}, {"office": OTHER}):
        listed = await api.get("/cases", params=params, headers=officer)
        assert_problem(listed, 403, "other-office", f"add office={OFFICE}")
    assert_problem(await api.get("/stats", headers=officer), 403, "role-not-allowed")


async def test_supervisor_reads_everything_and_approves_but_gives_no_other_command(
    api: httpx.AsyncClient, keys: dict[str, str], pool: asyncpg.Pool
) -> None:
    supervisor = as_(keys["supervisor"])
    case_id = await opened_case(api, keys, OTHER)
    extended = await api.post(
        f"/cases/{case_id}/filing-deadline-extension", json=EXTENSION, headers=supervisor
    )
    assert extended.status_code == 200, extended.text
    for path, params in (
        (f"/cases/{case_id}", {}),
        (f"/cases/{case_id}/history", {}),
        ("/cases", {}),
        ("/cases", {"office": OFFICE}),
        ("/stats", {}),
        ("/stats", {"office": OTHER}),
    ):
        response = await api.get(path, params=params, headers=supervisor)
        assert response.status_code == 200, (path, response.text)
    assert_problem(
        await api.post(f"/cases/{case_id}/filing-decision", json=FILING, headers=supervisor),
        403,
        "role-not-allowed",
        "role supervisor, which may not",
    )
    payload = await pool.fetchval(
        "SELECT payload FROM case_audit WHERE case_id = $1 AND action = 'filing_deadline_extended'",
        case_id,
    )
    assert payload["acting_key"] == prefix(keys["supervisor"])

    # A supervisor key for one office reads that office only.
    office_supervisor = as_(keys["office_supervisor"])
    assert_problem(
        await api.get(f"/cases/{case_id}", headers=office_supervisor), 403, "other-office"
    )
    assert_problem(await api.get("/stats", headers=office_supervisor), 403, "other-office")
    stats_response = await api.get("/stats", params={"office": OFFICE}, headers=office_supervisor)
    assert stats_response.status_code == 200


# --- the audit trail ------------------------------------------------------------------------------


async def test_every_command_records_its_key_and_a_body_cannot_name_one(
    api: httpx.AsyncClient, keys: dict[str, str], pool: asyncpg.Pool
) -> None:
    officer = as_(keys["officer"])
    case_id = await opened_case(api, keys)
    forged = await api.post(
        f"/cases/{case_id}/filing-decision",
        json=FILING | {"acting_key": prefix(keys["admin"])},
        headers=officer,
    )
    assert_problem(forged, 422, "invalid-request", "acting_key: is set by the API")
    assert forged.json()["errors"][0]["field"] == "acting_key"

    filed = await api.post(f"/cases/{case_id}/filing-decision", json=FILING, headers=officer)
    assert filed.status_code == 200, filed.text
    rows = await pool.fetch(
        "SELECT action, actor, payload FROM case_audit WHERE case_id = $1 ORDER BY seq", case_id
    )
    assert [(r["action"], r["payload"].get("acting_key")) for r in rows] == [
        ("case_opened", prefix(keys["admin"])),  # the key that opened it
        ("filed", prefix(keys["officer"])),
    ]
    assert rows[1]["actor"] == "officer.li"
    # The document the party receives does not carry it.
    content = await pool.fetchval("SELECT content FROM documents WHERE case_id = $1", case_id)
    assert "acting_key" not in content


async def test_log_lines_name_the_key_and_its_role(
    api: httpx.AsyncClient, keys: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")
    try:
        case_id = await opened_case(api, keys)
        assert (await api.get(f"/cases/{case_id}", headers=as_(keys["officer"]))).status_code == 200
    finally:
        flush_logs()  # lines are written off the event loop
        lines = capsys.readouterr().err.splitlines()
        configure_logging("console", "INFO", stream=sys.__stderr__)
    events = [json.loads(line) for line in lines if line.startswith("{")]
    handled = {
        (e["api_key"], e["role"])
        for e in events
        if e["event"] == "request handled" and e.get("case_id") == case_id
    }
    assert handled == {(prefix(keys["admin"]), "admin"), (prefix(keys["officer"]), "officer")}


# --- the CLI --------------------------------------------------------------------------------------


async def rectify(*argv: str) -> int:
    return await asyncio.to_thread(rectify_main, list(argv))


@pytest.fixture
def cli_env(pg_dsn: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    return pg_dsn


async def test_cli_creates_lists_and_revokes_keys_stored_hashed(
    api: httpx.AsyncClient, cli_env: str, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    label = f"desk {RUN}"
    assert (
        await rectify("keys", "create", "--role", "officer", "--office", OFFICE, "--label", label)
        == 0
    )
    out = capsys.readouterr().out
    found = KEY.search(out)
    assert found is not None and "only time the key is shown" in out
    key = found.group(0)
    key_id, secret = prefix(key), key.split("_", 2)[2]

    # Stored hashed: neither the key nor its secret is anywhere in its row.
    row = await pool.fetchrow(
        "SELECT *, row_to_json(k)::text AS everything FROM api_keys k WHERE prefix = $1", key_id
    )
    assert row is not None
    assert secret not in row["everything"] and key not in row["everything"]
    assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert (row["role"], row["office"], row["label"]) == ("officer", OFFICE, label)

    case_id = new_case_id()
    await api.post(
        "/cases", json=case_body(case_id), headers=as_(await create_key(cli_env, "admin"))
    )
    assert (await api.get(f"/cases/{case_id}", headers=as_(key))).status_code == 200

    assert await rectify("keys", "list") == 0
    listed = next(line for line in capsys.readouterr().out.splitlines() if key_id in line)
    assert all(word in listed for word in ("officer", OFFICE, label, "active"))
    assert secret not in listed

    assert await rectify("keys", "revoke", key_id) == 0
    assert f"API key {key_id} (officer, {label!r}) revoked" in capsys.readouterr().out
    assert_problem(
        await api.get(f"/cases/{case_id}", headers=as_(key)), 401, "unauthenticated", "revoked"
    )
    assert await rectify("keys", "revoke", key) == 0  # the whole key names it too
    assert "was revoked at" in capsys.readouterr().out
    assert await rectify("keys", "list") == 0
    listed = next(line for line in capsys.readouterr().out.splitlines() if key_id in line)
    assert "revoked" in listed


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["create", "--role", "boss", "--label", "x"], 2, "unknown role 'boss': expected one of"),
        (["create", "--role", "officer", "--label", "x"], 2, "an officer key acts for one office"),
        (["create", "--role", "enforcement-system", "--label", "x"], 2, "give --office"),
        (["create", "--role", "officer", "--office", " ", "--label", "x"], 2, "office must not"),
        (["create", "--role", "admin", "--label", " "], 2, "the label must not be empty"),
        (["revoke", "not-a-prefix"], 2, "is not a key prefix"),
        (["revoke", "0" * 12], 1, f"no API key {'0' * 12}"),
    ],
)
async def test_cli_errors_are_clear_and_write_nothing(
    cli_env: str,
    pool: asyncpg.Pool,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM api_keys")
    assert await rectify("keys", *argv) == code
    assert message in capsys.readouterr().err
    assert await pool.fetchval("SELECT count(*) FROM api_keys") == before


async def test_cli_without_a_label_is_a_usage_error(cli_env: str) -> None:
    with pytest.raises(SystemExit) as exited:
        await rectify("keys", "create", "--role", "admin")
    assert exited.value.code == 2


# --- make run's dev keys --------------------------------------------------------------------------


async def test_dev_keys_are_made_once_per_role_and_kept_private(
    tmp_path: Path, pg_dsn: str, pool: asyncpg.Pool
) -> None:
    first = await ensure_dev_keys(pg_dsn, tmp_path)
    assert set(first) == set(Role)
    path = tmp_path / DEV_KEYS_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    conn = await asyncpg.connect(pg_dsn)
    try:
        repo = ApiKeyRepository(conn)
        for role, key in first.items():
            record = await repo.find(key)
            assert record is not None and record.role is role
            assert record.office == (None if role is Role.ADMIN else "beijing")
        assert await ensure_dev_keys(pg_dsn, tmp_path) == first  # reused
        await repo.revoke(prefix(first[Role.OFFICER]))
    finally:
        await conn.close()
    path.chmod(0o644)
    again = await ensure_dev_keys(pg_dsn, tmp_path)
    assert again[Role.OFFICER] != first[Role.OFFICER]  # a revoked one is replaced
    assert {r: k for r, k in again.items() if r is not Role.OFFICER} == {
        r: k for r, k in first.items() if r is not Role.OFFICER
    }
    assert path.stat().st_mode & 0o777 == 0o600


async def test_production_never_makes_dev_keys(
    tmp_path: Path, pg_dsn: str, pool: asyncpg.Pool
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM api_keys")
    settings = Settings(
        _env_file=None,
        rectify_env="production",
        database_url=pg_dsn,
        temporal_address="localhost:1",
        data_dir=tmp_path,
    )
    banner = await dev_keys_banner(pg_dsn, settings)
    assert "rectify keys create" in " ".join(banner.lines)
    assert not (tmp_path / DEV_KEYS_FILE).exists()
    assert await pool.fetchval("SELECT count(*) FROM api_keys") == before
