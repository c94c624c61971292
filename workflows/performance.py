"""After the decision: service, payment and the late surcharge (APL 72), the reminder and court
enforcement (ACL 54), appeals (which pause the surcharge), measures on responsible persons."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.case import Payment
    from domain.commands import (
        DealWithResponsiblePersons,
        RecordAppeal,
        RecordPayment,
        ServeDecision,
    )
    from domain.models import Outcome, Stage
    from domain.policy import Authority, Measure, late_surcharge, surcharge_days
    from domain.records import DocumentKind
    from workflows.context import SYSTEM, CaseContext, details, document, local_day, period, refuse
    from workflows.handlers import handles, on_deadline
    from workflows.penalty import SERVICE, penalty_of, yuan
    from workflows.referral import start_referral

PAYMENT, ENFORCEMENT = "payment", "enforcement"
AFTER_SERVICE: dict[Measure, tuple[Outcome, Authority | None]] = {
    Measure.WARNING: (Outcome.WARNED, None),
    Measure.FINE: (Outcome.PENALIZED, None),
    Measure.SUSPEND_FUNCTIONS: (Outcome.PENALIZED, None),
    Measure.APP_REMOVAL: (Outcome.APP_REMOVED, Authority.APP_STORES),
    Measure.SHUTDOWN: (Outcome.SHUT_DOWN, Authority.TELECOM),
}


@on_deadline("flag_service_overdue")
async def flag_service_overdue(case: CaseContext) -> None:
    if "service_overdue" not in case.state.needs_supervisor:
        case.state.needs_supervisor.append("service_overdue")
        await case.note("service_overdue", SYSTEM, {"due": case.deadline(SERVICE).last_day})


def _check_service(case: CaseContext, cmd: ServeDecision) -> None:
    penalty = penalty_of(case, "serve the decision")
    if cmd.served_at > workflow.now():
        raise refuse("cannot record service in the future")
    if penalty.decided_at is not None and cmd.served_at < penalty.decided_at:
        raise refuse("cannot serve the decision before it was made")


@handles("serve_decision", check=_check_service)
async def serve_decision(case: CaseContext, cmd: ServeDecision) -> None:
    penalty = penalty_of(case, "serve the decision")
    penalty.served_at = cmd.served_at
    payload = details(cmd)
    doc = document(DocumentKind.PROOF_OF_SERVICE, "Proof of service", payload)
    outcome, authority = AFTER_SERVICE[penalty.measure]
    if penalty.measure is Measure.FINE:
        assert penalty.fine_yuan is not None
        pay = case.policy.safeguards.payment
        result = await case.step(
            "decision_served",
            cmd.actor,
            to=Stage.PAYMENT_PENDING,
            payload=payload,
            documents=[doc],
            periods=[period(PAYMENT, pay.days, pay.kind, cmd.served_at)],
            settles=[SERVICE],
        )
        case.state.payment = Payment(
            fine_yuan=penalty.fine_yuan, due_last_day=result.deadlines[PAYMENT].last_day
        )
    elif authority is not None:
        await case.step(
            "decision_served",
            cmd.actor,
            to=Stage.REFERRING,
            payload=payload,
            documents=[doc],
            settles=[SERVICE],
        )
        await start_referral(
            case,
            cmd.actor,
            authority,
            f"carry out the decision: {penalty.measure.value}",
            False,
            outcome,
        )
    else:
        await case.step(
            "decision_served", cmd.actor, payload=payload, documents=[doc], outcome=outcome
        )


# --- payment, surcharge, enforcement -----------------------------------------------------------


def amount_due(case: CaseContext, paid_at: datetime) -> tuple[Decimal, Decimal]:
    """(fine, surcharge) owed if paid at `paid_at` (APL 72, appeal days excluded)."""
    payment, appeals = case.state.payment, case.state.appeals
    assert payment is not None and payment.due_last_day is not None
    paused = {date.fromisoformat(d) for d in appeals.paused_days}
    if appeals.paused_since is not None:
        paused |= _days(appeals.paused_since, paid_at, inclusive=True)
    late = surcharge_days(
        date.fromisoformat(payment.due_last_day), date.fromisoformat(local_day(paid_at)), paused
    )
    rate = case.policy.safeguards.late_surcharge_daily_rate
    return payment.fine_yuan, late_surcharge(payment.fine_yuan, late, rate)


def _check_payment(case: CaseContext, cmd: RecordPayment) -> None:
    penalty_of(case, "record a payment")
    if cmd.paid_at > workflow.now():
        raise refuse("cannot record a payment in the future")
    fine, surcharge = amount_due(case, cmd.paid_at)
    if cmd.amount_yuan < fine + surcharge:
        raise refuse(
            f"cannot accept {yuan(cmd.amount_yuan)}: {yuan(fine + surcharge)} is due "
            f"(fine {yuan(fine)} + late surcharge {yuan(surcharge)})"
        )


@handles("record_payment", check=_check_payment)
async def record_payment(case: CaseContext, cmd: RecordPayment) -> None:
    payment = case.state.payment
    assert payment is not None
    fine, surcharge = amount_due(case, cmd.paid_at)
    payment.paid_yuan, payment.paid_at, payment.surcharge_yuan = (
        cmd.amount_yuan,
        cmd.paid_at,
        surcharge,
    )
    await case.step(
        "fine_paid",
        cmd.actor,
        payload={
            "amount_yuan": str(cmd.amount_yuan),
            "fine_yuan": str(fine),
            "surcharge_yuan": str(surcharge),
            "paid_at": cmd.paid_at.isoformat(),
        },
        outcome=Outcome.PENALIZED,
    )


@on_deadline("send_payment_reminder")
async def send_payment_reminder(case: CaseContext) -> None:
    payment = case.state.payment
    assert payment is not None
    payment.reminder_at = workflow.now()
    after = case.policy.safeguards.enforcement_after_reminder
    await case.step(
        "payment_reminder_sent",
        SYSTEM,
        to=Stage.ENFORCEMENT,
        documents=[
            document(
                DocumentKind.PAYMENT_REMINDER,
                "Reminder to pay (催告)",
                {"payment_due": payment.due_last_day},
            )
        ],
        periods=[period(ENFORCEMENT, after.days, after.kind)],
        settles=[PAYMENT],
    )


@on_deadline("apply_for_enforcement")
async def apply_for_enforcement(case: CaseContext) -> None:
    payment = case.state.payment
    assert payment is not None
    if payment.enforcement_applied_at is not None:
        return
    payment.enforcement_applied_at = workflow.now()
    fine, surcharge = amount_due(case, workflow.now())
    await case.step(
        "court_enforcement_applied",
        SYSTEM,
        documents=[
            document(
                DocumentKind.ENFORCEMENT_APPLICATION,
                "Application for court enforcement",
                {"fine_yuan": str(fine), "surcharge_yuan": str(surcharge)},
            )
        ],
        settles=[ENFORCEMENT],
    )


def _check_appeal(case: CaseContext, cmd: RecordAppeal) -> None:
    penalty_of(case, "record an appeal")
    pending = case.state.appeals.pending
    if cmd.event == "concluded" and cmd.kind not in pending:
        raise refuse(f"cannot conclude a {cmd.kind}: none is pending")
    if cmd.event == "filed" and cmd.kind in pending:
        raise refuse(f"a {cmd.kind} is already pending")


@handles("record_appeal", check=_check_appeal)
async def record_appeal(case: CaseContext, cmd: RecordAppeal) -> None:
    """Reconsideration or litigation: enforcement goes on, the late surcharge pauses."""
    appeals = case.state.appeals
    if cmd.event == "filed":
        appeals.pending.append(cmd.kind)
        appeals.filed += 1
        if appeals.paused_since is None:
            appeals.paused_since = cmd.at
    else:
        appeals.pending.remove(cmd.kind)
        if not appeals.pending and appeals.paused_since is not None:
            days = _days(appeals.paused_since, cmd.at, inclusive=False)
            appeals.paused_days.extend(sorted(d.isoformat() for d in days))
            appeals.paused_since = None
    await case.note(f"{cmd.kind}_{cmd.event}", cmd.actor, {"at": cmd.at.isoformat()})


def _days(start: datetime, end: datetime, inclusive: bool) -> set[date]:
    first, last = date.fromisoformat(local_day(start)), date.fromisoformat(local_day(end))
    if not inclusive:
        last -= timedelta(days=1)
    days, day = set(), first
    while day <= last:
        days.add(day)
        day += timedelta(days=1)
    return days


# --- responsible persons -----------------------------------------------------------------------


def _check_persons(case: CaseContext, cmd: DealWithResponsiblePersons) -> None:
    fined = [person.name for person in cmd.persons if person.measure == "fine"]
    if fined:
        raise refuse(
            f"cannot fine {', '.join(fined)} this way: a fine on a responsible person is "
            "decided through the penalty procedure, after prior notice (APL 44)"
        )


@handles("deal_with_responsible_persons", check=_check_persons)
async def deal_with_responsible_persons(case: CaseContext, cmd: DealWithResponsiblePersons) -> None:
    case.state.responsible_persons.extend(cmd.persons)
    await case.note("responsible_persons_dealt_with", cmd.actor, details(cmd))
