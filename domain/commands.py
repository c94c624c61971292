"""The commands a case takes: one pydantic model per update, each a row's body in
domain/procedure.py. Every field added later gets a default so running cases keep replaying."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from domain.models import Actor, CaseCommand, LongText, Model, NonEmpty, json_problem
from domain.policy import Authority, Measure

_AMOUNT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _ascii_amount(value: object) -> object:
    """An amount written as text uses ASCII digits: Python would read full-width ones (U+FF13 U+FF10
    U+FF10) as 300, which no document or bank file should ever have to."""
    if isinstance(value, str) and not _AMOUNT.fullmatch(value.strip()):
        raise ValueError(
            "write the amount in ASCII digits with an optional decimal point, e.g. 30000.50"
        )
    return value


def _fixed_point(value: Decimal) -> Decimal:
    """`1E+2` (from `Decimal.normalize()`) as `100`: what the JSON of a command reads back."""
    exponent = value.as_tuple().exponent
    return Decimal(format(value, "f")) if isinstance(exponent, int) and exponent > 0 else value


Money = Annotated[
    Decimal,
    BeforeValidator(_ascii_amount),
    Field(gt=0, max_digits=16, decimal_places=2),
    AfterValidator(_fixed_point),
]


class ScheduleInterview(CaseCommand):
    actor: Actor
    scheduled_for: AwareDatetime
    place: NonEmpty
    reason: LongText
    attendees_required: list[NonEmpty] = Field(
        min_length=1, description="the party's people who must attend (e.g. editor-in-chief)"
    )


class RecordInterview(CaseCommand):
    actor: Actor
    officials: list[NonEmpty] = Field(
        min_length=2, description="at least two enforcement officials hold an interview"
    )
    attended_by: list[NonEmpty] = Field(min_length=1)
    summary: LongText


class IssueRectificationOrder(CaseCommand):
    actor: Actor
    period_days: int | None = Field(
        None, ge=1, le=365, description="days to rectify (default: the category's policy)"
    )
    requirements: LongText
    interim_suspension: bool = Field(
        False, description="suspend related functions while the party rectifies"
    )


class SubmitRectificationReport(CaseCommand):
    actor: Actor
    summary: LongText
    evidence: list[NonEmpty] = Field(default_factory=list)


class RecordVerification(CaseCommand):
    actor: Actor
    passed: bool
    findings: LongText
    penalize: bool = Field(
        False,
        description="rectified, but the violation still calls for the penalty procedure "
        "(refused where leniency applies: APL 33)",
    )


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


class ReferralStep(Model):
    """A step on one referral, over HTTP: the referral is named in the path."""

    actor: Actor
    notes: str = Field("", max_length=20_000)


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
    # Kept as sent: its keys are not trimmed (" url" and "url" are two keys).
    payload: dict[Annotated[str, StringConstraints(strip_whitespace=False)], Any] = Field(
        default_factory=dict
    )

    @field_validator("payload", mode="after")
    @classmethod
    def _keepable_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = json_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class EventReceipt(Model):
    case_id: str
    workflow_id: str
    idempotency_key: str
    result: Literal["opened", "joined", "duplicate"]
    stage: str | None = Field(description="the case's stage in the register (none: not yet in it)")
    detection: int = Field(description="the detection's number in the inbox (paging cursor)")


class DetectionRef(Model):
    """One detection, as the case and its view show it (the inbox holds the whole event)."""

    idempotency_key: str
    type: str
    source: str
    occurred_at: datetime
    received_at: datetime


class DetectionsArrived(Model):
    """Coalesced news of a case's detections: how many are recorded, and the latest few."""

    count: int = Field(ge=0)
    latest: list[DetectionRef] = Field(default_factory=list, max_length=10)


class CalendarUpdated(Model):
    year: int


EVENT_OPENER_PREFIX = "event:"


def opened_by_event(idempotency_key: str) -> str:
    """The `opened_by` of a case an event opened: its receipt then says "opened"."""
    return f"{EVENT_OPENER_PREFIX}{idempotency_key}"
