"""What the workflow hands its activities: audit entries and deadline requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from workflows.case_models import Model, OpenCaseInput, Outcome, Stage


class AuditEntry(Model):
    """One step of a case, as it goes into the audit trail and moves the register row."""

    case_id: str
    workflow_id: str
    seq: int = Field(ge=1, description="position in the case's audit trail")
    action: str
    from_stage: Stage | None
    to_stage: Stage
    actor: str
    occurred_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)
    outcome: Outcome | None = None
    deadline_at: datetime | None = Field(None, description="the pending deadline after this step")

    @property
    def idempotency_key(self) -> str:
        return f"{self.workflow_id}/{self.seq}/{self.action}"


class CaseOpenedRecord(Model):
    opened: OpenCaseInput
    entry: AuditEntry


class DeadlineRequest(Model):
    start: datetime = Field(description="when the period starts (the order's time)")
    days: int = Field(ge=1)
