"""Every command a case takes, as POST /cases/{case_id}/…, each mapped to a workflow update.

One table, one route factory: the body model of each route is the update's own input model, so
the OpenAPI schema and the validation are exactly the workflow's. A refusal is 409 with the
validator's reason; an unknown case 404; a bad body 422; a case that does not answer 504.
"""

# No `from __future__ import annotations`: FastAPI reads each generated route's body annotation.
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from fastapi import APIRouter, Path

from api.auth import Caller
from api.case_calls import COMMAND_RESPONSES, send_command
from api.deps import AppSettings, DbPool, TemporalClient
from api.examples import COMMAND_EXAMPLES, REFERRAL_STEP_EXAMPLE, body_example
from api.schemas import ReferralStep
from domain.models import CaseState as CaseStateModel
from domain.models import (
    DecideFine,
    IssueRectificationOrder,
    RecordInterview,
    RecordVerification,
    ScheduleInterview,
    SubmitRectificationReport,
)
from domain.procedure_models import (
    DealWithResponsiblePersons,
    DecideExtension,
    DecideFiling,
    DecidePenalty,
    ExtendFilingDeadline,
    ExtendHandlingLimit,
    NotifyPenalty,
    OpenPenaltyProcedure,
    RecordAppeal,
    RecordHearing,
    RecordInvestigationReport,
    RecordNoShow,
    RecordPayment,
    RecordReview,
    RecordStatement,
    Refer,
    ReferralAction,
    RequestExtension,
    RequestHearing,
    ScheduleHearing,
    ServeDecision,
    Withdraw,
)
from workflows.case import CaseWorkflow

router = APIRouter(prefix="/cases", tags=["commands"], responses=COMMAND_RESPONSES)


class Command(NamedTuple):
    path: str
    update: Any
    body: type
    summary: str


COMMANDS = [
    Command(
        "filing-decision",
        CaseWorkflow.decide_filing,
        DecideFiling,
        "File the case, decline it, or transfer the clue (summary disposal for illegal sites)",
    ),
    Command(
        "filing-deadline-extension",
        CaseWorkflow.extend_filing_deadline,
        ExtendFilingDeadline,
        "A supervisor extends the filing-decision deadline once",
    ),
    Command(
        "interview/schedule",
        CaseWorkflow.schedule_interview,
        ScheduleInterview,
        "Give notice of an interview (reason, time, place, who must attend)",
    ),
    Command(
        "interview/record",
        CaseWorkflow.record_interview,
        RecordInterview,
        "Record the interview held (two officials at least)",
    ),
    Command(
        "interview/no-show",
        CaseWorkflow.record_no_show,
        RecordNoShow,
        "The party did not attend: the case escalates",
    ),
    Command(
        "rectification-order",
        CaseWorkflow.issue_rectification_order,
        IssueRectificationOrder,
        "Order rectification within a time limit",
    ),
    Command(
        "extension-request",
        CaseWorkflow.request_extension,
        RequestExtension,
        "The party asks for more time to rectify",
    ),
    Command(
        "extension-decision",
        CaseWorkflow.decide_extension,
        DecideExtension,
        "A supervisor approves (new deadline) or denies the extension",
    ),
    Command(
        "rectification-report",
        CaseWorkflow.submit_rectification_report,
        SubmitRectificationReport,
        "The party's rectification report, with evidence",
    ),
    Command(
        "verification",
        CaseWorkflow.record_verification,
        RecordVerification,
        "Verify the rectification: pass closes, fail escalates or gives another round",
    ),
    Command(
        "penalty-procedure",
        CaseWorkflow.open_penalty_procedure,
        OpenPenaltyProcedure,
        "Open the penalty procedure on the policy's next measure",
    ),
    Command(
        "investigation-report",
        CaseWorkflow.record_investigation_report,
        RecordInvestigationReport,
        "The investigation report (may propose the measure)",
    ),
    Command(
        "legal-review",
        CaseWorkflow.record_legal_review,
        RecordReview,
        "The legal review of a major case (APL 58)",
    ),
    Command(
        "collective-decision",
        CaseWorkflow.record_collective_decision,
        RecordReview,
        "The leadership's collective decision on a complex or major case",
    ),
    Command(
        "penalty-notice",
        CaseWorkflow.notify_penalty,
        NotifyPenalty,
        "Prior notice of the proposed penalty with facts, reasons, basis, rights (APL 44)",
    ),
    Command(
        "statements",
        CaseWorkflow.record_statement,
        RecordStatement,
        "The party's statement and defence",
    ),
    Command(
        "hearing-request",
        CaseWorkflow.request_hearing,
        RequestHearing,
        "The party asks for a hearing (within 5 working days, APL 64)",
    ),
    Command(
        "hearing/schedule",
        CaseWorkflow.schedule_hearing,
        ScheduleHearing,
        "Schedule the hearing at least 7 working days ahead",
    ),
    Command(
        "hearing/record", CaseWorkflow.record_hearing, RecordHearing, "Record the hearing held"
    ),
    Command(
        "penalty-decision",
        CaseWorkflow.decide_penalty,
        DecidePenalty,
        "Decide the penalty: never heavier than the prior notice (APL 45)",
    ),
    Command(
        "service",
        CaseWorkflow.serve_decision,
        ServeDecision,
        "Record service of the decision on the party",
    ),
    Command(
        "payments",
        CaseWorkflow.record_payment,
        RecordPayment,
        "Record payment of the fine (and any late surcharge)",
    ),
    Command(
        "appeals",
        CaseWorkflow.record_appeal,
        RecordAppeal,
        "Reconsideration or litigation filed or concluded (pauses the surcharge)",
    ),
    Command(
        "referrals",
        CaseWorkflow.refer,
        Refer,
        "Refer the case to another authority (criminal clues to the police)",
    ),
    Command(
        "withdrawal",
        CaseWorkflow.withdraw,
        Withdraw,
        "Withdraw the case: no violation, or facts not proven",
    ),
    Command(
        "handling-limit-extension",
        CaseWorkflow.extend_handling_limit,
        ExtendHandlingLimit,
        "A supervisor extends the 90-day handling limit (APL 60)",
    ),
    Command(
        "responsible-persons",
        CaseWorkflow.deal_with_responsible_persons,
        DealWithResponsiblePersons,
        "Record measures against responsible persons",
    ),
    Command(
        "fine-decision",
        CaseWorkflow.decide_fine,
        DecideFine,
        "First-version cases only: decide the fine after the warning",
    ),
]

REFERRAL_STEPS = [
    ("approval", CaseWorkflow.approve_referral, "The agency head approves a criminal referral"),
    ("transfer", CaseWorkflow.record_transfer, "The approved case is transferred (24 hours)"),
    (
        "acknowledgement",
        CaseWorkflow.acknowledge_referral,
        "The other authority acknowledged receipt",
    ),
]

Endpoint = Callable[..., Awaitable[CaseStateModel]]


def _command_route(command: Command) -> Endpoint:
    body_model = command.body

    async def endpoint(
        case_id: str,
        body: body_model,  # type: ignore[valid-type]
        client: TemporalClient,
        pool: DbPool,
        settings: AppSettings,
        caller: Caller,
    ) -> CaseStateModel:
        return await send_command(client, pool, settings, case_id, command.update, body, by=caller)

    endpoint.__name__ = command.update.__name__
    return endpoint


def _referral_route(update: Any) -> Endpoint:
    async def endpoint(
        case_id: str,
        body: ReferralStep,
        client: TemporalClient,
        pool: DbPool,
        settings: AppSettings,
        caller: Caller,
        referral_id: int = Path(ge=1, le=10_000),
    ) -> CaseStateModel:
        action = ReferralAction(actor=body.actor, referral_id=referral_id, notes=body.notes)
        return await send_command(client, pool, settings, case_id, update, action, by=caller)

    endpoint.__name__ = update.__name__
    return endpoint


for _command in COMMANDS:
    router.add_api_route(
        f"/{{case_id}}/{_command.path}",
        _command_route(_command),
        methods=["POST"],
        response_model=CaseStateModel,
        summary=_command.summary,
        openapi_extra=body_example(COMMAND_EXAMPLES[_command.path]),
    )

for _step, _update, _summary in REFERRAL_STEPS:
    router.add_api_route(
        f"/{{case_id}}/referrals/{{referral_id}}/{_step}",
        _referral_route(_update),
        methods=["POST"],
        response_model=CaseStateModel,
        summary=_summary,
        openapi_extra=body_example(REFERRAL_STEP_EXAMPLE),
    )
