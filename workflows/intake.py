"""Intake: the filing decision, interviews, the whole-case handling limit (APL 60), withdrawal."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.case import Interview
    from domain.commands import (
        DecideFiling,
        ExtendFilingDeadline,
        ExtendHandlingLimit,
        FilingDecision,
        RecordInterview,
        RecordNoShow,
        ScheduleInterview,
        Withdraw,
    )
    from domain.models import Outcome, Stage
    from domain.policy import Authority
    from domain.procedure import HANDLING
    from domain.records import DocumentKind
    from workflows.context import SYSTEM, CaseContext, details, document, period, refuse
    from workflows.handlers import handles, on_deadline
    from workflows.penalty import escalate
    from workflows.referral import start_referral

ONE_MINUTE = timedelta(minutes=1)
FILING = "filing"


# --- filing ----------------------------------------------------------------------------------


def _check_filing(case: CaseContext, cmd: DecideFiling) -> None:
    rules = case.policy.rules
    if cmd.summary_disposal and not rules.summary_disposal:
        raise refuse(
            f"cannot dispose summarily: policy {case.policy.version} does not allow it for "
            f"category {case.policy.category}"
        )


@handles("decide_filing", check=_check_filing)
async def decide_filing(case: CaseContext, cmd: DecideFiling) -> None:
    filing = case.state.filing
    filing.decision, filing.decided_at, filing.decided_by = cmd.decision, workflow.now(), cmd.actor
    doc = document(
        DocumentKind.FILING_DECISION, f"Filing decision: {cmd.decision.value}", details(cmd)
    )
    if cmd.decision is FilingDecision.NOT_FILED:
        await case.step(
            "not_filed", cmd.actor, payload=details(cmd), outcome=Outcome.NOT_FILED, documents=[doc]
        )
        return
    if cmd.decision is FilingDecision.TRANSFERRED:
        assert cmd.transfer_to is not None
        await case.step(
            "clue_transferred",
            cmd.actor,
            to=Stage.REFERRING,
            payload=details(cmd),
            documents=[doc],
            settles=[FILING],
        )
        await start_referral(case, cmd.actor, cmd.transfer_to, cmd.reasons, False, Outcome.REFERRED)
        return
    limit = case.policy.limits.handling
    filing.summary_disposal = cmd.summary_disposal
    await case.step(
        "filed_summary_disposal" if cmd.summary_disposal else "filed",
        cmd.actor,
        to=Stage.REFERRING if cmd.summary_disposal else Stage.FILED,
        payload=details(cmd),
        documents=[doc],
        periods=[period(HANDLING, limit.days, limit.kind)],
        settles=[FILING],
    )
    case.start(watch_handling_limit(case))
    if cmd.summary_disposal:
        await start_referral(
            case, cmd.actor, Authority.TELECOM, cmd.reasons, False, Outcome.SHUT_DOWN
        )


def _check_filing_extension(case: CaseContext, cmd: ExtendFilingDeadline) -> None:
    if case.state.filing.extended:
        raise refuse("cannot extend the filing deadline: it was extended once already")


@handles("extend_filing_deadline", check=_check_filing_extension)
async def extend_filing_deadline(case: CaseContext, cmd: ExtendFilingDeadline) -> None:
    """A supervisor grants the filing decision its one extension."""
    old = case.deadline(FILING)
    ext = case.policy.limits.filing_extension
    case.state.filing.extended = True
    await case.step(
        "filing_deadline_extended",
        cmd.actor,
        payload={"reasons": cmd.reasons, "old": old.last_day},
        periods=[period(FILING, ext.days, ext.kind, old.due_at - ONE_MINUTE)],
    )
    if "filing_overdue" in case.state.needs_supervisor:
        case.state.needs_supervisor.remove("filing_overdue")


@on_deadline("flag_filing_overdue")
async def flag_filing_overdue(case: CaseContext) -> None:
    await flag(case, "filing_overdue", case.deadline(FILING).last_day)


async def flag(case: CaseContext, what: str, due: str) -> None:
    """A deadline passed that a person must act on: a supervisor is told, once."""
    if what not in case.state.needs_supervisor:
        case.state.needs_supervisor.append(what)
        await case.note(what, SYSTEM, {"due": due})


# --- interviews --------------------------------------------------------------------------------


def _check_schedule(case: CaseContext, cmd: ScheduleInterview) -> None:
    if cmd.scheduled_for <= workflow.now():
        raise refuse("cannot schedule an interview: scheduled_for is in the past")


@handles("schedule_interview", check=_check_schedule)
async def schedule_interview(case: CaseContext, cmd: ScheduleInterview) -> None:
    interviews = case.state.interviews
    interviews.current = Interview(
        scheduled_for=cmd.scheduled_for,
        place=cmd.place,
        reason=cmd.reason,
        attendees_required=cmd.attendees_required,
    )
    payload = details(cmd) | {"repeat": interviews.held > 0}
    await case.step(
        "interview_scheduled",
        cmd.actor,
        to=Stage.INTERVIEW_SCHEDULED,
        payload=payload,
        documents=[document(DocumentKind.INTERVIEW_NOTICE, "Interview notice", payload)],
    )


def _check_record_interview(case: CaseContext, cmd: RecordInterview) -> None:
    interview = case.state.interviews.current
    assert interview is not None
    if workflow.now() < interview.scheduled_for:
        raise refuse(
            f"cannot record the interview before it is held ({interview.scheduled_for.isoformat()})"
        )


@handles("record_interview", check=_check_record_interview)
async def record_interview(case: CaseContext, cmd: RecordInterview) -> None:
    interviews = case.state.interviews
    assert interviews.current is not None
    interviews.current = interviews.current.model_copy(
        update={
            "held_at": workflow.now(),
            "officials": cmd.officials,
            "attended_by": cmd.attended_by,
            "summary": cmd.summary,
        }
    )
    interviews.held += 1
    payload = details(cmd) | {"interviews_held": interviews.held}
    await case.step(
        "interview_recorded",
        cmd.actor,
        to=Stage.INTERVIEWED,
        payload=payload,
        documents=[document(DocumentKind.INTERVIEW_RECORD, "Interview record", payload)],
    )


@handles("record_no_show")
async def record_no_show(case: CaseContext, cmd: RecordNoShow) -> None:
    """The party did not attend the interview: the case escalates."""
    case.state.interviews.no_shows += 1
    await case.note("interview_no_show", cmd.actor, {"notes": cmd.notes})
    await escalate(case, "the party did not attend the interview", cmd.actor)


# --- the handling limit ------------------------------------------------------------------------


def handling_settled(case: CaseContext) -> bool:
    return HANDLING not in case.state.deadlines


async def watch_handling_limit(case: CaseContext) -> None:
    """Flag a case nearing, then past, the 90-day limit from filing until it is decided."""
    while not handling_settled(case):
        deadline = case.deadline(HANDLING)

        def moved(deadline: object = deadline) -> bool:
            return handling_settled(case) or case.state.deadlines.get(HANDLING) is not deadline

        warn_at = deadline.due_at - timedelta(days=case.policy.limits.handling_warning_days)
        for what, at in (
            ("handling_limit_near", warn_at),
            ("handling_limit_exceeded", deadline.due_at),
        ):
            if what in case.state.handling_flags:
                continue
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    moved,
                    timeout=max(at - workflow.now(), timedelta(seconds=1)),
                    timeout_summary=f"{what.replace('_', ' ')} ({deadline.last_day})",
                )
            if moved():
                break
            async with case.lock:
                if moved():
                    break
                case.state.handling_flags.append(what)
                if what == "handling_limit_exceeded":
                    case.state.needs_supervisor.append(what)
                await case.note(what, SYSTEM, {"limit": deadline.last_day})
        else:
            await workflow.wait_condition(moved)


def _check_extend_limit(case: CaseContext, cmd: ExtendHandlingLimit) -> None:
    if HANDLING not in case.state.deadlines:
        raise refuse("cannot extend the handling limit before the case is filed")


@handles("extend_handling_limit", check=_check_extend_limit)
async def extend_handling_limit(case: CaseContext, cmd: ExtendHandlingLimit) -> None:
    old = case.deadline(HANDLING)
    case.state.handling_flags.clear()
    if "handling_limit_exceeded" in case.state.needs_supervisor:
        case.state.needs_supervisor.remove("handling_limit_exceeded")
    await case.step(
        "handling_limit_extended",
        cmd.actor,
        payload={"reasons": cmd.reasons, "old": old.last_day},
        periods=[period(HANDLING, cmd.days, "calendar", old.due_at - ONE_MINUTE)],
    )


# --- withdrawal ------------------------------------------------------------------------------


def _explain_withdraw(case: CaseContext, cmd: Withdraw) -> None:
    raise refuse(
        f"cannot withdraw the case: a penalty was decided ({case.stage.value}); "
        "it can only be changed by reconsideration or litigation"
    )


@handles("withdraw", explain=_explain_withdraw)
async def withdraw(case: CaseContext, cmd: Withdraw) -> None:
    await case.step("withdrawn", cmd.actor, payload=details(cmd), outcome=Outcome.WITHDRAWN)
