"""The procedure's rules, each on the time-skipping server with the real activities:
leniency, repeat offenders, extensions, safeguards refusing commands, withdrawal, no-shows."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest
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
    state = await case.do("record_verification")
    assert state.outcome is Outcome.RECTIFIED
    lenient = await pool.fetchval(
        "SELECT payload->>'lenient' FROM case_audit WHERE case_id = $1"
        " AND action = 'verification_passed'",
        case.case_id,
    )
    assert lenient == "true"


async def test_no_leniency_for_a_general_violation(case: Case) -> None:
    await case.to_rectifying()
    await case.do("submit_rectification_report", actor=PARTY)
    state = await case.do("record_verification", penalize=True)
    assert state.stage is Stage.INVESTIGATING  # rectified, yet penalized: severity general


async def test_repeat_offender_starts_higher_on_the_ladder(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    first = await open_case(ts_env, pool, task_queue)
    subject = (await first.state()).opened.subject
    await first.to_rectifying()
    second = await open_case(ts_env, pool, task_queue, subject=subject)
    proc = await second.procedure()
    assert proc.policy.prior_cases == 1
    await second.do("decide_filing")
    state = await second.do("open_penalty_procedure")
    assert state.stage is Stage.INVESTIGATING
    penalty = (await second.procedure()).penalty
    assert penalty is not None and (penalty.rung, penalty.measure.value) == (1, "fine")
    # A withdrawn earlier case is no offence.
    await first.do("withdraw")
    third = await open_case(ts_env, pool, task_queue, subject=subject)
    assert (await third.procedure()).policy.prior_cases == 1  # only the second counts


async def test_extension_approved_moves_the_deadline(case: Case) -> None:
    state = await case.to_rectifying()
    assert state.order is not None
    before = state.order.deadline
    assert "cannot decide on an extension: none was requested" in await case.refused(
        "decide_extension", actor=SUPERVISOR
    )
    await case.do("request_extension", actor=PARTY, days=5)
    assert "already awaiting a decision" in await case.refused("request_extension", actor=PARTY)
    assert "extension_request" in (await case.procedure()).needs_supervisor
    state = await case.do("decide_extension", actor=SUPERVISOR)
    assert state.order is not None
    after = state.order.deadline
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
    state = await case.to_rectifying()
    assert state.order is not None
    await case.do("request_extension", actor=PARTY)
    # The deadline passes while the request waits: the supervisor's answer comes first.
    await case.sleep_until(state.order.deadline.due_at, after=timedelta(days=1))
    assert (await case.state()).stage is Stage.RECTIFYING
    state = await case.do("decide_extension", actor=SUPERVISOR, approved=False)
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
    state = await case.do("record_no_show")
    assert state.stage is Stage.INVESTIGATING
    assert (await case.procedure()).no_shows == 1
    assert (await case.actions())[-2:] == ["interview_no_show", "penalty_procedure_opened"]


async def test_repeat_interviews_are_counted(case: Case) -> None:
    await case.do("decide_filing")
    await case.interview()
    await case.interview()
    proc = await case.procedure()
    assert proc.interviews_held == 2
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
    state = await case.do("withdraw", ground="no_violation")
    assert (state.stage, state.outcome) == (Stage.CLOSED, Outcome.WITHDRAWN)
    assert (await case.register())["outcome"] == "withdrawn"

    decided = await open_case(ts_env, pool, task_queue)
    await decided.do("decide_filing")
    await decided.do("open_penalty_procedure")
    await decided.to_notice()
    await decided.do("notify_penalty", measure="warning")
    penalty = (await decided.procedure()).penalty
    assert penalty is not None and penalty.defence_deadline is not None
    await decided.sleep_until(penalty.defence_deadline.due_at, after=timedelta(hours=1))
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
    penalty = (await case.procedure()).penalty
    assert penalty is not None and penalty.defence_deadline is not None
    assert not penalty.hearing_right  # ¥20,000 is below the organisation threshold
    await case.sleep_until(penalty.defence_deadline.due_at, after=timedelta(hours=1))
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
    penalty = (await case.procedure()).penalty
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
    state = await case.do("decide_penalty", measure="fine", fine_yuan="180000")
    assert state.stage is Stage.SERVICE_PENDING
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
    penalty = (await case.procedure()).penalty
    assert penalty is not None and penalty.hearing_request_deadline is not None
    assert penalty.hearing_request_deadline.days == 5
    assert penalty.hearing_request_deadline.kind == "working"
    await case.sleep_until(penalty.hearing_request_deadline.due_at, after=timedelta(hours=1))
    assert (await case.state()).stage is Stage.DECISION_PENDING  # the window closed by itself
    reason = await case.refused("request_hearing", actor=PARTY)
    assert "stage decision_pending" in reason


async def test_first_version_commands_are_refused_on_new_cases(case: Case) -> None:
    reason = await case.refused("decide_fine", amount_yuan="1000", legal_basis="x", reasons="y")
    assert "use decide_penalty after prior notice" in reason


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
    state = await case.do(
        "record_statement",
        actor=PARTY,
        waive_rights=True,
        statement="We accept the facts and waive statement and hearing.",
    )
    assert state.stage is Stage.DECISION_PENDING  # no need to wait for the window
    assert (await case.actions())[-2:] == ["statement_recorded", "rights_waived"]
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
