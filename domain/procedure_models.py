"""Commands and state of the full enforcement procedure (CaseWorkflow procedure v2)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from domain.models import (
    Actor,
    AwareDatetime,
    CaseCommand,
    Deadline,
    LongText,
    Model,
    NonEmpty,
    Outcome,
)
from domain.policy import Authority, CasePolicy, Measure

Money = Annotated[Decimal, Field(gt=0, max_digits=16, decimal_places=2)]

# --- commands ------------------------------------------------------------------------------


class FilingDecision(StrEnum):
    FILED = "filed"
    NOT_FILED = "not_filed"
    TRANSFERRED = "transferred"


class DecideFiling(CaseCommand):
    actor: Actor
    decision: FilingDecision
    reasons: LongText
    summary_disposal: bool = Field(
        False, description="illegal site found by monitoring: shutdown with the telecom authority"
    )
    transfer_to: Authority | None = Field(None, description="with decision=transferred")

    @model_validator(mode="after")
    def _transfer_target(self) -> DecideFiling:
        if (self.decision is FilingDecision.TRANSFERRED) != (self.transfer_to is not None):
            raise ValueError("transfer_to is given exactly when decision is transferred")
        if self.summary_disposal and self.decision is not FilingDecision.FILED:
            raise ValueError("summary_disposal goes with decision=filed")
        return self


class ExtendFilingDeadline(CaseCommand):
    actor: Actor = Field(description="the supervisor approving it")
    reasons: LongText


class RequestExtension(CaseCommand):
    actor: Actor
    days: int = Field(ge=1, le=365)
    reasons: LongText


class DecideExtension(CaseCommand):
    actor: Actor = Field(description="the supervisor")
    approved: bool
    days: int | None = Field(None, ge=1, le=365, description="granted days (default: as asked)")
    reasons: LongText


class RecordNoShow(CaseCommand):
    actor: Actor
    notes: LongText


class OpenPenaltyProcedure(CaseCommand):
    actor: Actor
    reasons: LongText


class RecordInvestigationReport(CaseCommand):
    actor: Actor
    facts: LongText
    evidence: list[NonEmpty] = Field(min_length=1)
    proposed_measure: Measure | None = Field(
        None, description="default: the measure the ladder reached"
    )


class RecordReview(CaseCommand):
    """A legal review (APL 58) or the leadership's collective decision."""

    actor: Actor
    approved: bool
    opinion: LongText
    participants: list[NonEmpty] = Field(default_factory=list)


class ResponsiblePerson(Model):
    name: NonEmpty
    role: NonEmpty = Field(examples=["editor-in-chief", "directly responsible manager"])
    measure: Literal["warning", "fine", "other"]
    fine_yuan: Money | None = None
    notes: str = ""

    @model_validator(mode="after")
    def _fine_amount(self) -> ResponsiblePerson:
        if (self.measure == "fine") != (self.fine_yuan is not None):
            raise ValueError("fine_yuan is given exactly when measure is fine")
        return self


class PenaltyTerms(Model):
    measure: Measure
    fine_yuan: Money | None = None
    prior_year_turnover_yuan: Money | None = Field(
        None, description="for fines capped at a share of turnover (PIPL 66)"
    )
    responsible_persons: list[ResponsiblePerson] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fine_amount(self) -> PenaltyTerms:
        if (self.measure is Measure.FINE) != (self.fine_yuan is not None):
            raise ValueError("fine_yuan is given exactly when measure is fine")
        return self


class NotifyPenalty(PenaltyTerms, CaseCommand):
    """Prior notice (APL 44): facts, reasons, basis and the party's rights."""

    actor: Actor
    facts: LongText
    reasons: LongText
    legal_basis: NonEmpty


class RecordStatement(CaseCommand):
    actor: Actor
    statement: LongText
    waive_rights: bool = Field(
        False,
        description="the party waives, in writing, any further statement, defence and hearing: "
        "the window closes now instead of at its deadline",
    )


class RequestHearing(CaseCommand):
    actor: Actor


class ScheduleHearing(CaseCommand):
    actor: Actor
    hearing_at: AwareDatetime
    place: NonEmpty
    chair: NonEmpty = Field(description="the hearing chair: never one of the investigators")


class RecordHearing(CaseCommand):
    actor: Actor
    record: LongText
    attended: bool = True


class DecidePenalty(PenaltyTerms, CaseCommand):
    actor: Actor
    reasons: LongText
    legal_basis: NonEmpty


class ServeDecision(CaseCommand):
    actor: Actor
    served_at: AwareDatetime
    method: Literal["direct", "post", "electronic", "public_notice"]


class RecordPayment(CaseCommand):
    actor: Actor
    amount_yuan: Money
    paid_at: AwareDatetime


class RecordAppeal(CaseCommand):
    actor: Actor
    kind: Literal["reconsideration", "litigation"]
    event: Literal["filed", "concluded"]
    at: AwareDatetime


class Refer(CaseCommand):
    actor: Actor
    authority: Authority
    reasons: LongText
    criminal: bool = Field(False, description="criminal clue: head's approval, then transfer")


class ReferralAction(CaseCommand):
    actor: Actor
    referral_id: int = Field(ge=1)
    notes: str = ""


class Withdraw(CaseCommand):
    actor: Actor
    ground: Literal["no_violation", "facts_not_proven"]
    reasons: LongText


class ExtendHandlingLimit(CaseCommand):
    actor: Actor = Field(description="the supervisor approving it")
    days: int = Field(ge=1, le=365)
    reasons: LongText


class DealWithResponsiblePersons(CaseCommand):
    actor: Actor
    persons: list[ResponsiblePerson] = Field(min_length=1)


class EventType(StrEnum):
    VIOLATION_DETECTED = "violation_detected"
    COMPLAINT = "complaint"
    REFERRAL_RECEIVED = "referral_received"
    RECTIFICATION_REPORT_SUBMITTED = "rectification_report_submitted"
    INSPECTION_RESULT = "inspection_result"
    PAYMENT_RECEIVED = "payment_received"
    APPEAL_FILED = "appeal_filed"


class CaseEvent(CaseCommand):
    """A fact an enforcement system reports about a case; the key makes it count once."""

    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)]
    type: EventType
    source: NonEmpty = Field(description="the reporting system", examples=["monitoring"])
    occurred_at: AwareDatetime
    payload: dict[str, Any] = Field(default_factory=dict)


class EventReceipt(Model):
    case_id: str
    workflow_id: str
    idempotency_key: str
    result: Literal["opened", "joined", "duplicate"]
    stage: str


class CalendarUpdated(Model):
    year: int


# --- state ---------------------------------------------------------------------------------


class ExtensionRequest(Model):
    requested_at: datetime
    requested_by: str
    days: int
    reasons: str
    decided: bool = False
    approved: bool | None = None


class PenaltyProcedure(Model):
    opened_at: datetime
    reason: str
    rung: int
    measure: Measure
    investigation: RecordInvestigationReport | None = None
    legal_review_required: bool = False
    collective_decision_required: bool = False
    notice: NotifyPenalty | None = None
    notice_at: datetime | None = None
    hearing_right: bool = False
    defence_deadline: Deadline | None = None
    hearing_request_deadline: Deadline | None = None
    statements: list[str] = Field(default_factory=list)
    hearing_requested: bool = False
    hearing: ScheduleHearing | None = None
    hearing_record: RecordHearing | None = None
    decision: DecidePenalty | None = None
    decided_at: datetime | None = None
    service_deadline: Deadline | None = None
    served_at: datetime | None = None
    payment_deadline: Deadline | None = None
    reminder_at: datetime | None = None
    enforcement_deadline: Deadline | None = None
    enforcement_applied_at: datetime | None = None
    paid_yuan: Decimal | None = None
    surcharge_yuan: Decimal = Decimal("0.00")
    appeals_pending: list[str] = Field(default_factory=list)
    paused_days: list[str] = Field(
        default_factory=list, description="local days an appeal was pending (no surcharge)"
    )
    appeal_paused_since: datetime | None = None
    documents: dict[str, str] = Field(default_factory=dict, description="kind → number")


class Referral(Model):
    referral_id: int
    authority: Authority
    reasons: str
    criminal: bool
    requested_at: datetime
    status: Literal["awaiting_approval", "approved", "sent", "acknowledged"]
    approval_deadline: Deadline | None = None
    transfer_due_at: datetime | None = None
    acknowledgement_deadline: Deadline | None = None
    overdue: list[str] = Field(default_factory=list, description="what a supervisor must chase")
    letter_number: str | None = None
    closes_with: Outcome | None = Field(
        None, description="the case closes with this outcome once acknowledged"
    )


class CaseProcedure(Model):
    """Procedure-v2 state kept beside CaseState."""

    policy: CasePolicy
    filing_deadline: Deadline | None = None
    filing_extended: bool = False
    filed_at: datetime | None = None
    handling_deadline: Deadline | None = None
    handling_flags: list[str] = Field(default_factory=list)
    interviews_held: int = 0
    no_shows: int = 0
    rectification_round: int = 0
    interim_suspension: bool = False
    extension: ExtensionRequest | None = None
    escalations: int = 0
    penalty: PenaltyProcedure | None = None
    referrals: list[Referral] = Field(default_factory=list)
    responsible_persons: list[ResponsiblePerson] = Field(default_factory=list)
    documents: list[str] = Field(default_factory=list, description="numbers of documents issued")
    needs_supervisor: list[str] = Field(default_factory=list)
    event_keys: list[str] = Field(
        default_factory=list, description="idempotency keys of the events already recorded"
    )
