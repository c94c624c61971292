"""The penalty procedure and its safeguards: escalation, investigation, legal review, collective
decision, prior notice, statement and defence, hearing, and the decision (what follows it is in
workflows/performance.py)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.case import Penalty
    from domain.commands import (
        DecidePenalty,
        NotifyPenalty,
        OpenPenaltyProcedure,
        PenaltyTerms,
        RecordHearing,
        RecordInvestigationReport,
        RecordReview,
        RecordStatement,
        RequestHearing,
        ScheduleHearing,
    )
    from domain.models import Outcome, Stage
    from domain.policy import (
        Measure,
        Rung,
        fine_range,
        hearing_right,
        heavier_than_notice,
        persons_heavier_than_notice,
        rung_at,
        starting_rung,
    )
    from domain.procedure import HANDLING
    from domain.records import DocumentKind
    from workflows.context import SYSTEM, CaseContext, details, document, local_day, period, refuse
    from workflows.handlers import handles, on_deadline
    from workflows.referral import start_referral

DEFENCE, STATEMENT, HEARING_REQUEST = "defence", "statement_and_defence", "hearing_request"
SERVICE = "service"


def yuan(amount: Decimal) -> str:
    """Money as the documents print it: ¥1,234.50."""
    return f"¥{amount:,.2f}"


def penalty_of(case: CaseContext, what: str) -> Penalty:
    if case.state.penalty is None:
        raise refuse(f"cannot {what}: no penalty procedure is open")
    return case.state.penalty


# --- escalation ------------------------------------------------------------------------------


async def escalate(case: CaseContext, reason: str, actor: str, settles: Iterable[str] = ()) -> None:
    """Climb the policy's ladder: its next measure, through the penalty procedure, or a
    referral when the measure is one."""
    state, policy = case.state, case.policy
    state.escalations += 1
    index = starting_rung(policy) + state.escalations - 1
    rung = rung_at(policy, index)
    payload = {"reason": reason, "rung": index, "measure": rung.measure.value}
    if rung.measure is Measure.REFERRAL:
        assert rung.authority is not None
        await case.step(
            "escalated_to_referral", actor, to=Stage.REFERRING, payload=payload, settles=settles
        )
        await start_referral(case, actor, rung.authority, reason, True, Outcome.REFERRED)
        return
    severity, safeguards = state.opened.severity, policy.safeguards
    state.penalty = Penalty(
        opened_at=workflow.now(),
        reason=reason,
        rung=min(index, len(policy.rules.ladder) - 1),
        measure=rung.measure,
        legal_review_required=severity in safeguards.legal_review_severities,
        collective_decision_required=severity in safeguards.collective_decision_severities,
    )
    await case.step(
        "penalty_procedure_opened",
        actor,
        to=Stage.INVESTIGATING,
        payload=payload,
        settles=settles,
    )


@handles("open_penalty_procedure")
async def open_penalty_procedure(case: CaseContext, cmd: OpenPenaltyProcedure) -> None:
    await escalate(case, cmd.reasons, cmd.actor, settles=["rectification"])


# --- before the notice -----------------------------------------------------------------------


def rung_for(case: CaseContext, what: str, measure: Measure) -> Rung:
    for rung in reversed(case.policy.rules.ladder):
        if rung.measure is measure:
            return rung
    raise refuse(
        f"cannot {what} {measure.value}: policy {case.policy.version} has no such measure "
        f"for category {case.policy.category}"
    )


def _check_investigation(case: CaseContext, cmd: RecordInvestigationReport) -> None:
    penalty_of(case, "record the investigation report")
    if cmd.proposed_measure is not None:
        rung_for(case, "propose", cmd.proposed_measure)


@handles("record_investigation_report", check=_check_investigation)
async def record_investigation_report(case: CaseContext, cmd: RecordInvestigationReport) -> None:
    penalty = penalty_of(case, "record the investigation report")
    penalty.investigation = cmd
    if cmd.proposed_measure is not None:
        penalty.measure = cmd.proposed_measure
    if penalty.legal_review_required:
        after = Stage.LEGAL_REVIEW
    elif penalty.collective_decision_required:
        after = Stage.COLLECTIVE_DECISION
    else:
        after = Stage.NOTICE_PENDING
    payload = details(cmd)
    await case.step(
        "investigation_reported",
        cmd.actor,
        to=after,
        payload=payload,
        documents=[document(DocumentKind.INVESTIGATION_REPORT, "Investigation report", payload)],
    )


@handles("record_legal_review", check=lambda case, cmd: penalty_of(case, "record the review"))
async def record_legal_review(case: CaseContext, cmd: RecordReview) -> None:
    penalty = penalty_of(case, "record the legal review")
    if not cmd.approved:
        after = Stage.INVESTIGATING
    elif penalty.collective_decision_required:
        after = Stage.COLLECTIVE_DECISION
    else:
        after = Stage.NOTICE_PENDING
    await case.step(
        "legal_review_approved" if cmd.approved else "legal_review_returned",
        cmd.actor,
        to=after,
        payload=details(cmd),
    )


def _check_collective(case: CaseContext, cmd: RecordReview) -> None:
    penalty_of(case, "record the collective decision")
    if len(cmd.participants) < 3:
        raise refuse("a collective decision names at least three participating leaders")


@handles("record_collective_decision", check=_check_collective)
async def record_collective_decision(case: CaseContext, cmd: RecordReview) -> None:
    await case.step(
        "collective_decision_approved" if cmd.approved else "collective_decision_returned",
        cmd.actor,
        to=Stage.NOTICE_PENDING if cmd.approved else Stage.INVESTIGATING,
        payload=details(cmd),
    )


# --- prior notice, defence, hearing ----------------------------------------------------------


def check_terms(case: CaseContext, what: str, terms: PenaltyTerms) -> Rung:
    rung = rung_for(case, what, terms.measure)
    ladder = case.policy.rules.ladder
    if terms.measure is Measure.FINE:
        assert terms.fine_yuan is not None
        ranges = [
            fine_range(r, terms.prior_year_turnover_yuan)
            for r in ladder
            if r.measure is Measure.FINE
        ]
        if not any(low <= terms.fine_yuan <= high for low, high in ranges):
            allowed = ", ".join(f"{yuan(low)} to {yuan(high)}" for low, high in ranges)
            raise refuse(
                f"cannot {what} a fine of {yuan(terms.fine_yuan)}: outside the policy's range "
                f"({allowed}; {rung.article})"
            )
    person_ranges = [
        (r.person_min_yuan, r.person_max_yuan)
        for r in ladder
        if r.person_min_yuan is not None and r.person_max_yuan is not None
    ]
    for person in terms.responsible_persons:
        if person.fine_yuan is None:
            continue
        if not any(low <= person.fine_yuan <= high for low, high in person_ranges):
            raise refuse(
                f"cannot {what} a fine of {yuan(person.fine_yuan)} on {person.name}: outside "
                "the policy's range for responsible persons"
            )
    return rung


def _check_notice(case: CaseContext, cmd: NotifyPenalty) -> None:
    penalty_of(case, "give prior notice")
    check_terms(case, "propose", cmd)


@handles("notify_penalty", check=_check_notice)
async def notify_penalty(case: CaseContext, cmd: NotifyPenalty) -> None:
    penalty = penalty_of(case, "give prior notice")
    safeguards = case.policy.safeguards
    penalty.notice, penalty.notice_at, penalty.measure = cmd, workflow.now(), cmd.measure
    penalty.hearing_right = hearing_right(
        case.policy, cmd.measure, cmd.fine_yuan, case.state.opened.subject.kind
    )
    defence = safeguards.statement_and_defence
    periods = [period(STATEMENT, defence.days, defence.kind)]
    if penalty.hearing_right:
        hearing = safeguards.hearing_request
        periods.append(period(HEARING_REQUEST, hearing.days, hearing.kind))
    payload = details(cmd) | {"hearing_right": penalty.hearing_right}
    result = await case.step(
        "prior_notice_given",
        cmd.actor,
        to=Stage.DEFENCE,
        payload=payload,
        documents=[
            document(DocumentKind.PRIOR_NOTICE, "Prior notice of administrative penalty", payload)
        ],
        periods=periods,
        pending_periods=[p.name for p in periods],
    )
    # The window for statement and defence closes with the later of its two periods.
    window = max(result.deadlines.values(), key=lambda d: d.due_at)
    deadlines = case.state.deadlines
    deadlines.pop(STATEMENT, None)
    deadlines[DEFENCE] = window
    case.show()


@on_deadline("close_defence_window")
async def close_defence_window(case: CaseContext) -> None:
    penalty = penalty_of(case, "close the defence window")
    await case.step(
        "defence_window_closed",
        SYSTEM,
        to=Stage.DECISION_PENDING,
        payload={"statements": len(penalty.statements), "ended": case.deadline(DEFENCE).last_day},
        settles=[DEFENCE, HEARING_REQUEST],
    )


def _check_statement(case: CaseContext, cmd: RecordStatement) -> None:
    penalty_of(case, "record a statement")
    if cmd.waive_rights and case.stage is not Stage.DEFENCE:
        raise refuse(
            "cannot waive the rights now: a hearing was requested; it is held, or the "
            "party withdraws the request in writing (record it at the hearing)"
        )


@handles("record_statement", check=_check_statement)
async def record_statement(case: CaseContext, cmd: RecordStatement) -> None:
    penalty_of(case, "record a statement").statements.append(cmd.statement)
    if cmd.waive_rights:
        await case.step(
            "rights_waived",
            cmd.actor,
            to=Stage.DECISION_PENDING,
            payload={"statement": cmd.statement, "waive_rights": True},
            settles=[DEFENCE, HEARING_REQUEST],
        )
        return
    await case.note("statement_recorded", cmd.actor, {"statement": cmd.statement})


def _check_hearing_request(case: CaseContext, cmd: RequestHearing) -> None:
    penalty = penalty_of(case, "accept a hearing request")
    deadline = case.state.deadlines.get(HEARING_REQUEST)
    if not penalty.hearing_right or deadline is None:
        raise refuse("cannot accept a hearing request: the proposed penalty gives no hearing right")
    if workflow.now() >= deadline.due_at:
        raise refuse(f"cannot accept a hearing request: the window ended on {deadline.last_day}")


@handles("request_hearing", check=_check_hearing_request)
async def request_hearing(case: CaseContext, cmd: RequestHearing) -> None:
    penalty_of(case, "accept a hearing request").hearing_requested = True
    await case.step(
        "hearing_requested",
        cmd.actor,
        to=Stage.HEARING_SCHEDULING,
        settles=[DEFENCE, HEARING_REQUEST],
    )


def _check_schedule_hearing(case: CaseContext, cmd: ScheduleHearing) -> None:
    penalty = penalty_of(case, "schedule the hearing")
    investigator = penalty.investigation.actor if penalty.investigation else None
    if cmd.chair == investigator:
        raise refuse("cannot schedule the hearing: the chair may not be an investigator")
    if cmd.hearing_at <= workflow.now():
        raise refuse("cannot schedule the hearing in the past")


@handles("schedule_hearing", check=_check_schedule_hearing)
async def schedule_hearing(case: CaseContext, cmd: ScheduleHearing) -> None:
    penalty = penalty_of(case, "schedule the hearing")
    notice = case.policy.safeguards.hearing_notice_min
    earliest = await case.count(notice.days, notice.kind)
    if local_day(cmd.hearing_at) < earliest.last_day:
        raise refuse(
            f"cannot hold the hearing on {local_day(cmd.hearing_at)}: notice must be given "
            f"{notice.days} working days ahead ({notice.article}); the first possible day "
            f"is {earliest.last_day}"
        )
    penalty.hearing = cmd
    payload = details(cmd)
    await case.step(
        "hearing_scheduled",
        cmd.actor,
        to=Stage.HEARING_SCHEDULED,
        payload=payload,
        documents=[document(DocumentKind.HEARING_NOTICE, "Hearing notice", payload)],
    )


def _check_record_hearing(case: CaseContext, cmd: RecordHearing) -> None:
    penalty = penalty_of(case, "record the hearing")
    assert penalty.hearing is not None
    if workflow.now() < penalty.hearing.hearing_at:
        held = penalty.hearing.hearing_at.isoformat()
        raise refuse(f"cannot record the hearing before it is held ({held})")


@handles("record_hearing", check=_check_record_hearing)
async def record_hearing(case: CaseContext, cmd: RecordHearing) -> None:
    penalty_of(case, "record the hearing").hearing_record = cmd
    payload = details(cmd)
    await case.step(
        "hearing_held",
        cmd.actor,
        to=Stage.DECISION_PENDING,
        payload=payload,
        documents=[document(DocumentKind.HEARING_RECORD, "Hearing record", payload)],
    )


# --- decision and service --------------------------------------------------------------------


def _explain_decision(case: CaseContext, cmd: DecidePenalty) -> None:
    penalty = penalty_of(case, "decide a penalty")
    if penalty.notice is None:
        raise refuse("cannot decide a penalty without prior notice to the party (APL 44)")
    if case.stage is Stage.DEFENCE:
        raise refuse(
            "cannot decide a penalty before the statement-and-defence window ends "
            f"({case.deadline(DEFENCE).last_day}, APL 45)"
        )
    if case.stage in (Stage.HEARING_SCHEDULING, Stage.HEARING_SCHEDULED):
        raise refuse("cannot decide a penalty before the requested hearing is held (APL 64)")


def _check_decision(case: CaseContext, cmd: DecidePenalty) -> None:
    notice = penalty_of(case, "decide a penalty").notice
    assert notice is not None
    if heavier_than_notice(cmd.measure, cmd.fine_yuan, notice.measure, notice.fine_yuan):
        raise refuse(
            f"cannot decide {cmd.measure.value}"
            f"{f' of {yuan(cmd.fine_yuan)}' if cmd.fine_yuan else ''}: heavier than the prior "
            f"notice ({notice.measure.value}"
            f"{f' of {yuan(notice.fine_yuan)}' if notice.fine_yuan else ''}); defending never "
            "makes a penalty heavier (APL 45)"
        )
    persons = persons_heavier_than_notice(cmd.responsible_persons, notice.responsible_persons)
    if persons is not None:
        raise refuse(
            f"cannot decide this penalty: heavier than the prior notice for responsible "
            f"persons ({persons}); defending never makes a penalty heavier (APL 45)"
        )
    check_terms(case, "decide", cmd)


@handles("decide_penalty", check=_check_decision, explain=_explain_decision)
async def decide_penalty(case: CaseContext, cmd: DecidePenalty) -> None:
    penalty = penalty_of(case, "decide the penalty")
    penalty.decided_at, penalty.decided_by, penalty.measure = workflow.now(), cmd.actor, cmd.measure
    penalty.fine_yuan, penalty.legal_basis, penalty.reasons = (
        cmd.fine_yuan,
        cmd.legal_basis,
        cmd.reasons,
    )
    penalty.responsible_persons = list(cmd.responsible_persons)
    case.state.responsible_persons.extend(cmd.responsible_persons)
    service = case.policy.safeguards.service
    payload = details(cmd)
    await case.step(
        "penalty_decided",
        cmd.actor,
        to=Stage.SERVICE_PENDING,
        payload=payload,
        documents=[
            document(DocumentKind.DECISION_LETTER, "Administrative penalty decision", payload)
        ],
        periods=[period(SERVICE, service.days, service.kind)],
        settles=[HANDLING],
    )
