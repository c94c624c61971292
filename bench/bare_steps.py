"""The bare arm's side of the benchmark: its messages and its one activity (a step = one INSERT).

Kept apart from bench/bare_case.py: a workflow module never defines activities.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.common import RetryPolicy

TABLE = "bench_bare_steps"
CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    idempotency_key text PRIMARY KEY,
    case_id text NOT NULL,
    step integer NOT NULL,
    action text NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL
)
"""
# As Rectify's step activity is called (workflows/context.py).
STEP_TIMEOUT = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)


class BareOpen(BaseModel):
    case_id: str
    # Each step a local activity or a regular one, as Rectify runs its own (read from its history).
    local_opening: bool = False
    local_steps: bool = True
    filing_days: int = 15
    rectification_days: int = 15


class BareCommand(BaseModel):
    """Any command body: the bare arm is sent the same bodies as Rectify, and keeps them."""

    model_config = ConfigDict(extra="allow")

    actor: str


class BareReceipt(BaseModel):
    case_id: str
    stage: str
    step: int


class BareResult(BaseModel):
    case_id: str
    steps: int


class BareStep(BaseModel):
    case_id: str
    step: int
    action: str
    occurred_at: datetime
    payload: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        return f"{self.case_id}/{self.step}"


class BareStepResult(BaseModel):
    written: bool


class BareSteps:
    """The one activity every bare step runs, holding its pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="bare_record_step")
    async def record_step(self, step: BareStep) -> BareStepResult:
        status = await self._pool.execute(
            f"""
            INSERT INTO {TABLE} (idempotency_key, case_id, step, action, occurred_at, payload)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (idempotency_key) DO NOTHING
            """,
            step.idempotency_key,
            step.case_id,
            step.step,
            step.action,
            step.occurred_at,
            step.payload,  # the pool (wiring.db) encodes jsonb
        )
        return BareStepResult(written=status == "INSERT 0 1")
