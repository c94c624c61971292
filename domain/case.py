"""The one model of a case, organised by concern: what the workflow keeps, what its query and
`GET /cases/{id}` serve, and what a continued run would carry. Pure data: the workflow's step
functions change it, nothing here reads a clock or does I/O.

Every field has a default or is set at opening, so a field added later never breaks a running
case's history.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from domain.commands import (
    DetectionRef,
    FilingDecision,
    NotifyPenalty,
    RecordHearing,
    RecordInvestigationReport,
    ResponsiblePerson,
    ScheduleHearing,
)
from domain.models import Actor, Deadline, Model, NonEmpty, OpenCaseInput, Outcome, Stage
from domain.policy import Authority, CasePolicy, Measure
from domain.procedure import HANDLING, STAGE_ROW, waits_for
from domain.records import DocumentKind, StepRecord, StepResult


class Opening(Model):
    """How the case opened: the one opening time the register and the workflow share."""

    input: OpenCaseInput
    opened_at: datetime = Field(description="when the case opened (its workflow's start)")
    policy_version: str | None = Field(None, description="the policy the case runs under")
    prior_cases: int = Field(0, description="the subject's earlier cases that count (repeats)")


class Filing(Model):
    decision: FilingDecision | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    summary_disposal: bool = False
    extended: bool = Field(False, description="the filing deadline was extended (once at most)")
    overdue: bool = False


class Interview(Model):
    scheduled_for: datetime
    place: str
    reason: str
    attendees_required: list[str]
    held_at: datetime | None = None
    officials: list[str] = Field(default_factory=list)
    attended_by: list[str] = Field(default_factory=list)
    summary: str | None = None


class Interviews(Model):
    current: Interview | None = Field(None, description="the latest interview, held or not")
    held: int = 0
    no_shows: int = 0


class ExtensionRequest(Model):
    requested_at: datetime
    requested_by: str
    days: int
    reasons: str
    decided: bool = False
    approved: bool | None = None
    granted_days: int | None = None


class RectificationReport(Model):
    submitted_at: datetime
    submitted_by: str
    summary: str
    evidence: list[str]


class Verification(Model):
    at: datetime
    by: str
    passed: bool
    findings: str


class Rectification(Model):
    """The order within a time limit, its extensions, the report and its verification."""

    ordered_at: datetime | None = None
    ordered_by: str | None = None
    requirements: str | None = None
    period_days: int | None = None
    round: int = Field(0, description="rectification rounds given so far")
    interim_suspension: bool = False
    extensions: list[ExtensionRequest] = Field(default_factory=list)
    report: RectificationReport | None = None
    verification: Verification | None = None

    @property
    def pending_extension(self) -> ExtensionRequest | None:
        last = self.extensions[-1] if self.extensions else None
        return last if last is not None and not last.decided else None


class Penalty(Model):
    """The penalty procedure: reviews, prior notice, defence and hearing, the decision."""

    opened_at: datetime
    reason: str
    rung: int
    measure: Measure
    legal_review_required: bool = False
    collective_decision_required: bool = False
    investigation: RecordInvestigationReport | None = None
    notice: NotifyPenalty | None = None
    notice_at: datetime | None = None
    hearing_right: bool = False
    statements: list[str] = Field(default_factory=list)
    hearing_requested: bool = False
    hearing: ScheduleHearing | None = None
    hearing_record: RecordHearing | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    fine_yuan: Decimal | None = Field(None, description="the fine decided on the party")
    legal_basis: str | None = None
    reasons: str | None = None
    responsible_persons: list[ResponsiblePerson] = Field(
        default_factory=list, description="measures decided on responsible persons"
    )
    served_at: datetime | None = None


class Payment(Model):
    """Performance of a fine: payment, late surcharge (APL 72), reminder, court enforcement."""

    fine_yuan: Decimal
    due_last_day: str | None = Field(None, description="last day of the payment period")
    paid_yuan: Decimal | None = None
    paid_at: datetime | None = None
    surcharge_yuan: Decimal = Decimal("0.00")
    reminder_at: datetime | None = None
    enforcement_applied_at: datetime | None = None


class Appeals(Model):
    """Reconsideration and litigation: enforcement goes on, the surcharge pauses."""

    pending: list[Literal["reconsideration", "litigation"]] = Field(default_factory=list)
    paused_since: datetime | None = None
    paused_days: list[str] = Field(
        default_factory=list, description="local days an appeal was pending (no surcharge)"
    )
    filed: int = 0


class Referral(Model):
    referral_id: int
    authority: Authority
    reasons: str
    criminal: bool
    requested_at: datetime
    status: Literal["awaiting_approval", "approved", "sent", "acknowledged"]
    transfer_due_at: datetime | None = None
    overdue: list[str] = Field(default_factory=list, description="what a supervisor must chase")
    letter_number: str | None = None
    closes_with: Outcome | None = Field(
        None, description="the case closes with this outcome once acknowledged"
    )


class DocumentRef(Model):
    """A document the case issued: its number is gapless per office, year and kind."""

    kind: DocumentKind
    number: str
    step: int = Field(description="the step that issued it")
    issued_at: datetime


class Detections(Model):
    """What the case knows of its detections: they live in the detections inbox (PostgreSQL);
    the workflow hears of them coalesced, a count and the latest few, never one by one."""

    count: int = Field(0, description="detections recorded against the case so far")
    latest: list[DetectionRef] = Field(default_factory=list, description="the latest few")


class PendingDeadline(Model):
    name: str
    deadline: Deadline


class CaseState(Model):
    """Everything about one case. The query serves it whole; updates answer a `Receipt`."""

    case_id: str
    workflow_id: str
    opening: Opening
    stage: Stage = Stage.FILING
    waiting_for: str = ""
    outcome: Outcome | None = None
    closed_at: datetime | None = None
    step: int = Field(0, description="steps recorded so far (the audit trail's last seq)")
    deadlines: dict[str, Deadline] = Field(
        default_factory=dict, description="every pending deadline by name, with its explanation"
    )
    filing: Filing = Field(default_factory=Filing)
    handling_flags: list[str] = Field(default_factory=list, description="90-day limit flags")
    interviews: Interviews = Field(default_factory=Interviews)
    rectification: Rectification = Field(default_factory=Rectification)
    escalations: int = 0
    penalty: Penalty | None = None
    payment: Payment | None = None
    appeals: Appeals = Field(default_factory=Appeals)
    referrals: list[Referral] = Field(default_factory=list)
    responsible_persons: list[ResponsiblePerson] = Field(
        default_factory=list, description="every measure on a responsible person, any step"
    )
    documents: list[DocumentRef] = Field(default_factory=list)
    needs_supervisor: list[str] = Field(default_factory=list)
    policy: CasePolicy | None = Field(None, description="the policy slice fixed at opening")
    detections: Detections = Field(default_factory=Detections)
    reminded: dict[str, list[int]] = Field(
        default_factory=dict,
        description="reminders already sent, by deadline (`name@due_at`): days before it",
    )

    @classmethod
    def new(cls, opened: OpenCaseInput, workflow_id: str, opened_at: datetime) -> CaseState:
        """A case about to open: what its first run starts from."""
        return cls(
            case_id=opened.case_id,
            workflow_id=workflow_id,
            opening=Opening(input=opened, opened_at=opened_at),
            stage=Stage.FILING,
            waiting_for=waits_for(Stage.FILING),
        )

    def open_with(self, policy: CasePolicy, filing_deadline: Deadline) -> None:
        """The opening step written: the policy slice fixed, the filing deadline running."""
        self.policy = policy
        self.opening.policy_version = policy.version
        self.opening.prior_cases = policy.prior_cases
        self.deadlines["filing"] = filing_deadline
        self.step = 1

    @property
    def opened(self) -> OpenCaseInput:
        return self.opening.input

    @property
    def closed(self) -> bool:
        return self.stage is Stage.CLOSED


class Continuation(Model):
    """What a continued run carries from the run before it: the whole case."""

    state: CaseState
    calendar_changed: bool = Field(False, description="a calendar change not yet acted on")
    run: int = Field(1, ge=1, description="the run in the case's chain: 1 is the first")


class OperatorOrder(Model):
    """An operator's decision on a case whose run failed or was terminated: carry it on in a new
    run, or close it, with a reason; both are audited as the new run's first step."""

    action: Literal["reopen", "close"]
    reason: NonEmpty
    actor: Actor
    interrupted: str = Field(description="how the run it replaces ended: failed, terminated…")


class CaseRun(OpenCaseInput):
    """The case workflow's input: a case to open, or (with `carried`) one carried on from an
    earlier run, by continue-as-new or by an operator's order."""

    carried: Continuation | None = Field(None, exclude_if=lambda value: value is None)
    order: OperatorOrder | None = Field(None, exclude_if=lambda value: value is None)
    history_limit: int | None = Field(
        None,
        ge=30,
        exclude_if=lambda value: value is None,
        description="continue-as-new at this history length (tests); otherwise when the server"
        " suggests it",
    )

    @classmethod
    def of(cls, opened: OpenCaseInput, **extra: Any) -> CaseRun:
        return cls.model_validate({**opened.model_dump(exclude_unset=False), **extra})

    def opening_input(self) -> OpenCaseInput:
        return OpenCaseInput.model_validate(
            self.model_dump(exclude={"carried", "order", "history_limit"})
        )


class Receipt(Model):
    """What a command answers: small, so a case's history stays small."""

    case_id: str
    stage: Stage
    step: int = Field(description="the step the command recorded (its audit seq)")
    waiting_for: str
    documents: list[str] = Field(default_factory=list, description="numbers of documents issued")
    outcome: Outcome | None = None


def pending_deadline(state: CaseState) -> PendingDeadline | None:
    """The deadline a supervisor watches now, whatever the stage: the stage's own, else the
    earliest referral deadline while referring, else the handling limit until a decision."""
    if state.stage is Stage.CLOSED:
        return None
    name = STAGE_ROW[state.stage].deadline
    if name is not None and name in state.deadlines:
        return PendingDeadline(name=name, deadline=state.deadlines[name])
    if state.stage is Stage.REFERRING:
        referral = sorted(
            (d.due_at, n) for n, d in state.deadlines.items() if n.startswith("referral:")
        )
        if referral:
            name = referral[0][1]
            return PendingDeadline(name=name, deadline=state.deadlines[name])
    if HANDLING in state.deadlines:
        return PendingDeadline(name=HANDLING, deadline=state.deadlines[HANDLING])
    return None


def reminder_key(name: str, deadline: Deadline) -> str:
    """A deadline's reminders are its own: a replaced deadline (an extension) gets new ones."""
    return f"{name}@{deadline.due_at.isoformat()}"


def apply_step(state: CaseState, record: StepRecord, result: StepResult) -> None:
    """Apply a written step to the case: the workflow after its step activity, and the activity
    itself for the register's snapshot (the state a reopened run starts from)."""
    settled = set(record.settles)
    if record.outcome is not None:
        settled |= set(state.deadlines)
    kept = {name: d for name, d in state.deadlines.items() if name not in settled}
    state.deadlines = {**kept, **result.deadlines}
    live = {reminder_key(name, d) for name, d in state.deadlines.items()}
    state.reminded = {key: days for key, days in state.reminded.items() if key in live}
    state.step = record.seq
    for doc in result.documents:
        state.documents.append(
            DocumentRef(kind=doc.kind, number=doc.number, step=record.seq, issued_at=doc.issued_at)
        )
    state.stage = record.to_stage
    state.waiting_for = waits_for(record.to_stage)
    if record.outcome is not None:
        state.outcome, state.closed_at = record.outcome, record.occurred_at
