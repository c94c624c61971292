"""Rectification within a time limit: the order, extensions, the report, verification."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.case import ExtensionRequest, RectificationReport, Verification
    from domain.commands import (
        DecideExtension,
        IssueRectificationOrder,
        RecordVerification,
        RequestExtension,
        SubmitRectificationReport,
    )
    from domain.models import Outcome, Stage
    from domain.policy import lenient
    from domain.records import DocumentKind
    from workflows.context import SYSTEM, CaseContext, details, document, period, refuse
    from workflows.handlers import handles, on_deadline
    from workflows.penalty import escalate

RECTIFICATION = "rectification"
ONE_MINUTE = timedelta(minutes=1)


def _check_order(case: CaseContext, cmd: IssueRectificationOrder) -> None:
    policy = case.policy
    if policy.rules.interview_required and case.stage is Stage.FILED:
        raise refuse(
            "cannot issue a rectification order before an interview: policy "
            f"{policy.version} requires one for category {policy.category}"
        )


@handles("issue_rectification_order", check=_check_order)
async def issue_rectification_order(case: CaseContext, cmd: IssueRectificationOrder) -> None:
    rectification = case.state.rectification
    rule = case.policy.rules.rectification
    days = cmd.period_days or rule.days
    rectification.ordered_at, rectification.ordered_by = workflow.now(), cmd.actor
    rectification.requirements, rectification.period_days = cmd.requirements, days
    rectification.round, rectification.interim_suspension = 1, cmd.interim_suspension
    payload = {
        "requirements": cmd.requirements,
        "period_days": days,
        "interim_suspension": cmd.interim_suspension,
    }
    await case.step(
        "rectification_ordered",
        cmd.actor,
        to=Stage.RECTIFYING,
        payload=payload,
        documents=[document(DocumentKind.RECTIFICATION_ORDER, "Rectification order", payload)],
        periods=[period(RECTIFICATION, days, rule.kind)],
    )


@handles("submit_rectification_report")
async def submit_rectification_report(case: CaseContext, cmd: SubmitRectificationReport) -> None:
    case.state.rectification.report = RectificationReport(
        submitted_at=workflow.now(),
        submitted_by=cmd.actor,
        summary=cmd.summary,
        evidence=cmd.evidence,
    )
    await case.step(
        "rectification_reported",
        cmd.actor,
        to=Stage.VERIFYING,
        payload=details(cmd),
        settles=[RECTIFICATION],
    )


# --- extensions ------------------------------------------------------------------------------


def _check_request_extension(case: CaseContext, cmd: RequestExtension) -> None:
    if case.state.rectification.pending_extension is not None:
        raise refuse("cannot request an extension: one is already awaiting a decision")


@handles("request_extension", check=_check_request_extension)
async def request_extension(case: CaseContext, cmd: RequestExtension) -> None:
    case.state.rectification.extensions.append(
        ExtensionRequest(
            requested_at=workflow.now(), requested_by=cmd.actor, days=cmd.days, reasons=cmd.reasons
        )
    )
    case.state.needs_supervisor.append("extension_request")
    await case.note("extension_requested", cmd.actor, details(cmd))


def _check_decide_extension(case: CaseContext, cmd: DecideExtension) -> None:
    if case.state.rectification.pending_extension is None:
        raise refuse("cannot decide on an extension: none was requested")


@handles("decide_extension", check=_check_decide_extension)
async def decide_extension(case: CaseContext, cmd: DecideExtension) -> None:
    request = case.state.rectification.pending_extension
    assert request is not None
    request.decided, request.approved = True, cmd.approved
    if "extension_request" in case.state.needs_supervisor:
        case.state.needs_supervisor.remove("extension_request")
    payload: dict[str, object] = {"approved": cmd.approved, "reasons": cmd.reasons}
    if not cmd.approved:
        await case.note("extension_denied", cmd.actor, payload)
        return
    old = case.deadline(RECTIFICATION)
    request.granted_days = cmd.days or request.days
    # The new deadline replaces the old one: the stage's timer then waits on it, and its
    # reminders go out before it as before any deadline.
    await case.step(
        "extension_approved",
        cmd.actor,
        payload=payload | {"days": request.granted_days, "old_deadline": old.last_day},
        periods=[period(RECTIFICATION, request.granted_days, old.kind, old.due_at - ONE_MINUTE)],
    )


@on_deadline("escalate_missed_rectification")
async def escalate_missed_rectification(case: CaseContext) -> Callable[[], bool] | None:
    pending = case.state.rectification.pending_extension
    if pending is not None:
        # The party asked in time: the supervisor's answer comes first.
        return lambda: pending.decided
    last_day = case.deadline(RECTIFICATION).last_day
    await escalate(
        case,
        f"the rectification deadline ({last_day}) passed without a report",
        SYSTEM,
        settles=[RECTIFICATION],
    )
    return None


# --- verification ----------------------------------------------------------------------------


def _check_verification(case: CaseContext, cmd: RecordVerification) -> None:
    if not cmd.penalize:
        return
    if not cmd.passed:
        raise refuse("penalize goes with a passed verification; a failure escalates anyway")
    severity = case.state.opened.severity
    if lenient(case.policy, severity, True):
        raise refuse(
            f"cannot penalize: {case.policy.leniency.article} — a first {severity.value} "
            "violation corrected in time is not penalized"
        )


@handles("record_verification", check=_check_verification)
async def record_verification(case: CaseContext, cmd: RecordVerification) -> None:
    rectification = case.state.rectification
    rectification.verification = Verification(
        at=workflow.now(), by=cmd.actor, passed=cmd.passed, findings=cmd.findings
    )
    payload = details(cmd)
    if cmd.passed and not cmd.penalize:
        payload["lenient"] = lenient(case.policy, case.state.opened.severity, True)
        await case.step(
            "verification_passed", cmd.actor, payload=payload, outcome=Outcome.RECTIFIED
        )
        return
    await case.note(
        "verification_passed" if cmd.passed else "verification_failed", cmd.actor, payload
    )
    if cmd.passed:
        await escalate(case, "rectified, but the violation calls for a penalty", cmd.actor)
    elif rectification.round < case.policy.rules.verification_rounds:
        await further_round(case, cmd.actor)
    else:
        await escalate(case, "the rectification failed verification", cmd.actor)


async def further_round(case: CaseContext, actor: str) -> None:
    rectification = case.state.rectification
    rectification.round += 1
    rectification.ordered_at = workflow.now()
    rectification.report = None
    rule = case.policy.rules.rectification
    await case.step(
        "rectification_round",
        actor,
        to=Stage.RECTIFYING,
        payload={"round": rectification.round},
        periods=[period(RECTIFICATION, rule.days, rule.kind)],
    )
