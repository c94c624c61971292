"""Errors as RFC 9457 problem details (`type`, `title`, `status`, `detail`), made in one place.

Every error the API answers is a `Problem`: raised by a route or a dependency, made by the
handlers below from FastAPI's own errors, sent by the body-size middleware, or embedded per item
in a batch answer (`Problem.document()`). `responses(...)` documents them in OpenAPI.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from wiring.db import PoolAcquireTimeout

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://rectify.invalid/problems/"

log = structlog.get_logger(__name__)


class ProblemDocument(BaseModel):
    """The shape of every error (members beyond these four name what it concerns)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="a URI naming the kind of problem")
    title: str
    status: int
    detail: str


class Problem(Exception):
    """Raise from a route or a dependency to answer with a problem document; `headers` go on
    the response (`WWW-Authenticate` with a 401, `Retry-After` with a 429)."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.extra = status, kind, detail, extra
        self.headers = dict(headers or {})

    @classmethod
    def invalid(cls, errors: Iterable[tuple[str, str]]) -> Problem:
        """422 `invalid-request`, naming each field at fault (as FastAPI's validation does)."""
        listed = [{"field": field, "message": message} for field, message in errors]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in listed)
        return cls(422, "invalid-request", detail, errors=listed)

    def document(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_BASE + self.kind,
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.document(), status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers
        )


def field_path(loc: Iterable[Any]) -> str:
    """A pydantic error location as the field's dotted path (`subject.identifiers.domain`)."""
    return ".".join(str(part) for part in loc if part != "body") or "body"


def validation_problem(errors: Iterable[Mapping[str, Any]]) -> Problem:
    """The problem for pydantic's (or FastAPI's) validation errors."""
    return Problem.invalid(
        (field_path(err.get("loc", ())), str(err.get("msg", ""))) for err in errors
    )


RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "seconds to wait before sending the request again",
    "schema": {"type": "integer", "minimum": 1},
}

DESCRIPTIONS: dict[int, str] = {
    401: "no API key, or a malformed, unknown or revoked one",
    403: "the key's role may not call this, or the key is for another office",
    404: "no such case",
    409: "the case refused the command, with the reason",
    413: "the body is too large",
    422: "invalid input: the fields at fault are named in `errors`",
    429: "the worker is behind: nothing was started; send it again after `Retry-After` seconds",
    503: "the Temporal server did not answer",
    504: "the case did not answer in time",
}


def responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these problem statuses, each `404` or `(404, "its description")`."""
    schema = ProblemDocument.model_json_schema()
    documented: dict[int | str, dict[str, Any]] = {}
    for item in statuses:
        status, description = item if isinstance(item, tuple) else (item, DESCRIPTIONS[item])
        documented[status] = {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        if status == 429:
            documented[status]["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
    return documented


# What a database outage raises: connection refused or lost, the server shutting down or not
# accepting connections yet, no pooled connection within the acquire timeout. A statement over
# its timeout raises a bare TimeoutError: `database_timeout` tells it from other timeouts.
DB_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    # A connection cut mid-statement (a fast shutdown) leaves asyncpg's protocol in a state it
    # reports as this ("cannot switch to state 12"): the database went away, not a bug here.
    asyncpg.InternalClientError,
    ConnectionError,
    PoolAcquireTimeout,
)
DB_RETRY_AFTER_S = 5


def database_timeout(exc: BaseException) -> bool:
    """A timeout of the database: a pool acquire's, or one raised inside asyncpg (a statement
    over `command_timeout`, a connection not opened in time), not some other timeout."""
    if isinstance(exc, PoolAcquireTimeout):
        return True
    if not isinstance(exc, TimeoutError):
        return False
    return any(
        str(frame.f_globals.get("__name__", "")).startswith("asyncpg.")
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def internal_error() -> Problem:
    """The 500 for an unhandled exception (logged once, with the request id, by
    api/middleware.py: the answer names nothing of it)."""
    return Problem(500, "internal-error", "an internal error occurred; it was logged")


def database_unavailable() -> Problem:
    return Problem(
        503,
        "database-unavailable",
        "the database is not answering; nothing was done: send the request again"
        f" in {DB_RETRY_AFTER_S} s",
        headers={"Retry-After": str(DB_RETRY_AFTER_S)},
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(exc.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return Problem(
            exc.status_code, "http-error", str(exc.detail), headers=exc.headers
        ).response()

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Logged once, by class only: the message may carry a DSN or a query's values.
        log.warning("database unavailable", error=type(exc).__name__)
        return database_unavailable().response()

    for unavailable in DB_UNAVAILABLE:
        app.add_exception_handler(unavailable, _unavailable)

    @app.exception_handler(TimeoutError)
    async def _timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        if database_timeout(exc):
            return await _unavailable(request, exc)
        raise exc  # not the database's: unhandled, a 500 (api/middleware.py)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Reached only by an exception RequestContextMiddleware did not answer (raised outside
        # it, or after a response had started): Starlette then re-raises it to uvicorn, which
        # logs it, so it is not logged here.
        return internal_error().response()
