"""`GET /cases/{case_id}/detections`: the case's detections from the inbox, in the order
received, a page at a time (keyset: `after` is the last `detection` number of the page before)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api import problems
from api.auth import CASE_READING, AccessRoute
from api.deps import DbPool
from api.intake import DetectionInbox
from api.problems import Problem

router = APIRouter(prefix="/cases", tags=["cases"], route_class=AccessRoute)


class Detection(BaseModel):
    detection: int = Field(description="its number in the inbox: the paging cursor")
    idempotency_key: str
    type: str
    source: str
    occurred_at: datetime
    received_at: datetime
    payload: dict[str, Any]


class DetectionPage(BaseModel):
    case_id: str
    count: int = Field(description="detections recorded against the case")
    detections: list[Detection]
    next_after: int | None = Field(description="`after` for the next page; null: no more")


@router.get(
    "/{case_id}/detections",
    response_model=DetectionPage,
    responses=problems.responses(404, 422),
    dependencies=[Depends(CASE_READING)],
)
async def case_detections(
    case_id: str,
    pool: DbPool,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="the cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DetectionPage:
    """A page of the case's detections, oldest first."""
    inbox = DetectionInbox(pool)
    count, _ = await inbox.summary(case_id)
    if count == 0 and not await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM cases WHERE case_id = $1)", case_id
    ):
        raise Problem(404, "case-not-found", f"no case {case_id}", case_id=case_id)
    rows = await inbox.page(case_id, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return DetectionPage(
        case_id=case_id,
        count=count,
        detections=[
            Detection(detection=number, payload=payload, **ref.model_dump())
            for number, ref, payload in rows
        ],
        next_after=rows[-1][0] if more and rows else None,
    )
