"""GET /health: is PostgreSQL answering, is Temporal answering."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.auth import NO_KEY, AccessRoute
from api.deps import DbPool, TemporalClient

router = APIRouter(tags=["health"], route_class=AccessRoute)

CHECK_TIMEOUT_S = 3.0


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


async def _postgres(pool: DbPool) -> str:
    async with pool.acquire(timeout=CHECK_TIMEOUT_S) as conn:
        await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)
    return "ok"


async def _temporal(client: TemporalClient) -> str:
    healthy = await client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_S))
    return "ok" if healthy else "not serving"


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "a dependency is down"}},
    dependencies=[Depends(NO_KEY)],
)
async def health(pool: DbPool, client: TemporalClient) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, check in (("postgres", _postgres(pool)), ("temporal", _temporal(client))):
        try:
            checks[name] = await asyncio.wait_for(check, CHECK_TIMEOUT_S + 1)
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}: {exc}".strip()
    ok = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
