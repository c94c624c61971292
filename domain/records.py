"""What the workflow hands its activities: audit entries and deadline requests."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from domain.models import Model, OpenCaseInput, Outcome, Stage, Subject


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
    deadline_provisional: bool = Field(False, description="the pending deadline is provisional")

    @property
    def idempotency_key(self) -> str:
        return f"{self.workflow_id}/{self.seq}/{self.action}"


class CaseOpenedRecord(Model):
    opened: OpenCaseInput
    entry: AuditEntry
    policy_version: str | None = None


class DeadlineRequest(Model):
    start: datetime = Field(description="when the period starts (the order's time)")
    days: int = Field(ge=1)
    kind: Literal["calendar", "working"] = Field(
        "calendar",
        description="working: count working days (APL 85: periods of 2/3/5/7 days; ACL: 10 days "
        "or less); calendar: count calendar days, an end on a rest day moves to the next "
        "working day",
    )


class CasePolicyRequest(Model):
    """Which policy a case opens under, and how many earlier cases its subject has."""

    case_id: str
    category: str
    subject: Subject
    opened_at: datetime


class DocumentKind(StrEnum):
    INTERVIEW_NOTICE = "interview_notice"
    INTERVIEW_RECORD = "interview_record"
    RECTIFICATION_ORDER = "rectification_order"
    INVESTIGATION_REPORT = "investigation_report"
    PRIOR_NOTICE = "prior_notice"
    HEARING_NOTICE = "hearing_notice"
    HEARING_RECORD = "hearing_record"
    DECISION_LETTER = "decision_letter"
    PROOF_OF_SERVICE = "proof_of_service"
    PAYMENT_REMINDER = "payment_reminder"
    ENFORCEMENT_APPLICATION = "enforcement_application"
    REFERRAL_LETTER = "referral_letter"
    FILING_DECISION = "filing_decision"


class IssueDocumentRequest(Model):
    """Write one document of a case; `step` makes the write idempotent within the case."""

    case_id: str
    workflow_id: str
    step: str = Field(description="unique within the case, e.g. '7/prior_notice'")
    kind: DocumentKind
    office: str
    actor: str
    issued_at: datetime
    title: str
    content: dict[str, Any] = Field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        return f"{self.workflow_id}/{self.step}"


class DocumentRecord(Model):
    """A written document: its number is unique and gapless per office, year and kind."""

    document_id: int
    kind: DocumentKind
    number: str = Field(description="e.g. beijing-decision_letter-2026-0012")
    sequence: int = Field(ge=1)
    year: int = Field(description="Asia/Shanghai calendar year of issued_at")
    issued_at: datetime
