"""GET /health: is PostgreSQL answering, is Temporal answering; answered within 2 s whatever hangs.

Both checks run at once, each bounded by `CHECK_TIMEOUT_S`; a check still running then is
reported as timed out, cancelled and not waited for (its own cleanup, such as returning a pooled
connection, is bounded too), so neither a frozen database nor a Temporal
server that does not answer can hold the answer. The route depends on nothing that could wait
before it runs: the pool and the client are read from the app's state, and no key is asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Literal

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.client import Client

from api.auth import NO_KEY, AccessRoute

router = APIRouter(tags=["health"], route_class=AccessRoute)

CHECK_TIMEOUT_S = 1.5  # the whole answer stays under 2 s

# Checks past their time, cancelled and still unwinding: held so they are not garbage-collected
# mid-flight, their outcome retrieved so nothing logs "exception was never retrieved".
_finishing: set[asyncio.Task[str]] = set()


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


async def _postgres(pool: asyncpg.Pool | None) -> str:
    if pool is None:
        return "error: no pool"
    async with pool.acquire(timeout=CHECK_TIMEOUT_S) as conn:
        await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)
    return "ok"


async def _temporal(client: Client | None) -> str:
    if client is None:
        return "error: no client"
    healthy = await client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_S))
    return "ok" if healthy else "not serving"


def _outcome(task: asyncio.Task[str]) -> str:
    if not task.done():
        return "error: no answer in time"
    if task.cancelled():
        return "error: cancelled"
    exc = task.exception()
    if exc is not None:
        return f"error: {type(exc).__name__}: {exc}".strip().rstrip(":")
    return task.result()


def _let_finish(task: asyncio.Task[str]) -> None:
    _finishing.add(task)

    def forget(done: asyncio.Task[str]) -> None:
        _finishing.discard(done)
        if not done.cancelled():
            done.exception()  # retrieved: a late failure is already reported as a timeout

    task.add_done_callback(forget)


async def run_checks(
    checks: dict[str, Callable[[], Awaitable[str]]], within_s: float = CHECK_TIMEOUT_S
) -> dict[str, str]:
    """Each check's outcome ("ok", or what went wrong), all within `within_s` seconds.
    (`asyncio.wait_for` or `asyncio.timeout` would wait for a cancelled check to unwind.)"""

    async def run(check: Callable[[], Awaitable[str]]) -> str:
        return await check()

    tasks = {name: asyncio.create_task(run(check)) for name, check in checks.items()}
    await asyncio.wait(tasks.values(), timeout=within_s)
    outcomes = {name: _outcome(task) for name, task in tasks.items()}
    for task in tasks.values():
        if not task.done():
            task.cancel()
            _let_finish(task)
    return outcomes


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "a dependency is down"}},
    dependencies=[Depends(NO_KEY)],
)
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    pool: asyncpg.Pool | None = getattr(state, "pool", None)
    client: Client | None = getattr(state, "temporal", None)
    checks = await run_checks(
        {"postgres": lambda: _postgres(pool), "temporal": lambda: _temporal(client)}
    )
    ok = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
