"""The procedure's rules, each on the time-skipping server with the real activities:
leniency, repeat offenders, extensions, safeguards refusing commands, withdrawal, no-shows."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.models import Outcome, Severity, Stage
from tests.case_driver import PARTY, SUPERVISOR, Case, open_case

pytestmark = pytest.mark.usefixtures("ts_worker")


@pytest.fixture
async def case(ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str) -> Case:
    return await open_case(ts_env, pool, task_queue)


async def test_leniency_first_minor_violation_corrected_in_time(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue, severity=Severity.MINOR)
    await case.to_rectifying()
    await case.do("submit_rectification_report", actor=PARTY)
    reason = await case.refused("record_verification", penalize=True)
    assert "Administrative Penalty Law art. 33" in reason and "not penalized" in reason
    receipt = await case.do("record_verification")
    assert receipt.outcome is Outcome.RECTIFIED
    lenient = await pool.fetchval(
        "SELECT payload->>'lenient' FROM case_audit WHERE case_id = $1"
        " AND action = 'verification_passed'",
        case.case_id,
    )
    assert lenient == "true"


async def test_no_leniency_for_a_general_violation(case: Case) -> None:
    await case.to_rectifying()
    await case.do("submit_rectification_report", actor=PARTY)
    receipt = await case.do("record_verification", penalize=True)
    assert receipt.stage is Stage.INVESTIGATING  # rectified, yet penalized: severity general


async def prior_cases(case: Case) -> int:
    state = await case.state()
    assert state.policy is not None
    assert state.opening.prior_cases == state.policy.prior_cases
    return state.policy.prior_cases


async def test_repeat_offender_starts_higher_on_the_ladder(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    first = await open_case(ts_env, pool, task_queue)
    subject = (await first.state()).opened.subject
    await first.to_rectifying()
    second = await open_case(ts_env, pool, task_queue, subject=subject)
    assert await prior_cases(second) == 1
    await second.do("decide_filing")
    receipt = await second.do("open_penalty_procedure")
    assert receipt.stage is Stage.INVESTIGATING
    penalty = (await second.state()).penalty
    assert penalty is not None and (penalty.rung, penalty.measure.value) == (1, "fine")
    # A withdrawn earlier case is no offence.
    await first.do("withdraw")
    third = await open_case(ts_env, pool, task_queue, subject=subject)
    assert await prior_cases(third) == 1  # only the second counts


async def test_extension_approved_moves_the_deadline(case: Case) -> None:
    await case.to_rectifying()
    before = (await case.state()).deadlines["rectification"]
    assert "cannot decide on an extension: none was requested" in await case.refused(
        "decide_extension", actor=SUPERVISOR
    )
    await case.do("request_extension", actor=PARTY, days=5)
    assert "already awaiting a decision" in await case.refused("request_extension", actor=PARTY)
    assert "extension_request" in (await case.state()).needs_supervisor
    await case.do("decide_extension", actor=SUPERVISOR)
    after = (await case.state()).deadlines["rectification"]
    assert after.due_at > before.due_at and after.start_day == before.last_day
    assert after.days == 5 and after.kind == "working"
    assert (await case.register())["deadline_at"] == after.due_at
    # The old deadline passes without consequence; the new one escalates.
    await case.sleep_until(before.due_at, after=timedelta(hours=1))
    assert (await case.state()).stage is Stage.RECTIFYING
    await case.sleep_until(after.due_at, after=timedelta(hours=1))
    assert (await case.state()).stage is Stage.INVESTIGATING
    actions = await case.actions()
    assert actions.index("extension_approved") < actions.index("penalty_procedure_opened")


async def test_extension_denied_after_the_deadline_escalates_at_once(case: Case) -> None:
    await case.to_rectifying()
    deadline = (await case.state()).deadlines["rectification"]
    await case.do("request_extension", actor=PARTY)
    # The deadline passes while the request waits: the supervisor's answer comes first.
    await case.sleep_until(deadline.due_at, after=timedelta(days=1))
    assert (await case.state()).stage is Stage.RECTIFYING
    await case.do("decide_extension", actor=SUPERVISOR, approved=False)
    for _ in range(20):
        if (await case.state()).stage is Stage.INVESTIGATING:
            break
        await case.env.sleep(timedelta(seconds=1))
    assert (await case.state()).stage is Stage.INVESTIGATING
    actions = await case.actions()
    assert actions[-2:] == ["extension_denied", "penalty_procedure_opened"]


async def test_no_show_at_the_interview_escalates(case: Case) -> None:
    await case.do("decide_filing")
    start = await case.now() + timedelta(days=3)
    await case.do("schedule_interview", scheduled_for=start.isoformat())
    receipt = await case.do("record_no_show")
    assert receipt.stage is Stage.INVESTIGATING
    assert (await case.state()).interviews.no_shows == 1
    assert (await case.actions())[-2:] == ["interview_no_show", "penalty_procedure_opened"]


async def test_repeat_interviews_are_counted(case: Case) -> None:
    await case.do("decide_filing")
    await case.interview()
    await case.interview()
    assert (await case.state()).interviews.held == 2
    repeat = await case.pool.fetch(
        "SELECT payload->>'repeat' AS repeat FROM case_audit WHERE case_id = $1"
        " AND action = 'interview_scheduled' ORDER BY seq",
        case.case_id,
    )
    assert [r["repeat"] for r in repeat] == ["false", "true"]


async def test_withdrawal_before_the_decision_and_not_after(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue)
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    receipt = await case.do("withdraw", ground="no_violation")
    assert (receipt.stage, receipt.outcome) == (Stage.CLOSED, Outcome.WITHDRAWN)
    assert (await case.register())["outcome"] == "withdrawn"

    decided = await open_case(ts_env, pool, task_queue)
    await decided.do("decide_filing")
    await decided.do("open_penalty_procedure")
    await decided.to_notice()
    await decided.do("notify_penalty", measure="warning")
    defence = (await decided.state()).deadlines["defence"]
    await decided.sleep_until(defence.due_at, after=timedelta(hours=1))
    await decided.do("decide_penalty", measure="warning")
    reason = await decided.refused("withdraw")
    assert "a penalty was decided" in reason and "reconsideration or litigation" in reason


async def test_safeguards_refuse_a_penalty_out_of_order(case: Case) -> None:
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    assert "without prior notice" in await case.refused("decide_penalty", measure="warning")
    await case.to_notice()
    outside = await case.refused("notify_penalty", measure="fine", fine_yuan="900000")
    assert "outside the policy's range" in outside and "¥900,000.00" in outside
    unknown = await case.refused("notify_penalty", measure="app_removal")
    assert "has no such measure for category prohibited_information" in unknown

    await case.do("notify_penalty", measure="fine", fine_yuan="20000")
    early = await case.refused("decide_penalty", measure="fine", fine_yuan="20000")
    assert "before the statement-and-defence window ends" in early
    assert "no hearing right" in await case.refused("request_hearing", actor=PARTY)
    state = await case.state()
    assert state.penalty is not None
    assert not state.penalty.hearing_right  # ¥20,000 is below the organisation threshold
    await case.sleep_until(state.deadlines["defence"].due_at, after=timedelta(hours=1))
    assert (await case.state()).stage is Stage.DECISION_PENDING

    heavier = await case.refused("decide_penalty", measure="fine", fine_yuan="30000")
    assert "heavier than the prior notice" in heavier and "APL 45" in heavier
    assert "heavier than the prior notice" in await case.refused(
        "decide_penalty", measure="suspend_functions"
    )
    lighter = await case.do("decide_penalty", measure="fine", fine_yuan="15000")
    assert lighter.stage is Stage.SERVICE_PENDING
    kinds = await case.documents()
    assert kinds[-2:] == ["prior_notice", "decision_letter"]


async def test_hearing_rules(case: Case) -> None:
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    await case.do("record_investigation_report", actor="investigator.a")
    await case.do("notify_penalty", measure="fine", fine_yuan="200000")  # large: hearing right
    penalty = (await case.state()).penalty
    assert penalty is not None and penalty.hearing_right
    await case.do("request_hearing", actor=PARTY)
    soon = await case.now() + timedelta(days=3)
    too_soon = await case.refused(
        "schedule_hearing", hearing_at=soon.isoformat(), place="Hall", chair="chair.b"
    )
    assert "7 working days ahead" in too_soon
    later = await case.now() + timedelta(days=20)
    assert "chair may not be an investigator" in await case.refused(
        "schedule_hearing", hearing_at=later.isoformat(), place="Hall", chair="investigator.a"
    )
    await case.do("schedule_hearing", hearing_at=later.isoformat(), place="Hall", chair="chair.b")
    assert "before the requested hearing is held" in await case.refused(
        "decide_penalty", measure="fine", fine_yuan="200000"
    )
    assert "before it is held" in await case.refused("record_hearing")
    await case.sleep_until(later, after=timedelta(hours=1))
    await case.do("record_hearing")
    receipt = await case.do("decide_penalty", measure="fine", fine_yuan="180000")
    assert receipt.stage is Stage.SERVICE_PENDING
    assert await case.documents() == [
        "filing_decision",
        "investigation_report",
        "prior_notice",
        "hearing_notice",
        "hearing_record",
        "decision_letter",
    ]


async def test_hearing_request_after_its_window_is_refused(case: Case) -> None:
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    await case.to_notice()
    await case.do("notify_penalty", measure="suspend_functions")
    hearing_request = (await case.state()).deadlines["hearing_request"]
    assert hearing_request.days == 5
    assert hearing_request.kind == "working"
    await case.sleep_until(hearing_request.due_at, after=timedelta(hours=1))
    assert (await case.state()).stage is Stage.DECISION_PENDING  # the window closed by itself
    reason = await case.refused("request_hearing", actor=PARTY)
    assert "stage decision_pending" in reason


async def test_first_version_commands_are_refused_on_new_cases(case: Case) -> None:
    """Version 1's `decide_fine` is gone with version 1 (docs/case-workflow.md): the workflow
    has no such update, so it is refused, the known ones (decide_penalty among them) named,
    and the case is untouched."""
    body = {"actor": "officer.li", "amount_yuan": "1000", "legal_basis": "x", "reasons": "y"}
    try:
        await case.handle.execute_update("decide_fine", body)
    except WorkflowUpdateFailedError as exc:
        reason = str(exc.cause)
    else:
        raise AssertionError("decide_fine was accepted")
    assert "'decide_fine' expected but not found" in reason and "decide_penalty" in reason
    state = await case.state()
    assert (state.stage, state.step) == (Stage.FILING, 1)
    assert await case.actions() == ["case_opened"]


async def test_summary_disposal_only_where_the_policy_allows_it(case: Case) -> None:
    reason = await case.refused("decide_filing", summary_disposal=True)
    assert "does not allow it for category prohibited_information" in reason


async def test_collective_decision_needs_three_leaders(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue, severity=Severity.MAJOR)
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    await case.do("record_investigation_report")
    await case.do("record_legal_review", actor="legal.reviewer")
    reason = await case.refused(
        "record_collective_decision", actor="director", participants=["director"]
    )
    assert "at least three" in reason
    returned = await case.do("record_collective_decision", actor="director", approved=False)
    assert returned.stage is Stage.INVESTIGATING  # back for a revised report


async def test_party_may_waive_the_defence_window_in_writing(case: Case) -> None:
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    await case.to_notice()
    await case.do("notify_penalty", measure="fine", fine_yuan="20000")
    waiver = "We accept the facts and waive statement and hearing."
    receipt = await case.do("record_statement", actor=PARTY, waive_rights=True, statement=waiver)
    assert receipt.stage is Stage.DECISION_PENDING  # no need to wait for the window
    # One step: the waiver, with the statement in its payload.
    assert (await case.actions())[-2:] == ["prior_notice_given", "rights_waived"]
    waived = await case.pool.fetchval(
        "SELECT payload->>'statement' FROM case_audit WHERE case_id = $1"
        " AND action = 'rights_waived'",
        case.case_id,
    )
    assert waived == waiver
    penalty = (await case.state()).penalty
    assert penalty is not None and penalty.statements == [waiver]
    decided = await case.do("decide_penalty", measure="fine", fine_yuan="20000")
    assert decided.stage is Stage.SERVICE_PENDING


async def test_waiver_is_refused_once_a_hearing_is_requested(case: Case) -> None:
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    await case.to_notice()
    await case.do("notify_penalty", measure="fine", fine_yuan="200000")
    await case.do("request_hearing", actor=PARTY)
    reason = await case.refused("record_statement", actor=PARTY, waive_rights=True)
    assert "a hearing was requested" in reason


# --- defects fixed with the rebuilt workflow (issue 7) ------------------------------------------


async def test_interview_is_recorded_only_once_its_time_has_come(case: Case) -> None:
    await case.do("decide_filing")
    at = await case.now() + timedelta(days=2)
    await case.do("schedule_interview", scheduled_for=at.isoformat())
    early = await case.refused("record_interview")
    assert "before it is held" in early and at.isoformat() in early
    state = await case.state()
    assert state.stage is Stage.INTERVIEW_SCHEDULED and state.interviews.held == 0
    await case.sleep_until(at)
    receipt = await case.do("record_interview")
    assert receipt.stage is Stage.INTERVIEWED
    interview = (await case.state()).interviews.current
    assert interview is not None and interview.held_at is not None and interview.held_at >= at
    assert (await case.actions())[-2:] == ["interview_scheduled", "interview_recorded"]


async def test_only_a_filed_earlier_case_makes_a_repeat_offender(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    earlier = await open_case(ts_env, pool, task_queue)
    subject = (await earlier.state()).opened.subject
    await ts_env.sleep(timedelta(minutes=1))  # the later cases open strictly later
    # The earlier case still waits for its filing decision: no offence yet.
    unfiled = await open_case(ts_env, pool, task_queue, subject=subject)
    assert await prior_cases(unfiled) == 0
    await unfiled.do("decide_filing")
    await unfiled.do("open_penalty_procedure")
    penalty = (await unfiled.state()).penalty
    assert penalty is not None and (penalty.rung, penalty.measure.value) == (0, "warning")

    await unfiled.do("withdraw")  # no offence either: only `earlier` may count below

    # Filed, the earlier case counts: the next case starts a rung higher.
    await earlier.do("decide_filing")
    await ts_env.sleep(timedelta(minutes=1))
    later = await open_case(ts_env, pool, task_queue, subject=subject)
    assert await prior_cases(later) == 1
    await later.do("decide_filing")
    await later.do("open_penalty_procedure")
    penalty = (await later.state()).penalty
    assert penalty is not None and (penalty.rung, penalty.measure.value) == (1, "fine")


async def test_approved_extension_gets_its_reminders_before_the_new_deadline(case: Case) -> None:
    await case.to_rectifying()
    state = await case.state()
    assert state.policy is not None and state.policy.reminders.days_before_deadline == [3, 1]
    before = state.deadlines["rectification"]
    await case.do("request_extension", actor=PARTY, days=5)
    await case.do("decide_extension", actor=SUPERVISOR, days=5)
    after = (await case.state()).deadlines["rectification"]
    assert after.due_at > before.due_at
    approved = await case.pool.fetchval(
        "SELECT payload FROM case_audit WHERE case_id = $1 AND action = 'extension_approved'",
        case.case_id,
    )
    assert approved["deadlines"]["rectification"]["last_day"] == after.last_day
    assert approved["old_deadline"] == before.last_day

    await case.sleep_until(after.due_at, after=-timedelta(hours=1))
    assert (await case.state()).stage is Stage.RECTIFYING
    rows = await case.pool.fetch(
        "SELECT payload FROM case_audit WHERE case_id = $1 AND action = 'deadline_reminder'"
        " ORDER BY seq",
        case.case_id,
    )
    reminders = [
        row["payload"]["days_before"]
        for row in rows
        if datetime.fromisoformat(row["payload"]["due_at"]) == after.due_at
    ]
    assert reminders == [3, 1]
