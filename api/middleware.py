"""Request context for logs: a request id bound once at the edge, one line per request.

A pure ASGI middleware (not `BaseHTTPMiddleware`) so the route runs in the same context and the
`case_id` / `workflow_id` a route binds also appear on the closing "request handled" line.

It is also where an unhandled exception ends: answered 500 (a problem document) and logged once,
as that request's closing line ("request failed", with its traceback), instead of going on to
Starlette's ServerErrorMiddleware, which re-raises it to uvicorn: uvicorn would log it a second
time and close the client's keep-alive connection.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Mapping
from urllib.parse import parse_qsl

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem, internal_error
from domain.models import NUL_REFUSED

log = structlog.get_logger(__name__)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:200] or uuid.uuid4().hex
        status = 500
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request_id, method=scope["method"], path=scope["path"]
        )

        started = time.perf_counter()
        responded = False  # a response has started: too late to answer 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        failure: Exception | None = None
        try:
            unstorable = _nul_in_url(scope)
            if unstorable is not None:
                await unstorable.response()(scope, receive, send_with_request_id)
                return
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            failure = exc
            if responded:  # half a response went out: only closing the connection ends it
                raise
            status = 500
            with contextlib.suppress(OSError):  # the client went away meanwhile
                await internal_error().response()(scope, receive, send_with_request_id)
        finally:
            ms = round((time.perf_counter() - started) * 1000, 1)
            if failure is None:
                log.info("request handled", status=status, ms=ms)
            else:
                log.error(
                    "request failed",
                    status=status,
                    ms=ms,
                    error=type(failure).__name__,
                    exc_info=failure,
                )
            structlog.contextvars.clear_contextvars()


def _nul_in_url(scope: Scope) -> Problem | None:
    """422 for a path or query parameter holding a NUL character (nothing can store or look it
    up), naming the parameter; before any route or database sees it."""
    if "\x00" in scope["path"]:
        return Problem.invalid([("path", NUL_REFUSED)])
    query = scope.get("query_string", b"")
    if b"%00" not in query.lower() and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return Problem.invalid([(f"query.{name.replace(chr(0), '')}", NUL_REFUSED)])
    return None


class BodyLimitMiddleware:
    """Refuse a request body over `max_bytes` with 413 before any route reads it; `larger`: the
    paths (by prefix) that take more (the codec: a whole payload, base64)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app, self.max_bytes, self.larger = app, max_bytes, dict(larger or {})

    def _limit(self, path: str) -> int:
        return next(
            (limit for prefix, limit in self.larger.items() if path.startswith(prefix)),
            self.max_bytes,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No length given (chunked): buffer up to the limit, then replay.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                chunks.append(message)
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(message)
            more = message.get("more_body", False)

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        detail = f"the request body is larger than {limit} bytes"
        await Problem(413, "body-too-large", detail).response()(scope, receive, send)
