"""Request and response bodies of the case endpoints."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.read_models import Interruption
from domain.case import CaseState, Detections, pending_deadline
from domain.models import CaseId, OpenCaseInput, Outcome, Stage
from domain.procedure import waits_for


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


class PendingDeadline(BaseModel):
    """The deadline a supervisor watches now, whatever the stage."""

    name: str | None = Field(
        description="rectification, defence, payment, handling…; null when read from the "
        "register, which keeps only the instant"
    )
    due_at: datetime
    provisional: bool = Field(description="counted without the official calendar of a year")
    last_day: str | None = Field(None, description="the last day, local date")
    explanation: str | None = None


class DecidedPenalty(BaseModel):
    measure: str
    fine_yuan: Decimal | None = Field(description="the fine decided on the party, if any")
    legal_basis: str | None
    decided_at: datetime
    decided_by: str


class IssuedDocument(BaseModel):
    kind: str
    number: str = Field(description="gapless per office, year and kind")
    issued_at: datetime


class CaseAlert(BaseModel):
    """What went wrong with the case that no retry can fix (the `alerts` table)."""

    kind: str = Field(examples=["UnstorableData"])
    raised_at: datetime
    detail: dict[str, Any] = Field(
        description="what failed (step, action, the database's error class and SQLSTATE),"
        " never the refused values"
    )


class CaseView(BaseModel):
    """A case: from its workflow, open or closed (`state` is then its whole state), or from
    the register when the workflow cannot answer (failed, terminated, no worker running)."""

    case_id: str
    workflow_id: str
    source: Literal["workflow", "register"]
    stage: Stage
    waiting_for: str
    outcome: Outcome | None
    office: str
    violation_category: str
    subject_name: str
    opened_at: datetime
    closed_at: datetime | None
    deadline: PendingDeadline | None
    penalty: DecidedPenalty | None
    documents: list[IssuedDocument]
    temporal_ui_url: str | None = None
    interrupted: Interruption | None = Field(
        None,
        description="the case's run ended without an outcome (failed, terminated…): an operator"
        " decides, `rectify cases reopen|close`; null otherwise",
    )
    detections: Detections = Field(
        default_factory=Detections,
        description="detections recorded against the case (the inbox): the count and the"
        " latest; all of them: GET /cases/{case_id}/detections",
    )
    alerts: list[CaseAlert] = Field(
        default_factory=list,
        description="steps the database refused as data, oldest first: the command was"
        " answered 422 and nothing of it was written",
    )
    state: CaseState | None = Field(
        None, description="the workflow's whole state; null when read from the register"
    )

    @classmethod
    def from_state(cls, state: CaseState, ui_url: str | None) -> CaseView:
        pending, penalty = pending_deadline(state), state.penalty
        deadline = None
        if pending is not None:
            deadline = PendingDeadline(
                name=pending.name,
                due_at=pending.deadline.due_at,
                provisional=pending.deadline.provisional,
                last_day=pending.deadline.last_day,
                explanation=pending.deadline.explanation,
            )
        decided = None
        if penalty is not None and penalty.decided_at is not None:
            decided = DecidedPenalty(
                measure=penalty.measure.value,
                fine_yuan=penalty.fine_yuan,
                legal_basis=penalty.legal_basis,
                decided_at=penalty.decided_at,
                decided_by=penalty.decided_by or "",
            )
        return cls(
            case_id=state.case_id,
            workflow_id=state.workflow_id,
            source="workflow",
            stage=state.stage,
            waiting_for=state.waiting_for,
            outcome=state.outcome,
            office=state.opened.office,
            violation_category=state.opened.violation_category,
            subject_name=state.opened.subject.name,
            opened_at=state.opening.opened_at,
            closed_at=state.closed_at,
            deadline=deadline,
            penalty=decided,
            documents=[
                IssuedDocument(kind=d.kind.value, number=d.number, issued_at=d.issued_at)
                for d in state.documents
            ],
            temporal_ui_url=ui_url,
            state=state,
        )


class RegisterRow(BaseModel):
    """What the register (`cases`) holds of a case, as GET /cases/{id} falls back to it."""

    case_id: str
    workflow_id: str
    stage: Stage
    outcome: Outcome | None
    office: str
    violation_category: str
    subject_name: str
    deadline_at: datetime | None
    deadline_provisional: bool
    opened_at: datetime
    closed_at: datetime | None

    def view(
        self,
        documents: list[IssuedDocument],
        penalty: DecidedPenalty | None,
        ui_url: str | None,
    ) -> CaseView:
        deadline = (
            None
            if self.deadline_at is None
            else PendingDeadline(
                name=None, due_at=self.deadline_at, provisional=self.deadline_provisional
            )
        )
        return CaseView(
            source="register",
            waiting_for=waits_for(self.stage),
            deadline=deadline,
            penalty=penalty,
            documents=documents,
            temporal_ui_url=ui_url,
            **self.model_dump(exclude={"deadline_at", "deadline_provisional"}),
        )
