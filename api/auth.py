"""Access control: API keys, roles, offices. Each route's rule is a dependency of that route.

A request shows its key as `Authorization: Bearer rk_…` or `X-API-Key: rk_…` (FastAPI's
`HTTPBearer` and `APIKeyHeader`, so /docs offers both schemes and its Authorize button works);
the key is looked up in `api_keys` through the pool (read only; wiring/api_keys.py has the
format and the hash).

- no key, a malformed, unknown or revoked key → 401, `WWW-Authenticate: Bearer`;
- a role the route's rule does not name → 403 `role-not-allowed`;
- a key for one office on another office's case, event or listing → 403 `other-office`
  (an unknown case stays 404).

A rule is declared where its route is (`dependencies=[Depends(RULE)]`, or a parameter typed
with the key it gives), and /docs states it on each operation ("Roles: …"), from the same rule
object (`AccessRoute`). A route without a rule cannot be built, and `check_access_rules`
refuses an app holding one. The command routes take their rule from the procedure table
(`Command.role` in domain/procedure.py; the office is the case's).

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
| POST /cases/{id}/<command> | its row's `role` (officer; supervisor: decisions) | the case's |
| /calendar/{year}, /policy | admin only | — |
| POST /codec/{encode,decode,session} | supervisor (key or cookie) | keys without an office only |
| GET /codec, DELETE /codec/session | anyone, no key (sign-in page, sign-out) | — |

"Whose office counts" applies to keys that have an office: always for enforcement-system and
officer keys, and for a supervisor or admin key created with one; a supervisor or admin key
without an office acts for every office.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute
from temporalio.service import RPCError, RPCStatusCode

from api import problems
from api.case_calls import answer_within
from api.deps import AppSettings, DbPool, Keys, TemporalClient
from api.problems import Problem
from domain.models import case_workflow_id
from domain.procedure import Command
from domain.roles import Role
from wiring.api_keys import ApiKey, ApiKeyRepository, key_prefix
from wiring.keys import Keyring
from workflows.case import CaseWorkflow

__all__ = [
    "ADMIN_ONLY",
    "CAMPAIGN_OPENING",
    "CAMPAIGN_READING",
    "CASE_OPENING",
    "CASE_READING",
    "CODEC",
    "CODEC_COOKIE",
    "EVENT",
    "EVENT_BATCH",
    "NO_KEY",
    "REGISTER_READING",
    "STATISTICS",
    "Access",
    "AccessRoute",
    "NoKey",
    "Rule",
    "check_access_rules",
    "command_access",
    "rule_of",
]

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (`rk_<prefix>_<secret>`) from `rectify keys create`",
)
X_API_KEY = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="The same API key in a header of its own",
)


class OfficeFrom(Enum):
    """Where a request says which office it concerns."""

    NOTHING = "—"
    CASE = "the case's office"
    QUERY = "the `office` query parameter"
    BODY = "the body's `office`"
    EVENTS = "every event's `office`"


class Rule:
    """Who may call a route (an admin may call any), and whose office counts."""

    open = False

    def __init__(
        self,
        *roles: Role,
        office: OfficeFrom = OfficeFrom.NOTHING,
        cookie: str | None = None,
        every_office: bool = False,
    ) -> None:
        self.roles, self.office = frozenset(roles), office
        # The name of a cookie that may carry the key instead of a header (the codec's
        # sign-in: a browser page cannot add headers to the Temporal UI's requests).
        self.cookie = cookie
        # Only keys that act for every office: what the route gives is not one office's.
        self.every_office = every_office

    def allows(self, role: Role) -> bool:
        return role is Role.ADMIN or role in self.roles

    def allowed(self) -> list[str]:
        return [r.value for r in Role if self.allows(r)]

    def describe(self) -> str:
        """The rule in words, for the operation's description at /docs."""
        if self.open:
            return "No API key needed."
        text = f"**Roles:** {', '.join(self.allowed())}."
        if self.every_office:
            text += " Only a key without an office (one that acts for every office)."
        if self.office is not OfficeFrom.NOTHING:
            text += f" A key for one office may act only where {self.office.value} is its own."
        return text


class NoKey(Rule):
    """Anyone may call it, with or without a key."""

    open = True

    async def __call__(self) -> None:
        return None


class Access(Rule):
    """The dependency: the request's key, once its role and office are allowed here."""

    async def __call__(
        self,
        request: Request,
        pool: DbPool,
        client: TemporalClient,
        settings: AppSettings,
        keyring: Keys,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        header: Annotated[str | None, Depends(X_API_KEY)],
    ) -> ApiKey:
        presented = _presented_key(request, bearer, header)
        cookie = (request.cookies.get(self.cookie) or "").strip() if self.cookie else ""
        # The Web UI may send its own access token (not an API key): the sign-in cookie counts.
        if cookie and (presented is None or key_prefix(presented) is None):
            key = await _signed_in(cookie, pool, keyring)
        else:
            key = await _identify(presented, pool)
        structlog.contextvars.bind_contextvars(api_key=key.prefix, role=key.role.value)
        if not self.allows(key.role):
            route = request.scope.get("route")
            path = route.path if isinstance(route, APIRoute) else request.url.path
            raise _forbidden(
                "role-not-allowed",
                f"API key {key.prefix} has role {key.role.value}, which may not call "
                f"{request.method} {path}; that takes one of: {', '.join(self.allowed())}",
                key,
            )
        if self.every_office and key.office is not None:
            raise _forbidden(
                "other-office",
                f"API key {key.prefix} acts for office {key.office!r} only; the codec decodes"
                " every office's payloads, so it takes a key without an office",
                key,
            )
        await self._check_office(key, request, pool, client, settings)
        return key

    async def _check_office(
        self,
        key: ApiKey,
        request: Request,
        pool: DbPool,
        client: TemporalClient,
        settings: AppSettings,
    ) -> None:
        own = key.office
        if own is None or self.office is OfficeFrom.NOTHING:
            return
        whose = f"API key {key.prefix} ({key.role.value}) acts for office {own!r} only"
        if self.office is OfficeFrom.CASE:
            case_id = request.path_params["case_id"]
            office = await _case_office(case_id, pool, client, settings)
            if office is None:
                raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id)
            if office != own:
                raise _forbidden(
                    "other-office", f"{whose}; case {case_id} belongs to office {office!r}", key
                )
        elif self.office is OfficeFrom.QUERY:
            asked = request.query_params.get("office")
            if asked != own:
                what = "without an office" if asked is None else f"for office {asked!r}"
                raise _forbidden(
                    "other-office", f"{whose}: add office={own} (this request asks {what})", key
                )
        else:
            others = sorted({o for o in await _body_offices(request, self.office) if o != own})
            if others:
                named = ", ".join(repr(o) for o in others)
                raise _forbidden("other-office", f"{whose}; the body names office {named}", key)


ES, OFFICER, SUPERVISOR = Role.ENFORCEMENT_SYSTEM, Role.OFFICER, Role.SUPERVISOR

NO_KEY = NoKey()
CASE_OPENING = Access(ES, office=OfficeFrom.BODY)
EVENT = Access(ES, office=OfficeFrom.BODY)
EVENT_BATCH = Access(ES, office=OfficeFrom.EVENTS)
CAMPAIGN_OPENING = Access(ES, SUPERVISOR, office=OfficeFrom.BODY)
CAMPAIGN_READING = Access(SUPERVISOR)
REGISTER_READING = Access(OFFICER, SUPERVISOR, office=OfficeFrom.QUERY)
CASE_READING = Access(OFFICER, SUPERVISOR, office=OfficeFrom.CASE)
STATISTICS = Access(SUPERVISOR, office=OfficeFrom.QUERY)
ADMIN_ONLY = Access()  # operators: the working-day calendar and the policy in force
CODEC_COOKIE = "rectify_codec_key"
# The Temporal Web UI's decoded payloads: a payload names no office, so every office's key only.
CODEC = Access(SUPERVISOR, cookie=CODEC_COOKIE, every_office=True)


def command_access(command: Command) -> Access:
    """A command's rule, from its row: the row's role, on a case of the key's office."""
    return Access(command.role, office=OfficeFrom.CASE)


# --- who is asking ----------------------------------------------------------------------------


def _unauthenticated(detail: str, invalid: bool = False) -> Problem:
    """401 with the challenge RFC 6750 asks for."""
    challenge = 'Bearer realm="rectify"' + (', error="invalid_token"' if invalid else "")
    return Problem(401, "unauthenticated", detail, headers={"WWW-Authenticate": challenge})


def _forbidden(kind: str, detail: str, key: ApiKey) -> Problem:
    return Problem(403, kind, detail, api_key=key.prefix, role=key.role.value)


def _presented_key(
    request: Request, bearer: HTTPAuthorizationCredentials | None, header: str | None
) -> str | None:
    """The key from either header. `HTTPBearer` answers None for any other scheme: an
    Authorization header it did not take is a malformed one, not a missing one."""
    if bearer is None and (request.headers.get("authorization") or "").strip():
        raise _unauthenticated(
            "the Authorization header must read `Bearer rk_…` (an API key)", invalid=True
        )
    token = bearer.credentials.strip() if bearer is not None else None
    header = (header or "").strip() or None
    if token and header and token != header:
        raise _unauthenticated(
            "two different API keys (Authorization and X-API-Key): send one", invalid=True
        )
    return token or header


async def _identify(key: str | None, pool: DbPool) -> ApiKey:
    if key is None:
        raise _unauthenticated(
            "this endpoint needs an API key: send `Authorization: Bearer rk_…` "
            "(or `X-API-Key: rk_…`); operators create keys with `rectify keys create`"
        )
    prefix = key_prefix(key)
    if prefix is None:
        raise _unauthenticated(
            "malformed API key: a key reads rk_<12 hex digits>_<43-character secret>", invalid=True
        )
    async with pool.acquire() as conn:
        record = await ApiKeyRepository(conn).find(key)
    if record is None:
        raise _unauthenticated(f"unknown API key {prefix}", invalid=True)
    if record.revoked_at is not None:
        raise _unauthenticated(
            f"API key {prefix} was revoked at {record.revoked_at.isoformat()}", invalid=True
        )
    return record


async def _signed_in(token: str, pool: DbPool, keyring: Keyring) -> ApiKey:
    """The key a codec sign-in cookie names, if its signature holds, it has not expired and
    the key is not revoked (looked up on every call)."""
    prefix = keyring.session_prefix(token, time.time())
    if prefix is None:
        raise _unauthenticated(
            "the codec sign-in has expired or is not this server's: sign in again at /codec",
            invalid=True,
        )
    async with pool.acquire() as conn:
        record = await ApiKeyRepository(conn).by_prefix(prefix)
    if record is None or record.revoked_at is not None:
        raise _unauthenticated(f"API key {prefix} is revoked or gone: sign in again", invalid=True)
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


# --- the rule of each route, at /docs and at start --------------------------------------------


def _dependencies(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _dependencies(sub)


def rule_of(route: BaseRoute) -> Rule | None:
    """The access rule a route depends on (None: it has none)."""
    if not isinstance(route, APIRoute):
        return None
    for call in _dependencies(route.dependant):
        if isinstance(call, Rule):
            return call
    return None


class AccessRoute(APIRoute):
    """A route that states its access rule at /docs: the roles in its description, `x-roles`,
    and its 401 and 403 answers. Every router of the API builds its routes with it."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        rule = rule_of(self)
        if rule is None:
            raise RuntimeError(f"route {path} has no access rule (see api/auth.py)")
        self.description = f"{self.description}\n\n{rule.describe()}".strip()
        if not rule.open:
            self.openapi_extra = {**(self.openapi_extra or {}), "x-roles": rule.allowed()}
            self.responses = {**problems.responses(401, 403), **self.responses}


def check_access_rules(app: FastAPI) -> None:
    """Refuse an app with a route nobody gave a rule (a router built without AccessRoute)."""
    unruled = [
        f"{sorted(context.methods or ())} {context.path}"
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and not isinstance(context.original_route, AccessRoute)
    ]
    if unruled:
        raise RuntimeError(f"routes without an access rule: {', '.join(unruled)}")
