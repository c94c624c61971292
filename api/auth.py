"""Access control: API keys, roles, offices. One table says who may call what.

Every route of the app depends on `authorize` (create_app passes it to FastAPI), so a route
nobody listed here is still protected: it falls to `ADMIN_ONLY`. A request shows its key as
`Authorization: Bearer rk_…` (or `X-API-Key: rk_…`); the key is looked up in `api_keys` through
the pool (read only, see wiring/api_keys.py for the format and the hash).

- no key, a malformed, unknown or revoked key → 401, `WWW-Authenticate: Bearer`;
- a role the table does not list for the route → 403 `role-not-allowed`;
- a key for one office on another office's case, event or listing → 403 `other-office`
  (an unknown case stays 404).

Who may call what (`admin` may call everything: it manages keys, the calendar and the policy,
and is the operators' way in when a case must be moved by hand — its key is audited like any):

| route | roles (besides admin) | whose office counts |
|---|---|---|
| GET /health, /docs, /openapi.json | anyone, no key | — |
| POST /cases | enforcement-system | the body's `office` |
| POST /events, /events/batch | enforcement-system | the body's `office` (every event's) |
| POST /campaigns | enforcement-system, supervisor | the body's `office` |
| GET /campaigns/{id} | supervisor | — |
| GET /cases | officer, supervisor | the `office` query parameter (required for an office key) |
| GET /cases/{id}, /cases/{id}/history | officer, supervisor | the case's (register) |
| GET /stats | supervisor | the `office` query parameter |
| POST /cases/{id}/<approval> (APPROVALS) | supervisor | the case's |
| POST /cases/{id}/<any other command> | officer | the case's |
| anything else | admin only | — |

"Whose office counts" applies to keys that have an office: always for enforcement-system and
officer keys, and for a supervisor or admin key created with one; a supervisor or admin key
without an office acts for every office.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from temporalio.service import RPCError, RPCStatusCode

from api.case_calls import answer_within
from api.deps import AppSettings, DbPool, TemporalClient
from api.problems import Problem, problem_response
from domain.models import case_workflow_id
from wiring.api_keys import ApiKey, ApiKeyRepository, Role, key_prefix
from workflows.case import CaseWorkflow

__all__ = ["APPROVALS", "Caller", "authorize", "install_access_control", "rule_for"]

ES, OFFICER, SUPERVISOR = Role.ENFORCEMENT_SYSTEM, Role.OFFICER, Role.SUPERVISOR

# The commands a supervisor approves or decides; an officer gives every other command.
APPROVALS = frozenset(
    {
        "extension-decision",
        "filing-deadline-extension",
        "handling-limit-extension",
        "legal-review",
        "collective-decision",
        "penalty-decision",
        "fine-decision",  # version 1's penalty decision
        "referrals/{referral_id}/approval",
    }
)
COMMAND_PREFIX = "/cases/{case_id}/"


class OfficeFrom(Enum):
    """Where a request says which office it concerns."""

    NOTHING = "—"
    CASE = "the case's office"
    QUERY = "the `office` query parameter"
    BODY = "the body's `office`"
    EVENTS = "every event's `office`"


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]
    office: OfficeFrom = OfficeFrom.NOTHING
    open: bool = False

    def allows(self, role: Role) -> bool:
        return role is Role.ADMIN or role in self.roles

    def allowed(self) -> list[str]:
        return [r.value for r in Role if self.allows(r)]

    def describe(self) -> str:
        if self.open:
            return "No API key needed."
        text = f"**Roles:** {', '.join(self.allowed())}."
        if self.office is not OfficeFrom.NOTHING:
            text += f" A key for one office may act only where {self.office.value} is its own."
        return text


def _rule(*roles: Role, office: OfficeFrom = OfficeFrom.NOTHING) -> Rule:
    return Rule(frozenset(roles), office)


OPEN = Rule(frozenset(Role), open=True)
ADMIN_ONLY = _rule()
COMMAND = _rule(OFFICER, office=OfficeFrom.CASE)
APPROVAL = _rule(SUPERVISOR, office=OfficeFrom.CASE)

ROUTE_RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): OPEN,
    ("POST", "/cases"): _rule(ES, office=OfficeFrom.BODY),
    ("POST", "/events"): _rule(ES, office=OfficeFrom.BODY),
    ("POST", "/events/batch"): _rule(ES, office=OfficeFrom.EVENTS),
    ("POST", "/campaigns"): _rule(ES, SUPERVISOR, office=OfficeFrom.BODY),
    ("GET", "/campaigns/{campaign_id}"): _rule(SUPERVISOR),
    ("GET", "/cases"): _rule(OFFICER, SUPERVISOR, office=OfficeFrom.QUERY),
    ("GET", "/cases/{case_id}"): _rule(OFFICER, SUPERVISOR, office=OfficeFrom.CASE),
    ("GET", "/cases/{case_id}/history"): _rule(OFFICER, SUPERVISOR, office=OfficeFrom.CASE),
    ("GET", "/stats"): _rule(SUPERVISOR, office=OfficeFrom.QUERY),
    # Operators: the working-day calendar and the policy in force.
    ("GET", "/calendar/{year}"): ADMIN_ONLY,
    ("PUT", "/calendar/{year}"): ADMIN_ONLY,
    ("GET", "/policy"): ADMIN_ONLY,
}


def rule_for(method: str, path: str) -> Rule:
    """The rule of a route, by method and path template (`/cases/{case_id}/…`)."""
    listed = ROUTE_RULES.get((method, path))
    if listed is not None:
        return listed
    if method == "POST" and path.startswith(COMMAND_PREFIX):
        return APPROVAL if path.removeprefix(COMMAND_PREFIX) in APPROVALS else COMMAND
    return ADMIN_ONLY


# --- the problems ---------------------------------------------------------------------------


class Unauthenticated(Problem):
    """401 with the challenge RFC 6750 asks for."""

    def __init__(self, detail: str, invalid: bool = False) -> None:
        super().__init__(401, "unauthenticated", detail)
        challenge = 'Bearer realm="rectify"'
        self.challenge = challenge + ', error="invalid_token"' if invalid else challenge


def _forbidden(kind: str, detail: str, key: ApiKey) -> Problem:
    return Problem(403, kind, detail, api_key=key.prefix, role=key.role.value)


# --- the dependency -------------------------------------------------------------------------


def _presented_key(request: Request) -> str | None:
    authorization = (request.headers.get("authorization") or "").strip() or None
    header = (request.headers.get("x-api-key") or "").strip() or None
    bearer = None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated(
                "the Authorization header must read `Bearer rk_…` (an API key)", invalid=True
            )
        bearer = value.strip()
    if bearer is not None and header is not None and bearer != header:
        raise Unauthenticated(
            "two different API keys (Authorization and X-API-Key): send one", invalid=True
        )
    return bearer or header


async def _identify(request: Request, pool: DbPool) -> ApiKey:
    key = _presented_key(request)
    if key is None:
        raise Unauthenticated(
            "this endpoint needs an API key: send `Authorization: Bearer rk_…` "
            "(or `X-API-Key: rk_…`); operators create keys with `rectify keys create`"
        )
    prefix = key_prefix(key)
    if prefix is None:
        raise Unauthenticated(
            "malformed API key: a key reads rk_<12 hex digits>_<43-character secret>", invalid=True
        )
    async with pool.acquire() as conn:
        record = await ApiKeyRepository(conn).find(key)
    if record is None:
        raise Unauthenticated(f"unknown API key {prefix}", invalid=True)
    if record.revoked_at is not None:
        raise Unauthenticated(
            f"API key {prefix} was revoked at {record.revoked_at.isoformat()}", invalid=True
        )
    return record


async def _case_office(
    case_id: str, pool: DbPool, client: TemporalClient, settings: AppSettings
) -> str | None:
    """The case's office from its register row; a case whose first step has not been recorded
    yet is asked directly. None: there is no such case."""
    office: str | None = await pool.fetchval("SELECT office FROM cases WHERE case_id = $1", case_id)
    if office is not None:
        return office
    handle = client.get_workflow_handle_for(CaseWorkflow.run, case_workflow_id(case_id))
    try:
        async with answer_within(case_id, settings.case_answer_timeout_s):
            state = await handle.query(CaseWorkflow.state)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return None
    return state.opened.office


async def _body_offices(request: Request, source: OfficeFrom) -> list[str]:
    """The offices a body names. A body that is not what the route takes names none: the
    route's validation refuses it (every such body requires its `office`)."""
    try:
        body = await request.json()
    except (ValueError, RuntimeError):
        return []
    items = [body] if source is OfficeFrom.BODY else None
    if source is OfficeFrom.EVENTS and isinstance(body, dict):
        events = body.get("events")
        items = events if isinstance(events, list) else []
    return [
        item["office"]
        for item in items or []
        if isinstance(item, dict) and isinstance(item.get("office"), str)
    ]


async def _check_office(
    rule: Rule,
    key: ApiKey,
    request: Request,
    pool: DbPool,
    client: TemporalClient,
    settings: AppSettings,
) -> None:
    own = key.office
    if own is None or rule.office is OfficeFrom.NOTHING:
        return
    whose = f"API key {key.prefix} ({key.role.value}) acts for office {own!r} only"
    if rule.office is OfficeFrom.CASE:
        case_id = request.path_params["case_id"]
        office = await _case_office(case_id, pool, client, settings)
        if office is None:
            raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id)
        if office != own:
            raise _forbidden(
                "other-office", f"{whose}; case {case_id} belongs to office {office!r}", key
            )
    elif rule.office is OfficeFrom.QUERY:
        asked = request.query_params.get("office")
        if asked != own:
            what = "without an office" if asked is None else f"for office {asked!r}"
            raise _forbidden(
                "other-office", f"{whose}: add office={own} (this request asks {what})", key
            )
    else:
        others = sorted({o for o in await _body_offices(request, rule.office) if o != own})
        if others:
            named = ", ".join(repr(o) for o in others)
            raise _forbidden("other-office", f"{whose}; the body names office {named}", key)


async def authorize(
    request: Request, pool: DbPool, client: TemporalClient, settings: AppSettings
) -> ApiKey | None:
    """Every route's gatekeeper (None on the open routes)."""
    route = request.scope.get("route")
    path = route.path if isinstance(route, APIRoute) else request.url.path
    rule = rule_for(request.method, path)
    if rule.open:
        return None
    key = await _identify(request, pool)
    structlog.contextvars.bind_contextvars(api_key=key.prefix, role=key.role.value)
    if not rule.allows(key.role):
        raise _forbidden(
            "role-not-allowed",
            f"API key {key.prefix} has role {key.role.value}, which may not call "
            f"{request.method} {path}; that takes one of: {', '.join(rule.allowed())}",
            key,
        )
    await _check_office(rule, key, request, pool, client, settings)
    return key


async def _caller(key: Annotated[ApiKey | None, Depends(authorize)]) -> ApiKey:
    if key is None:  # an open route asked who calls: nobody has to say
        raise Unauthenticated("this endpoint needs an API key")
    return key


Caller = Annotated[ApiKey, Depends(_caller)]
"""The key the request came with, for routes that record it (commands)."""


# --- wiring into the app ----------------------------------------------------------------------

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`rk_<prefix>_<secret>`) from `rectify keys create`",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
AUTH_RESPONSES: dict[str, Any] = {
    "401": {
        "description": "no API key, or a malformed, unknown or revoked one",
        "content": {"application/problem+json": {}},
    },
    "403": {
        "description": "the key's role may not call this, or the key is for another office",
        "content": {"application/problem+json": {}},
    },
}


def install_access_control(app: FastAPI) -> None:
    """The 401 challenge header, and the rule of each operation in the OpenAPI document.

    (`authorize` itself is given to FastAPI(dependencies=…) by create_app, so that every
    router included later is behind it.)"""

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        response = problem_response(exc.status, exc.kind, exc.detail, **exc.extra)
        response.headers["WWW-Authenticate"] = exc.challenge
        return response

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(
            SECURITY_SCHEMES
        )
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                rule = rule_for(method.upper(), path)
                description = operation.get("description", "")
                operation["description"] = f"{description}\n\n{rule.describe()}".strip()
                if rule.open:
                    continue
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
                operation["x-roles"] = rule.allowed()
                responses = operation.setdefault("responses", {})
                for status, response in AUTH_RESPONSES.items():
                    responses.setdefault(status, response)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
