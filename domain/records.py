"""What the workflow hands its activities and what they answer: one step (audit row, register
row, documents, deadlines) and the opening. Pure models, shared by workflows and activities."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from domain.models import Deadline, Model, OpenCaseInput, Outcome, Stage
from domain.policy import CasePolicy


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
        """Case and step, never the run."""
        return f"{self.case_id}/{self.step}"


class DocumentRecord(Model):
    """A written document: its number is unique and gapless per office, year and kind."""

    document_id: int
    kind: DocumentKind
    number: str = Field(description="e.g. beijing-decision_letter-2026-0012")
    sequence: int = Field(ge=1)
    year: int = Field(description="Asia/Shanghai calendar year of issued_at")
    issued_at: datetime


class DeadlineRequest(Model):
    start: datetime = Field(description="when the period starts (the order's time)")
    days: int = Field(ge=1)
    kind: Literal["calendar", "working"] = Field(
        "calendar",
        description="working: count working days (APL 85: periods of 2/3/5/7 days; ACL: 10 days "
        "or less); calendar: count calendar days, an end on a rest day moves to the next "
        "working day",
    )


class PeriodRequest(DeadlineRequest):
    """A deadline a step sets, computed on the calendar by the step's own activity."""

    name: str = Field(min_length=1, description="where the case keeps it, e.g. rectification")


class DocumentDraft(Model):
    """A document a step issues; the activity numbers it in the step's transaction."""

    kind: DocumentKind
    title: str
    content: dict[str, Any] = Field(default_factory=dict)


# The ApplicationError type of a step the database refused as data: retrying cannot fix it.
UNSTORABLE = "UnstorableData"


class StepRecord(Model):
    """One step of a case: its audit row, the register row it moves to, the documents it
    issues and the deadlines it sets, written in one transaction under `{case_id}/{seq}`."""

    case_id: str
    workflow_id: str
    office: str
    seq: int = Field(ge=1, description="the step's number in the case (its audit seq)")
    action: str
    from_stage: Stage | None
    to_stage: Stage
    actor: str
    occurred_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)
    outcome: Outcome | None = None
    documents: list[DocumentDraft] = Field(default_factory=list)
    periods: list[PeriodRequest] = Field(default_factory=list)
    pending: Deadline | None = Field(
        None, description="the deadline the register shows after the step (if not set here)"
    )
    pending_periods: list[str] = Field(
        default_factory=list,
        description="or: the latest of these deadlines set by this step is the one it shows",
    )
    settles: list[str] = Field(default_factory=list, description="deadlines the step settles")
    state: dict[str, Any] | None = Field(
        None,
        description="the case before the step (JSON): the activity applies the step to it and"
        " keeps the result in the register, for an operator to reopen the case from",
    )

    @property
    def idempotency_key(self) -> str:
        """Case and step, never the run: a new run of the same case cannot collide."""
        return f"{self.case_id}/{self.seq}"


class StepResult(Model):
    """What a step wrote: the same answer on a retry, which writes nothing again."""

    seq: int
    documents: list[DocumentRecord] = Field(default_factory=list)
    deadlines: dict[str, Deadline] = Field(default_factory=dict)
    duplicate: bool = Field(False, description="the step was written by an earlier attempt")


class OpeningRequest(Model):
    """Open a case: its policy slice, the subject's prior cases, the filing deadline and the
    register row with the first audit entry, in one activity."""

    opened: OpenCaseInput
    workflow_id: str
    opened_at: datetime


class OpeningResult(Model):
    policy: CasePolicy
    filing_deadline: Deadline
    duplicate: bool = False
