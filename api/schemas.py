"""Request and response bodies of the case endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.models import (
    Actor,
    CaseId,
    CaseState,
    OpenCaseInput,
    Outcome,
    Stage,
)


class OpenCaseRequest(OpenCaseInput):
    """Open a case. Give the office's own case number as `case_id`, or let Rectify assign one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": "BJ-2026-0042",
                    "subject": {
                        "kind": "website",
                        "name": "Example News",
                        "identifiers": {
                            "domain": "news.example.cn",
                            "icp_filing": "京ICP备12345678号",
                        },
                    },
                    "violation_category": "prohibited_information",
                    "legal_basis": "Cybersecurity Law art. 61",
                    "severity": "general",
                    "office": "beijing",
                    "opened_by": "officer.li",
                }
            ]
        }
    )

    case_id: CaseId | None = None  # type: ignore[assignment]


class OpenedCase(BaseModel):
    case_id: str
    workflow_id: str
    run_id: str | None
    temporal_ui_url: str | None


class CaseView(BaseModel):
    """A case as the API shows it: live from its workflow, or from the register once closed."""

    case_id: str
    workflow_id: str
    source: Literal["workflow", "register"]
    stage: Stage
    outcome: Outcome | None
    office: str
    violation_category: str
    subject_name: str
    deadline_at: datetime | None
    opened_at: datetime
    closed_at: datetime | None
    waiting_for: str | None = None
    temporal_ui_url: str | None = None
    live: CaseState | None = Field(None, description="the workflow's full state while it runs")


class AuditEntryView(BaseModel):
    seq: int
    action: str
    from_stage: str | None
    to_stage: str
    actor: str
    occurred_at: datetime
    payload: dict[str, Any]


class ReferralStep(BaseModel):
    """A step on one referral; the referral is named in the path."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    actor: Actor
    notes: str = Field("", max_length=20_000)
