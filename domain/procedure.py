"""The enforcement procedure as data: one row per command, one row per stage.

Everything else is derived from these two tables, never restated: the workflow's updates and the
stage check of their validators (workflows/case.py), the API's command routes and their access
rules (api/routes/commands.py, api/auth.py), the OpenAPI examples, the test driver's defaults and
the procedure diagram (docs/procedure.md, `python -m domain.diagram`). Adding a command is one
row here, one handler function in workflows/ (registered under the row's name), and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.commands import (
    DealWithResponsiblePersons,
    DecideExtension,
    DecideFiling,
    DecidePenalty,
    ExtendFilingDeadline,
    ExtendHandlingLimit,
    IssueRectificationOrder,
    NotifyPenalty,
    OpenPenaltyProcedure,
    RecordAppeal,
    RecordHearing,
    RecordInterview,
    RecordInvestigationReport,
    RecordNoShow,
    RecordPayment,
    RecordReview,
    RecordStatement,
    RecordVerification,
    Refer,
    ReferralAction,
    ReferralStep,
    RequestExtension,
    RequestHearing,
    ScheduleHearing,
    ScheduleInterview,
    ServeDecision,
    SubmitRectificationReport,
    Withdraw,
)
from domain.models import CaseCommand, Model, Stage
from domain.roles import Role

S = Stage
OPEN_STAGES = frozenset(Stage) - {Stage.CLOSED}
UNDECIDED = frozenset(
    {
        S.FILING,
        S.FILED,
        S.INTERVIEW_SCHEDULED,
        S.INTERVIEWED,
        S.RECTIFYING,
        S.VERIFYING,
        S.INVESTIGATING,
        S.LEGAL_REVIEW,
        S.COLLECTIVE_DECISION,
        S.NOTICE_PENDING,
        S.DEFENCE,
        S.HEARING_SCHEDULING,
        S.HEARING_SCHEDULED,
        S.DECISION_PENDING,
    }
)
"""Stages before a penalty is decided: a case can still be withdrawn."""

STATEMENT_STAGES = frozenset({S.DEFENCE, S.HEARING_SCHEDULING, S.HEARING_SCHEDULED})
APPEAL_STAGES = frozenset({S.SERVICE_PENDING, S.PAYMENT_PENDING, S.ENFORCEMENT})

OFFICER = "officer.li"
SUPERVISOR = "director.wang"
PARTY = "party:example-news"
AT = "2026-12-01T10:00:00+08:00"


@dataclass(frozen=True)
class Command:
    """One command a case takes."""

    name: str  # the workflow update, and the handler registered for it in workflows/
    path: str  # POST /cases/{case_id}/<path>
    body: type[CaseCommand]  # the update's input model
    stages: frozenset[Stage]  # the stages it may be given in
    role: Role  # who gives it (an admin may give anything)
    summary: str  # "What: more" — `what` names the command in refusals
    example: dict[str, Any]  # a realistic HTTP body, shown at /docs
    http_body: type[Model] | None = None  # when the HTTP body differs (path parameters)
    to: tuple[Stage, ...] = field(default=())  # where it can move the case (the diagram)

    @property
    def what(self) -> str:
        """The command in words, for refusals: 'decide on filing'."""
        head = self.summary.split(":", 1)[0]
        return head[0].lower() + head[1:]


@dataclass(frozen=True)
class StageRow:
    """One stage: what the case waits for there, and the deadline the workflow acts on."""

    stage: Stage
    waits_for: str
    deadline: str | None = None  # the case's deadline (by name) that is pending here
    on_deadline: str | None = None  # what the workflow does when it passes (a timer)
    reminders: bool = False  # the policy's reminders go out before it


def _cmd(
    name: str,
    path: str,
    body: type[CaseCommand],
    stages: frozenset[Stage] | set[Stage],
    summary: str,
    example: dict[str, Any],
    *,
    role: Role = Role.OFFICER,
    to: tuple[Stage, ...] = (),
    http_body: type[Model] | None = None,
) -> Command:
    return Command(name, path, body, frozenset(stages), role, summary, example, http_body, to)


COMMANDS: tuple[Command, ...] = (
    _cmd(
        "decide_filing",
        "filing-decision",
        DecideFiling,
        {S.FILING},
        "Decide on filing: file the case, decline it, or transfer the clue",
        {"actor": OFFICER, "decision": "filed", "reasons": "Monitoring evidence of a violation."},
        to=(S.FILED, S.REFERRING, S.CLOSED),
    ),
    _cmd(
        "extend_filing_deadline",
        "filing-deadline-extension",
        ExtendFilingDeadline,
        {S.FILING},
        "Extend the filing deadline: once, by a supervisor",
        {"actor": SUPERVISOR, "reasons": "Evidence from three platforms still to collect."},
        role=Role.SUPERVISOR,
    ),
    _cmd(
        "schedule_interview",
        "interview/schedule",
        ScheduleInterview,
        {S.FILED, S.INTERVIEWED},
        "Schedule an interview: notice of reason, time, place and who must attend",
        {
            "actor": OFFICER,
            "scheduled_for": "2026-12-08T09:30:00+08:00",
            "place": "Beijing office, room 3",
            "reason": "Prohibited information on the home page",
            "attendees_required": ["editor-in-chief"],
        },
        to=(S.INTERVIEW_SCHEDULED,),
    ),
    _cmd(
        "record_interview",
        "interview/record",
        RecordInterview,
        {S.INTERVIEW_SCHEDULED},
        "Record the interview: held by two officials at least, not before its time",
        {
            "actor": OFFICER,
            "officials": ["officer.li", "officer.wang"],
            "attended_by": ["editor-in-chief Zhang"],
            "summary": "The party admitted the facts and will rectify.",
        },
        to=(S.INTERVIEWED,),
    ),
    _cmd(
        "record_no_show",
        "interview/no-show",
        RecordNoShow,
        {S.INTERVIEW_SCHEDULED},
        "Record a no-show: the party did not attend, the case escalates",
        {"actor": OFFICER, "notes": "Nobody attended; no excuse received."},
        to=(S.INVESTIGATING, S.REFERRING),
    ),
    _cmd(
        "issue_rectification_order",
        "rectification-order",
        IssueRectificationOrder,
        {S.FILED, S.INTERVIEWED},
        "Issue a rectification order: rectify within a time limit",
        {
            "actor": OFFICER,
            "requirements": "Remove the items; fix the review workflow.",
            "interim_suspension": False,
        },
        to=(S.RECTIFYING,),
    ),
    _cmd(
        "request_extension",
        "extension-request",
        RequestExtension,
        {S.RECTIFYING},
        "Request an extension: the party asks for more time to rectify",
        {"actor": PARTY, "days": 5, "reasons": "The review system is being migrated."},
    ),
    _cmd(
        "decide_extension",
        "extension-decision",
        DecideExtension,
        {S.RECTIFYING},
        "Decide on the extension: a supervisor approves (new deadline) or denies it",
        {
            "actor": SUPERVISOR,
            "approved": True,
            "days": 5,
            "reasons": "A reasonable request made in time.",
        },
        role=Role.SUPERVISOR,
    ),
    _cmd(
        "submit_rectification_report",
        "rectification-report",
        SubmitRectificationReport,
        {S.RECTIFYING},
        "Accept a rectification report: the party's report, with evidence",
        {
            "actor": PARTY,
            "summary": "All 37 items removed; reviewers added.",
            "evidence": ["removal-log.pdf", "review-policy-v2.pdf"],
        },
        to=(S.VERIFYING,),
    ),
    _cmd(
        "record_verification",
        "verification",
        RecordVerification,
        {S.VERIFYING},
        "Record a verification: pass closes, fail escalates or gives another round",
        {
            "actor": "officer.wang",
            "passed": True,
            "findings": "Checked on 12 Dec: items gone, workflow in place.",
        },
        to=(S.CLOSED, S.RECTIFYING, S.INVESTIGATING, S.REFERRING),
    ),
    _cmd(
        "open_penalty_procedure",
        "penalty-procedure",
        OpenPenaltyProcedure,
        {S.FILED, S.INTERVIEW_SCHEDULED, S.INTERVIEWED, S.RECTIFYING},
        "Open the penalty procedure: on the policy's next measure",
        {"actor": OFFICER, "reasons": "Repeated violations after an earlier warning."},
        to=(S.INVESTIGATING, S.REFERRING),
    ),
    _cmd(
        "record_investigation_report",
        "investigation-report",
        RecordInvestigationReport,
        {S.INVESTIGATING},
        "Record the investigation report: it may propose the measure",
        {
            "actor": OFFICER,
            "facts": "37 items between 1 and 20 Nov.",
            "evidence": ["snapshot-123", "log-export-7"],
        },
        to=(S.LEGAL_REVIEW, S.COLLECTIVE_DECISION, S.NOTICE_PENDING),
    ),
    _cmd(
        "record_legal_review",
        "legal-review",
        RecordReview,
        {S.LEGAL_REVIEW},
        "Record the legal review: of a major case (APL 58)",
        {
            "actor": "legal.reviewer",
            "approved": True,
            "opinion": "Facts clear, evidence sufficient, basis correct.",
        },
        role=Role.SUPERVISOR,
        to=(S.COLLECTIVE_DECISION, S.NOTICE_PENDING, S.INVESTIGATING),
    ),
    _cmd(
        "record_collective_decision",
        "collective-decision",
        RecordReview,
        {S.COLLECTIVE_DECISION},
        "Record the collective decision: the leadership's, on a complex or major case",
        {
            "actor": SUPERVISOR,
            "approved": True,
            "opinion": "Agreed: fine within the range.",
            "participants": ["director.wang", "deputy.chen", "deputy.zhou"],
        },
        role=Role.SUPERVISOR,
        to=(S.NOTICE_PENDING, S.INVESTIGATING),
    ),
    _cmd(
        "notify_penalty",
        "penalty-notice",
        NotifyPenalty,
        {S.NOTICE_PENDING},
        "Give prior notice of the proposed penalty: facts, reasons, basis, rights (APL 44)",
        {
            "actor": OFFICER,
            "measure": "fine",
            "fine_yuan": "30000",
            "facts": "37 items of prohibited information.",
            "reasons": "Content review duties neglected.",
            "legal_basis": "Cybersecurity Law art. 61",
        },
        to=(S.DEFENCE,),
    ),
    _cmd(
        "record_statement",
        "statements",
        RecordStatement,
        STATEMENT_STAGES,
        "Record a statement: the party's statement and defence (or its written waiver)",
        {
            "actor": PARTY,
            "statement": "We accept the facts and ask for leniency.",
            "waive_rights": False,
        },
        to=(S.DECISION_PENDING,),
    ),
    _cmd(
        "request_hearing",
        "hearing-request",
        RequestHearing,
        {S.DEFENCE},
        "Accept a hearing request: the party asks within 5 working days (APL 64)",
        {"actor": PARTY},
        to=(S.HEARING_SCHEDULING,),
    ),
    _cmd(
        "schedule_hearing",
        "hearing/schedule",
        ScheduleHearing,
        {S.HEARING_SCHEDULING},
        "Schedule the hearing: at least 7 working days ahead",
        {
            "actor": OFFICER,
            "hearing_at": "2026-12-21T09:30:00+08:00",
            "place": "Hearing room 1",
            "chair": "hearing.chair.sun",
        },
        to=(S.HEARING_SCHEDULED,),
    ),
    _cmd(
        "record_hearing",
        "hearing/record",
        RecordHearing,
        {S.HEARING_SCHEDULED},
        "Record the hearing: as held",
        {"actor": "hearing.chair.sun", "record": "Both sides heard.", "attended": True},
        to=(S.DECISION_PENDING,),
    ),
    _cmd(
        "decide_penalty",
        "penalty-decision",
        DecidePenalty,
        {S.DECISION_PENDING},
        "Decide the penalty: never heavier than the prior notice (APL 45)",
        {
            "actor": SUPERVISOR,
            "measure": "fine",
            "fine_yuan": "30000",
            "reasons": "Facts proven; no mitigation offered.",
            "legal_basis": "Cybersecurity Law art. 61",
        },
        role=Role.SUPERVISOR,
        to=(S.SERVICE_PENDING,),
    ),
    _cmd(
        "serve_decision",
        "service",
        ServeDecision,
        {S.SERVICE_PENDING},
        "Serve the decision: record its service on the party",
        {"actor": OFFICER, "served_at": AT, "method": "direct"},
        to=(S.PAYMENT_PENDING, S.REFERRING, S.CLOSED),
    ),
    _cmd(
        "record_payment",
        "payments",
        RecordPayment,
        {S.PAYMENT_PENDING, S.ENFORCEMENT},
        "Record a payment: the fine and any late surcharge",
        {"actor": OFFICER, "amount_yuan": "30000", "paid_at": AT},
        to=(S.CLOSED,),
    ),
    _cmd(
        "record_appeal",
        "appeals",
        RecordAppeal,
        APPEAL_STAGES,
        "Record an appeal: reconsideration or litigation filed or concluded",
        {"actor": OFFICER, "kind": "reconsideration", "event": "filed", "at": AT},
    ),
    _cmd(
        "refer",
        "referrals",
        Refer,
        UNDECIDED | {S.SERVICE_PENDING, S.PAYMENT_PENDING},
        "Refer the case: to another authority (criminal clues to the police)",
        {
            "actor": OFFICER,
            "authority": "telecom_authority",
            "reasons": "Shut down the site and cancel its ICP filing.",
            "criminal": False,
        },
    ),
    _cmd(
        "approve_referral",
        "referrals/{referral_id}/approval",
        ReferralAction,
        OPEN_STAGES,
        "Approve the referral: the agency head approves a criminal referral",
        {"actor": "agency.head", "notes": "Approved."},
        role=Role.SUPERVISOR,
        http_body=ReferralStep,
    ),
    _cmd(
        "record_transfer",
        "referrals/{referral_id}/transfer",
        ReferralAction,
        OPEN_STAGES,
        "Transfer the case: the approved referral is sent within 24 hours",
        {"actor": OFFICER, "notes": "Sent by courier."},
        http_body=ReferralStep,
    ),
    _cmd(
        "acknowledge_referral",
        "referrals/{referral_id}/acknowledgement",
        ReferralAction,
        OPEN_STAGES,
        "Acknowledge the referral: the other authority confirmed receipt",
        {"actor": OFFICER, "notes": "Receipt no. 2026-118."},
        http_body=ReferralStep,
        to=(S.CLOSED,),
    ),
    _cmd(
        "withdraw",
        "withdrawal",
        Withdraw,
        UNDECIDED,
        "Withdraw the case: no violation, or facts not proven",
        {
            "actor": OFFICER,
            "ground": "facts_not_proven",
            "reasons": "The screenshots cannot be tied to the party.",
        },
        to=(S.CLOSED,),
    ),
    _cmd(
        "extend_handling_limit",
        "handling-limit-extension",
        ExtendHandlingLimit,
        UNDECIDED - {S.FILING},
        "Extend the handling limit: the 90 days from filing (a supervisor, APL 60)",
        {"actor": SUPERVISOR, "days": 30, "reasons": "Cross-border evidence still pending."},
        role=Role.SUPERVISOR,
    ),
    _cmd(
        "deal_with_responsible_persons",
        "responsible-persons",
        DealWithResponsiblePersons,
        OPEN_STAGES,
        "Deal with responsible persons: record measures against them",
        {
            "actor": OFFICER,
            "persons": [
                {
                    "name": "Zhang San",
                    "role": "editor-in-chief",
                    "measure": "warning",
                    "notes": "Internal warning recorded by the platform.",
                }
            ],
        },
    ),
)

STAGES: tuple[StageRow, ...] = (
    StageRow(S.FILING, "the filing decision", "filing", on_deadline="flag_filing_overdue"),
    StageRow(S.FILED, "an interview, a rectification order or the penalty procedure"),
    StageRow(S.INTERVIEW_SCHEDULED, "the interview to be held and recorded"),
    StageRow(S.INTERVIEWED, "a rectification order (or another interview)"),
    StageRow(
        S.RECTIFYING,
        "the party's rectification report, or the deadline",
        "rectification",
        on_deadline="escalate_missed_rectification",
        reminders=True,
    ),
    StageRow(S.VERIFYING, "an officer's verification of the report"),
    StageRow(S.INVESTIGATING, "the investigation report"),
    StageRow(S.LEGAL_REVIEW, "the legal review"),
    StageRow(S.COLLECTIVE_DECISION, "the leadership's collective decision"),
    StageRow(S.NOTICE_PENDING, "the prior notice of the proposed penalty"),
    StageRow(
        S.DEFENCE,
        "the party's statement, defence or hearing request, or the window to end",
        "defence",
        on_deadline="close_defence_window",
    ),
    StageRow(S.HEARING_SCHEDULING, "the hearing to be scheduled"),
    StageRow(S.HEARING_SCHEDULED, "the hearing to be held and recorded"),
    StageRow(S.DECISION_PENDING, "the penalty decision"),
    StageRow(
        S.SERVICE_PENDING,
        "service of the decision on the party",
        "service",
        on_deadline="flag_service_overdue",
    ),
    StageRow(
        S.PAYMENT_PENDING,
        "payment of the fine",
        "payment",
        on_deadline="send_payment_reminder",
        reminders=True,
    ),
    StageRow(
        S.ENFORCEMENT,
        "payment, or the court enforcement application",
        "enforcement",
        on_deadline="apply_for_enforcement",
    ),
    StageRow(S.REFERRING, "the other authority's acknowledgement"),
    StageRow(S.CLOSED, "nothing: the case is closed"),
)

COMMAND_BY_NAME: dict[str, Command] = {command.name: command for command in COMMANDS}
STAGE_ROW: dict[Stage, StageRow] = {row.stage: row for row in STAGES}

HANDLING = "handling"  # the 90-day limit from filing (APL 60): pending until a decision


def waits_for(stage: Stage) -> str:
    return STAGE_ROW[stage].waits_for


def commands_at(stage: Stage) -> list[Command]:
    """The commands a case at this stage can be given."""
    return [command for command in COMMANDS if stage in command.stages]


def _check_tables() -> None:
    """The tables describe every stage once and name every command once."""
    missing = set(Stage) - set(STAGE_ROW)
    if missing or len(STAGE_ROW) != len(STAGES):
        raise AssertionError(f"stage table: missing or repeated {sorted(missing)}")
    if len(COMMAND_BY_NAME) != len(COMMANDS) or len({c.path for c in COMMANDS}) != len(COMMANDS):
        raise AssertionError("command table: a name or a path is repeated")


_check_tables()
