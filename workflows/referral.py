"""Referrals to other authorities, each watched on its own timers beside the procedure.

Why not child workflows: a referral's steps (approval, transfer, acknowledgement) are commands on
the case, audited in the case's one numbered step sequence, under the case's lock, and the case
closes on the acknowledgement of the referral that carries its outcome. A child would need its
own step numbering and audit keys, signals both ways and a second history to read; a watcher task
in the case's workflow gives the same timers with none of that.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.case import Referral
    from domain.commands import Refer, ReferralAction
    from domain.models import Outcome, Stage
    from domain.policy import Authority
    from domain.records import DocumentKind
    from workflows.context import SYSTEM, CaseContext, document, period, refuse
    from workflows.handlers import handles
    from workflows.timers import wait_for


def approval_deadline(referral: Referral) -> str:
    return f"referral:{referral.referral_id}:approval"


def acknowledgement_deadline(referral: Referral) -> str:
    return f"referral:{referral.referral_id}:acknowledgement"


def _payload(referral: Referral) -> dict[str, object]:
    return referral.model_dump(
        mode="json",
        include={
            "referral_id",
            "authority",
            "criminal",
            "status",
            "reasons",
            "letter_number",
            "closes_with",
        },
    )


async def start_referral(
    case: CaseContext,
    actor: str,
    authority: Authority,
    reasons: str,
    criminal: bool,
    closes_with: Outcome | None,
) -> Referral:
    referral = Referral(
        referral_id=len(case.state.referrals) + 1,
        authority=authority,
        reasons=reasons,
        criminal=criminal,
        requested_at=workflow.now(),
        status="awaiting_approval" if criminal else "sent",
        closes_with=closes_with,
    )
    case.state.referrals.append(referral)
    if criminal:
        rule = case.policy.referrals.criminal_approval
        await case.step(
            "referral_requested",
            actor,
            payload=_payload(referral),
            periods=[period(approval_deadline(referral), rule.days, rule.kind)],
        )
    else:
        await send(case, referral, actor)
    case.start(track(case, referral))
    return referral


async def send(case: CaseContext, referral: Referral, actor: str) -> None:
    rule = case.policy.referrals.acknowledgement[referral.authority]
    referral.status = "sent"
    result = await case.step(
        "referral_sent",
        actor,
        payload=_payload(referral),
        documents=[
            document(
                DocumentKind.REFERRAL_LETTER,
                f"Referral to the {referral.authority.value}",
                {"reasons": referral.reasons, "criminal": referral.criminal},
            )
        ],
        periods=[period(acknowledgement_deadline(referral), rule.days, rule.kind)],
    )
    referral.letter_number = result.documents[0].number


async def track(case: CaseContext, referral: Referral) -> None:
    """Each referral waits on its own timers; a missed one goes to a supervisor."""
    await _chase(case, referral, "awaiting_approval", approval_deadline(referral), "approval")
    if referral.status == "approved" and "referral_transfer_overdue" in referral.overdue:
        await workflow.wait_condition(lambda: referral.status != "approved")
    if referral.status == "approved":
        assert referral.transfer_due_at is not None
        try:
            await workflow.wait_condition(
                lambda: referral.status != "approved",
                timeout=referral.transfer_due_at - workflow.now(),
                timeout_summary=f"referral {referral.referral_id}: transfer within 24 hours",
            )
        except TimeoutError:
            await _overdue(case, referral, "referral_transfer_overdue")
            await workflow.wait_condition(lambda: referral.status != "approved")
    acknowledgement = acknowledgement_deadline(referral)
    if (
        referral.status == "sent"
        and acknowledgement not in case.state.deadlines
        and workflow.patched("referral-acknowledgement-after-transfer")
    ):
        # The transfer's step is still being written: its acknowledgement deadline follows.
        # (Before this patch the tracker ended here and a transferred referral's deadline
        # went unwatched.)
        await workflow.wait_condition(
            lambda: acknowledgement in case.state.deadlines or referral.status != "sent"
        )
    await _chase(case, referral, "sent", acknowledgement, "acknowledgement")


async def _chase(case: CaseContext, referral: Referral, status: str, name: str, what: str) -> None:
    flag = "referral_approval_overdue" if what == "approval" else "referral_unacknowledged"
    while referral.status == status and name in case.state.deadlines:
        if flag in referral.overdue:  # flagged by an earlier run: a supervisor knows
            await workflow.wait_condition(lambda: referral.status != status)
            continue
        if not await wait_for(case, name, lambda: referral.status != status):
            await _overdue(case, referral, flag)
            await workflow.wait_condition(lambda: referral.status != status)


async def _overdue(case: CaseContext, referral: Referral, flag: str) -> None:
    async with case.lock:
        referral.overdue.append(flag)
        case.state.needs_supervisor.append(f"{flag}:{referral.referral_id}")
        await case.note(flag, SYSTEM, _payload(referral))


# --- commands ----------------------------------------------------------------------------


def _check_refer(case: CaseContext, cmd: Refer) -> None:
    if cmd.criminal and cmd.authority is not Authority.POLICE:
        raise refuse("a criminal clue is transferred to the police")


@handles("refer", check=_check_refer)
async def refer(case: CaseContext, cmd: Refer) -> None:
    await start_referral(case, cmd.actor, cmd.authority, cmd.reasons, cmd.criminal, None)


def referral_in(case: CaseContext, what: str, action: ReferralAction, status: str) -> Referral:
    for referral in case.state.referrals:
        if referral.referral_id == action.referral_id:
            if referral.status != status:
                raise refuse(f"cannot {what}: referral {referral.referral_id} is {referral.status}")
            return referral
    raise refuse(f"cannot {what}: no referral {action.referral_id}")


@handles(
    "approve_referral",
    check=lambda case, cmd: referral_in(case, "approve the referral", cmd, "awaiting_approval"),
)
async def approve_referral(case: CaseContext, cmd: ReferralAction) -> None:
    referral = referral_in(case, "approve the referral", cmd, "awaiting_approval")
    referral.status = "approved"
    hours = case.policy.referrals.criminal_transfer_hours
    referral.transfer_due_at = workflow.now() + timedelta(hours=hours)
    await case.step(
        "referral_approved",
        cmd.actor,
        payload=_payload(referral) | {"transfer_due_at": referral.transfer_due_at.isoformat()},
        settles=[approval_deadline(referral)],
    )


@handles(
    "record_transfer",
    check=lambda case, cmd: referral_in(case, "transfer the case", cmd, "approved"),
)
async def record_transfer(case: CaseContext, cmd: ReferralAction) -> None:
    await send(case, referral_in(case, "transfer the case", cmd, "approved"), cmd.actor)


@handles(
    "acknowledge_referral",
    check=lambda case, cmd: referral_in(case, "acknowledge the referral", cmd, "sent"),
)
async def acknowledge_referral(case: CaseContext, cmd: ReferralAction) -> None:
    referral = referral_in(case, "acknowledge the referral", cmd, "sent")
    referral.status = "acknowledged"
    payload = _payload(referral) | {"notes": cmd.notes}
    closes = referral.closes_with is not None and case.stage is Stage.REFERRING
    await case.step(
        "referral_acknowledged",
        cmd.actor,
        payload=payload,
        outcome=referral.closes_with if closes else None,
        settles=[acknowledgement_deadline(referral)],
    )
