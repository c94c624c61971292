"""Campaigns (special actions): open many cases under one theme, and follow their progress."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import problems
from api.auth import CAMPAIGN_OPENING, CAMPAIGN_READING, AccessRoute
from api.case_calls import answer_within
from api.deps import Admitted, AppSettings, DbPool, Keys, TemporalClient
from api.problems import Problem
from domain.models import Actor, CaseId, NonEmpty, Severity, Subject
from wiring.api_keys import ApiKey
from workflows.campaign import (
    MAX_SUBJECTS,
    CampaignInput,
    CampaignProgress,
    CampaignWorkflow,
    campaign_workflow_id,
)

router = APIRouter(prefix="/campaigns", tags=["campaigns"], route_class=AccessRoute)

EXAMPLE: dict[str, Any] = {
    "campaign_id": "QL-2026-APPS",
    "title": "Qinglang: illegal personal-information processing by apps",
    "office": "national",
    "violation_category": "personal_information",
    "legal_basis": "Personal Information Protection Law art. 66",
    "severity": "general",
    "opened_by": "officer.li",
    "subjects": [
        {
            "kind": "app",
            "name": "Chaofan Cleanup Manager",
            "identifiers": {"app_package": "com.chaofan.cleanup"},
        },
    ],
}


class CampaignRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [cast(JsonValue, EXAMPLE)]}
    )

    campaign_id: CaseId | None = Field(None, description="default: one is assigned")
    title: NonEmpty
    office: NonEmpty
    violation_category: NonEmpty
    legal_basis: NonEmpty
    severity: Severity = Severity.GENERAL
    opened_by: Actor
    subjects: list[Subject] = Field(min_length=1, max_length=MAX_SUBJECTS)


class CampaignView(BaseModel):
    campaign_id: str
    status: str
    progress: CampaignProgress | None
    opened: int = Field(description="cases of the campaign in the register")
    open: int
    closed_by_outcome: dict[str, int]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CampaignView,
    responses=problems.responses((409, "a campaign with this id exists"), 413, 422, 429),
)
async def open_campaign(
    body: CampaignRequest,
    client: TemporalClient,
    settings: AppSettings,
    keyring: Keys,
    response: Response,
    caller: Annotated[ApiKey, Depends(CAMPAIGN_OPENING)],
    _admitted: Admitted,  # after the access rule: 401/403 first, then 429 while behind
) -> CampaignView:
    """Start the campaign: its cases open in paced waves; follow them at GET /campaigns/{id}."""
    campaign_id = body.campaign_id or f"CP-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}"
    campaign = CampaignInput.model_validate(
        body.model_dump()
        | {
            "campaign_id": campaign_id,
            "acting_key": caller.prefix,
            "subject_digests": [keyring.subject_digests(s.identifiers) for s in body.subjects],
        }
    )
    try:
        await client.start_workflow(
            CampaignWorkflow.run,
            campaign,
            id=campaign_workflow_id(campaign_id),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError as exc:
        raise Problem(
            409,
            "campaign-exists",
            f"campaign {campaign_id} already exists",
            campaign_id=campaign_id,
        ) from exc
    response.headers["Location"] = f"/campaigns/{campaign_id}"
    return CampaignView(
        campaign_id=campaign_id,
        status="RUNNING",
        progress=CampaignProgress(
            campaign_id=campaign_id, title=body.title, total=len(body.subjects)
        ),
        opened=0,
        open=0,
        closed_by_outcome={},
    )


@router.get(
    "/{campaign_id}",
    response_model=CampaignView,
    responses=problems.responses((404, "no such campaign"), 504),
    dependencies=[Depends(CAMPAIGN_READING)],
)
async def get_campaign(
    campaign_id: str, client: TemporalClient, pool: DbPool, settings: AppSettings
) -> CampaignView:
    """Progress: cases started by the campaign, and the register's count by outcome."""
    handle = client.get_workflow_handle_for(CampaignWorkflow.run, campaign_workflow_id(campaign_id))
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise Problem(
            404, "campaign-not-found", f"no campaign {campaign_id}", campaign_id=campaign_id
        ) from exc
    progress: CampaignProgress | None = None
    if description.status == WorkflowExecutionStatus.COMPLETED:
        progress = await handle.result()
    elif description.status == WorkflowExecutionStatus.RUNNING:
        async with answer_within(campaign_id, settings.case_answer_timeout_s):
            progress = await handle.query(CampaignWorkflow.progress)
    rows = await pool.fetch(
        """
        SELECT outcome, count(*) AS cases, count(*) FILTER (WHERE closed_at IS NULL) AS open
          FROM cases WHERE campaign_id = $1 GROUP BY outcome
        """,
        campaign_id,
    )
    return CampaignView(
        campaign_id=campaign_id,
        status=description.status.name if description.status else "UNKNOWN",
        progress=progress,
        opened=sum(row["cases"] for row in rows),
        open=sum(row["open"] for row in rows),
        closed_by_outcome={row["outcome"]: row["cases"] for row in rows if row["outcome"]},
    )
