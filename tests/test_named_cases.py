"""The named cases of DOMAIN.md, each driven along its whole path on the time-skipping server.

One scenario per row of the named-cases table: the outcome, the audit trail in order, the
documents issued and the deadlines involved, under the default policy (policies/default.yaml).
Each case has its own subject (uuid identifiers) unless the row is about a repeat offender.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import chinese_calendar  # type: ignore[import-untyped]
import pytest
from temporalio.testing import WorkflowEnvironment

from domain.case import CaseState, Penalty
from domain.models import Deadline, Outcome, Stage
from domain.policy import Authority, Measure
from tests.case_driver import DEFAULTS, PARTY, Case, open_case

pytestmark = pytest.mark.usefixtures("ts_worker")

SHANGHAI = ZoneInfo("Asia/Shanghai")
LEGAL, DIRECTOR, CHAIR = "legal.reviewer", "director", "hearing.chair"
LEADERS = ["director", "deputy.a", "deputy.b"]

Opener = Callable[..., Awaitable[Case]]


@pytest.fixture
def opener(ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str) -> Opener:
    async def _open(**overrides: Any) -> Case:
        return await open_case(ts_env, pool, task_queue, **overrides)

    return _open


# --- subjects ---------------------------------------------------------------------------------


def uid() -> str:
    return uuid.uuid4().hex[:10]


def subject(kind: str, name: str, **identifiers: str) -> dict[str, Any]:
    return {"kind": kind, "name": name, "identifiers": identifiers}


def app(name: str, stem: str) -> dict[str, Any]:
    return subject("app", name, app_package=f"com.{stem}.a{uid()}")


# --- deadlines, counted here independently of the product ---------------------------------


def local(instant: datetime) -> date:
    return instant.astimezone(SHANGHAI).date()


def working(day: date) -> tuple[bool, bool]:
    """(is a working day, the official calendar knows the year)."""
    try:
        return bool(chinese_calendar.is_workday(day)), True
    except NotImplementedError:  # a year the package has no data for: weekdays only
        return day.weekday() < 5, False


def expected_last_day(start: date, days: int, kind: str) -> tuple[date, bool]:
    """The last day of a period counted from the day after `start`, and whether it is
    provisional (a day looked at lies in a year without official data)."""
    official = True
    if kind == "working":
        day, counted = start, 0
        while counted < days:
            day += timedelta(days=1)
            is_working, known = working(day)
            official &= known
            counted += is_working
        return day, not official
    day = start + timedelta(days=days)
    while True:
        is_working, known = working(day)
        official &= known
        if is_working:
            return day, not official
        day += timedelta(days=1)


def check_deadline(deadline: Deadline | None, start: datetime, days: int, kind: str) -> Deadline:
    assert deadline is not None
    last, provisional = expected_last_day(local(start), days, kind)
    assert (deadline.kind, deadline.days) == (kind, days)
    assert deadline.start_day == local(start).isoformat()
    assert deadline.last_day == last.isoformat(), deadline.explanation
    assert deadline.provisional is provisional
    assert deadline.due_at == datetime.combine(last + timedelta(days=1), time(0), SHANGHAI)
    return deadline


# --- common steps -----------------------------------------------------------------------------


async def outcome(case: Case) -> Outcome:
    """The case's result. Waited for without automatic time skipping: the time-skipping server
    otherwise jumps its clock far ahead (ten years, seen) while a client waits on a result that
    is already there, which would carry every later case of the test out of 2026."""
    with case.env.auto_time_skipping_disabled():
        return (await case.handle.result()).outcome


async def until_stage(case: Case, stage: Stage) -> None:
    """A timer's transition is done once the clock passed it; poll briefly to be sure."""
    for _ in range(100):
        if (await case.state()).stage is stage:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"case stayed at {(await case.state()).stage}, expected {stage}")


async def penalty(case: Case) -> Penalty:
    state = await case.state()
    assert state.penalty is not None
    return state.penalty


async def let_defence_window_pass(case: Case) -> Penalty:
    """Prior notice given: check the statement-and-defence window (5 working days, and the
    hearing-request window when there is a hearing right), then let it pass."""
    state = await case.state()
    pen = state.penalty
    assert pen is not None and pen.notice_at is not None
    # The notice's step counted both periods; the window pending is the later of them.
    counted = (await audit_payload(case, "prior_notice_given"))["deadlines"]
    statement = Deadline.model_validate(counted["statement_and_defence"])
    check_deadline(statement, pen.notice_at, 5, "working")
    window = check_deadline(state.deadlines.get("defence"), pen.notice_at, 5, "working")
    if pen.hearing_right:
        hearing = check_deadline(
            state.deadlines.get("hearing_request"), pen.notice_at, 5, "working"
        )
        assert Deadline.model_validate(counted["hearing_request"]) == hearing
        assert window.due_at == max(statement.due_at, hearing.due_at)
    else:
        assert "hearing_request" not in state.deadlines and "hearing_request" not in counted
        assert window == statement
    assert "window ends" in await case.refused(
        "decide_penalty", measure=pen.measure.value, fine_yuan=pen.notice and pen.notice.fine_yuan
    )
    # Supervisors see the window as the case's next deadline.
    assert (await case.register())["deadline_at"] == window.due_at
    await case.sleep_until(window.due_at, after=timedelta(hours=1))
    await until_stage(case, Stage.DECISION_PENDING)
    assert "defence" not in (await case.state()).deadlines
    return await penalty(case)


async def serve(case: Case) -> CaseState:
    state = await case.state()
    assert state.penalty is not None and state.penalty.decided_at is not None
    check_deadline(state.deadlines.get("service"), state.penalty.decided_at, 7, "working")  # APL 61
    await case.do("serve_decision", served_at=(await case.now()).isoformat())
    return await case.state()


async def serve_and_pay(case: Case, amount: str) -> CaseState:
    state = await serve(case)
    assert state.penalty is not None and state.penalty.served_at is not None
    served_at = state.penalty.served_at
    # APL 67: 15 calendar days from receipt; an end on a rest day moves to the next working day.
    payment = check_deadline(state.deadlines.get("payment"), served_at, 15, "calendar")
    assert local(payment.due_at - timedelta(minutes=1)) >= local(served_at) + timedelta(15)
    assert state.payment is not None and state.payment.due_last_day == payment.last_day
    assert state.stage is Stage.PAYMENT_PENDING
    await case.do(
        "record_payment", actor=PARTY, amount_yuan=amount, paid_at=(await case.now()).isoformat()
    )
    return await case.state()


async def acknowledge_referral(case: Case, authority: Authority, closes_with: Outcome) -> None:
    """The decision goes to the authority that carries it out; its acknowledgement closes."""
    state = await case.state()
    assert state.stage is Stage.REFERRING
    [referral] = state.referrals
    assert (referral.authority, referral.status, referral.closes_with) == (
        authority,
        "sent",
        closes_with,
    )
    assert state.policy is not None
    days = state.policy.referrals.acknowledgement[authority].days
    ack = check_deadline(
        state.deadlines.get("referral:1:acknowledgement"), referral.requested_at, days, "working"
    )
    assert (await case.register())["deadline_at"] == ack.due_at
    await case.do("acknowledge_referral", actor=f"{authority.value}:desk", referral_id=1)


async def audit_payload(case: Case, action: str) -> dict[str, Any]:
    row = await case.pool.fetchrow(
        "SELECT payload, actor FROM case_audit WHERE case_id = $1 AND action = $2 ORDER BY seq",
        case.case_id,
        action,
    )
    assert row is not None, action
    payload: dict[str, Any] = dict(row["payload"])
    payload["_actor"] = row["actor"]
    return payload


async def prior_cases(case: Case) -> int:
    state = await case.state()
    assert state.policy is not None and state.opening.prior_cases == state.policy.prior_cases
    return state.policy.prior_cases


def check_handling_limit(state: CaseState) -> None:
    """APL 60: 90 calendar days from filing (into 2027 from late 2026: provisional there)."""
    assert state.filing.decided_at is not None
    check_deadline(state.deadlines.get("handling"), state.filing.decided_at, 90, "calendar")


# --- the named cases --------------------------------------------------------------------------


async def test_taobao_live_rooms_interview_suspension_then_fine(opener: Opener) -> None:
    """Taobao live rooms and stores: prohibited information → interview → rectify within a time
    limit, related functions suspended → verification fails → penalty procedure (legal review:
    serious) → notice → defence window → responsible persons → fine → paid."""
    case = await opener(
        subject=subject(
            "platform", "Taobao live rooms and stores", domain=f"taobao-{uid()}.example.com"
        ),
        violation_category="prohibited_information",
        severity="serious",
        office="zhejiang",
    )
    await case.to_rectifying(interim_suspension=True)
    state = await case.state()
    interview = state.interviews.current
    assert state.rectification.ordered_at is not None and interview is not None
    assert interview.attended_by == DEFAULTS["record_interview"]["attended_by"]
    check_deadline(
        state.deadlines.get("rectification"), state.rectification.ordered_at, 5, "working"
    )
    assert state.rectification.interim_suspension is True and state.rectification.round == 1
    check_handling_limit(state)
    ordered = await audit_payload(case, "rectification_ordered")
    assert ordered["interim_suspension"] is True and ordered["period_days"] == 5

    await case.do("submit_rectification_report", actor=PARTY)
    receipt = await case.do("record_verification", passed=False, findings="Still streaming.")
    assert receipt.stage is Stage.INVESTIGATING
    pen = await penalty(case)
    assert (pen.rung, pen.measure) == (0, Measure.WARNING)  # first offence: the ladder's foot
    assert pen.legal_review_required and not pen.collective_decision_required

    await case.do("record_investigation_report", proposed_measure="fine")
    assert (await case.state()).stage is Stage.LEGAL_REVIEW
    await case.do("record_legal_review", actor=LEGAL)
    assert (await case.state()).stage is Stage.NOTICE_PENDING
    await case.do("notify_penalty", measure="fine", fine_yuan="30000")  # CSL 61: ¥10k-50k
    pen = await let_defence_window_pass(case)
    assert pen.hearing_right is False  # below the ¥100k large-fine threshold

    persons = [
        {"name": "Live-room operations lead", "role": "directly responsible manager"}
        | {"measure": "other", "notes": "removed from post"}
    ]
    await case.do("deal_with_responsible_persons", persons=persons)
    await case.do("decide_penalty", measure="fine", fine_yuan="30000")
    await serve_and_pay(case, "30000")

    assert await outcome(case) is Outcome.PENALIZED
    state = await case.state()
    assert [p.name for p in state.responsible_persons] == ["Live-room operations lead"]
    assert state.payment is not None and state.payment.paid_yuan == Decimal("30000")
    assert state.payment.surcharge_yuan == Decimal("0")
    assert await case.actions() == [
        "case_opened",
        "filed",
        "interview_scheduled",
        "interview_recorded",
        "rectification_ordered",
        "rectification_reported",
        "verification_failed",
        "penalty_procedure_opened",
        "investigation_reported",
        "legal_review_approved",
        "prior_notice_given",
        "defence_window_closed",
        "responsible_persons_dealt_with",
        "penalty_decided",
        "decision_served",
        "fine_paid",
    ]
    assert await case.documents() == [
        "filing_decision",
        "interview_notice",
        "interview_record",
        "rectification_order",
        "investigation_report",
        "prior_notice",
        "decision_letter",
        "proof_of_service",
    ]
    row = await case.register()
    assert (row["stage"], row["outcome"]) == ("closed", "penalized")


async def test_weibo_wechat_repeat_offender_starts_on_the_fine_rung(opener: Opener) -> None:
    """Sina Weibo / Tencent WeChat: *repeated* prohibited information. An earlier case of the
    same subject ended warned; the new one starts a rung higher (fine), interviews the
    editor-in-chief, misses the rectification deadline and ends with a fine, responsible
    persons dealt with in the decision."""
    domain = f"weibo-{uid()}.example.com"
    earlier = await opener(
        subject=subject("platform", "Sina Weibo", domain=domain),
        violation_category="prohibited_information",
    )
    assert await prior_cases(earlier) == 0
    await earlier.do("decide_filing")
    await earlier.do("open_penalty_procedure")
    pen = await penalty(earlier)
    assert (pen.rung, pen.measure) == (0, Measure.WARNING)  # a first offence starts at the foot
    await earlier.to_notice()
    await earlier.do("notify_penalty", measure="warning")
    await let_defence_window_pass(earlier)
    await earlier.do("decide_penalty", measure="warning")
    await serve(earlier)
    assert await outcome(earlier) is Outcome.WARNED

    # The same platform again (sharing its domain), a week and more later.
    case = await opener(
        subject=subject(
            "platform", "Sina Weibo", domain=domain, account_id=f"weibo-official-{uid()}"
        ),
        violation_category="prohibited_information",
    )
    assert await prior_cases(case) >= 1
    assert (await audit_payload(case, "case_opened"))["prior_cases"] >= 1
    await case.do("decide_filing")
    interview_at = await case.now() + timedelta(days=1)
    await case.do(
        "schedule_interview",
        scheduled_for=interview_at.isoformat(),
        attendees_required=["editor-in-chief", "person in charge"],
    )
    await case.sleep_until(interview_at)  # recorded once held
    await case.do("record_interview", attended_by=["editor-in-chief", "person in charge"])
    await case.do("issue_rectification_order")
    state = await case.state()
    assert state.rectification.ordered_at is not None
    deadline = check_deadline(
        state.deadlines.get("rectification"), state.rectification.ordered_at, 5, "working"
    )

    await case.sleep_until(deadline.due_at, after=timedelta(hours=1))
    await until_stage(case, Stage.INVESTIGATING)
    pen = await penalty(case)
    # Repeat offender: one rung higher than the first offence's warning.
    assert (pen.rung, pen.measure) == (1, Measure.FINE)
    assert deadline.last_day in pen.reason
    opened = await audit_payload(case, "penalty_procedure_opened")
    assert (opened["rung"], opened["measure"], opened["_actor"]) == (1, "fine", "system:deadline")

    await case.to_notice()
    persons = [
        {"name": "Editor-in-chief", "role": "editor-in-chief", "measure": "warning"},
        {"name": "Content review lead", "role": "directly responsible manager"}
        | {"measure": "other", "notes": "dismissed"},
    ]
    await case.do("notify_penalty", measure="fine", fine_yuan="50000", responsible_persons=persons)
    await let_defence_window_pass(case)
    await case.do("decide_penalty", measure="fine", fine_yuan="50000", responsible_persons=persons)
    await serve_and_pay(case, "50000")

    assert await outcome(case) is Outcome.PENALIZED
    assert [p.role for p in (await case.state()).responsible_persons] == [
        "editor-in-chief",
        "directly responsible manager",
    ]
    assert await earlier.actions() == [
        "case_opened",
        "filed",
        "penalty_procedure_opened",
        "investigation_reported",
        "prior_notice_given",
        "defence_window_closed",
        "penalty_decided",
        "decision_served",
    ]
    assert await case.actions() == [
        "case_opened",
        "filed",
        "interview_scheduled",
        "interview_recorded",
        "rectification_ordered",
        "deadline_reminder",  # 3 days before
        "deadline_reminder",  # 1 day before
        "penalty_procedure_opened",
        "investigation_reported",
        "prior_notice_given",
        "defence_window_closed",
        "penalty_decided",
        "decision_served",
        "fine_paid",
    ]
    assert await case.documents() == [
        "filing_decision",
        "interview_notice",
        "interview_record",
        "rectification_order",
        "investigation_report",
        "prior_notice",
        "decision_letter",
        "proof_of_service",
    ]


async def test_luoge_unlicensed_news_service_shut_down_with_telecom(opener: Opener) -> None:
    """ "Luoge.com": unlicensed internet news service → investigate (no interview) → shutdown,
    carried out by the telecom authority."""
    case = await opener(
        subject=subject("website", "Luoge.com", domain=f"luoge-{uid()}.com"),
        violation_category="unlicensed_news_service",
        severity="serious",
    )
    policy = (await case.state()).policy
    assert policy is not None and policy.rules.interview_required is False
    await case.do("decide_filing")
    await case.do("open_penalty_procedure", reasons="News service without a licence.")
    pen = await penalty(case)
    assert (pen.rung, pen.measure) == (0, Measure.FINE)  # the category's ladder starts at a fine
    await case.do("record_investigation_report", proposed_measure="shutdown")
    assert (await penalty(case)).measure is Measure.SHUTDOWN
    await case.do("record_legal_review", actor=LEGAL)
    await case.do("notify_penalty", measure="shutdown")
    pen = await let_defence_window_pass(case)  # the party asked for no hearing
    assert pen.hearing_right is True and pen.hearing_requested is False
    assert (await audit_payload(case, "prior_notice_given"))["hearing_right"] is True

    await case.do("decide_penalty", measure="shutdown")
    state = await serve(case)
    assert "payment" not in state.deadlines and state.payment is None
    await acknowledge_referral(case, Authority.TELECOM, Outcome.SHUT_DOWN)

    assert await outcome(case) is Outcome.SHUT_DOWN
    assert await case.actions() == [
        "case_opened",
        "filed",
        "penalty_procedure_opened",
        "investigation_reported",
        "legal_review_approved",
        "prior_notice_given",
        "defence_window_closed",
        "penalty_decided",
        "decision_served",
        "referral_sent",
        "referral_acknowledged",
    ]
    assert await case.documents() == [
        "filing_decision",
        "investigation_report",
        "prior_notice",
        "decision_letter",
        "proof_of_service",
        "referral_letter",
    ]


async def test_religious_information_apps_removed_after_missed_rectification(
    opener: Opener,
) -> None:
    """74 religious-information apps: unlicensed service → (ordered to stop, deadline missed)
    → app removal, carried out by the app stores."""
    case = await opener(
        subject=app("Religious information app", "faith"),
        violation_category="unlicensed_app_service",
    )
    await case.to_rectifying(interview=False)  # no interview for this category
    state = await case.state()
    assert state.rectification.ordered_at is not None
    deadline = check_deadline(
        state.deadlines.get("rectification"), state.rectification.ordered_at, 10, "working"
    )
    await case.sleep_until(deadline.due_at, after=timedelta(hours=1))
    await until_stage(case, Stage.INVESTIGATING)
    pen = await penalty(case)
    assert (pen.rung, pen.measure) == (0, Measure.APP_REMOVAL)

    await case.to_notice()
    await case.do("notify_penalty", measure="app_removal")
    pen = await let_defence_window_pass(case)
    assert pen.hearing_right is True  # removal is treated like a suspension order
    await case.do("decide_penalty", measure="app_removal")
    await serve(case)
    await acknowledge_referral(case, Authority.APP_STORES, Outcome.APP_REMOVED)

    assert await outcome(case) is Outcome.APP_REMOVED
    assert await case.actions() == [
        "case_opened",
        "filed",
        "rectification_ordered",
        "deadline_reminder",
        "deadline_reminder",
        "penalty_procedure_opened",
        "investigation_reported",
        "prior_notice_given",
        "defence_window_closed",
        "penalty_decided",
        "decision_served",
        "referral_sent",
        "referral_acknowledged",
    ]
    assert await case.documents() == [
        "filing_decision",
        "rectification_order",
        "investigation_report",
        "prior_notice",
        "decision_letter",
        "proof_of_service",
        "referral_letter",
    ]


async def test_counterfeit_sites_summary_shutdown_without_interview(opener: Opener) -> None:
    """Counterfeit sites ("Embassy Office in Greece", "Tianjin Subsidy"): found by monitoring,
    shut down with the telecom authority straight away — no interview, no penalty procedure."""
    case = await opener(
        subject=subject(
            "website", "Embassy Office in Greece (counterfeit)", domain=f"emb-gr-{uid()}.com"
        ),
        violation_category="counterfeit_site",
    )
    receipt = await case.do("decide_filing", summary_disposal=True, reasons="Counterfeit site.")
    assert receipt.stage is Stage.REFERRING
    await acknowledge_referral(case, Authority.TELECOM, Outcome.SHUT_DOWN)

    assert await outcome(case) is Outcome.SHUT_DOWN
    actions = await case.actions()
    assert actions == [
        "case_opened",
        "filed_summary_disposal",
        "referral_sent",
        "referral_acknowledged",
    ]
    assert not any(a.startswith("interview") or a.startswith("penalty") for a in actions)
    assert await case.documents() == ["filing_decision", "referral_letter"]
    state = await case.state()
    assert state.penalty is None and state.interviews.held == 0


async def test_iqiyi_algorithm_recommendation_rectified_with_responsible_persons(
    opener: Opener,
) -> None:
    """iQiyi and others: algorithm-recommendation problems → interview → rectify → deal with
    responsible persons → closed as rectified."""
    case = await opener(
        subject=subject("platform", "iQiyi", domain=f"iqiyi-{uid()}.example.com"),
        violation_category="algorithm_recommendation",
    )
    await case.do("decide_filing")
    await case.interview()
    persons = [
        {"name": "Head of recommendation", "role": "directly responsible manager"}
        | {"measure": "other", "notes": "internal accountability"}
    ]
    receipt = await case.do("deal_with_responsible_persons", persons=persons)
    assert receipt.stage is Stage.INTERVIEWED  # noted, the stage does not move
    await case.do("issue_rectification_order")
    state = await case.state()
    assert state.rectification.ordered_at is not None
    check_deadline(
        state.deadlines.get("rectification"), state.rectification.ordered_at, 15, "working"
    )
    await case.do("submit_rectification_report", actor=PARTY)
    receipt = await case.do("record_verification")

    assert await outcome(case) is Outcome.RECTIFIED
    assert receipt.outcome is Outcome.RECTIFIED
    state = await case.state()
    assert [p.name for p in state.responsible_persons] == ["Head of recommendation"]
    assert state.penalty is None
    assert await case.actions() == [
        "case_opened",
        "filed",
        "interview_scheduled",
        "interview_recorded",
        "responsible_persons_dealt_with",
        "rectification_ordered",
        "rectification_reported",
        "verification_passed",
    ]
    assert await case.documents() == [
        "filing_decision",
        "interview_notice",
        "interview_record",
        "rectification_order",
    ]


async def test_platforms_with_multiple_violations_two_rounds_then_fine(opener: Opener) -> None:
    """Tencent, Sina, Douyin, Baidu …: many violation kinds at once → interview → rectify (two
    verification rounds in policy) → fails twice → deal with responsible persons → fine."""
    case = await opener(
        subject=subject("platform", "Douyin", domain=f"douyin-{uid()}.example.com"),
        violation_category="multiple_violations",
    )
    await case.to_rectifying()
    state = await case.state()
    assert state.rectification.ordered_at is not None
    check_deadline(
        state.deadlines.get("rectification"), state.rectification.ordered_at, 15, "working"
    )
    assert state.policy is not None and state.policy.rules.verification_rounds == 2

    await case.do("submit_rectification_report", actor=PARTY)
    receipt = await case.do("record_verification", passed=False, findings="Half the issues remain.")
    state = await case.state()
    assert receipt.stage is Stage.RECTIFYING and state.rectification.report is None  # round 2
    assert state.rectification.ordered_at is not None
    deadline = check_deadline(
        state.deadlines.get("rectification"), state.rectification.ordered_at, 15, "working"
    )
    assert state.rectification.round == 2 and state.penalty is None
    round_two = await audit_payload(case, "rectification_round")
    assert round_two["round"] == 2
    assert round_two["deadlines"]["rectification"]["last_day"] == deadline.last_day

    await case.do("submit_rectification_report", actor=PARTY, summary="Second attempt.")
    receipt = await case.do("record_verification", passed=False, findings="Still failing.")
    assert receipt.stage is Stage.INVESTIGATING
    assert (await penalty(case)).measure is Measure.WARNING

    await case.do("record_investigation_report", proposed_measure="fine")
    await case.do("notify_penalty", measure="fine", fine_yuan="200000")  # refusal to correct
    pen = await let_defence_window_pass(case)
    assert pen.hearing_right is True and pen.hearing_requested is False
    persons = [
        {"name": "Platform governance lead", "role": "directly responsible manager"}
        | {"measure": "warning"}
    ]
    await case.do("deal_with_responsible_persons", persons=persons)
    await case.do("decide_penalty", measure="fine", fine_yuan="200000")
    await serve_and_pay(case, "200000")

    assert await outcome(case) is Outcome.PENALIZED
    assert await case.actions() == [
        "case_opened",
        "filed",
        "interview_scheduled",
        "interview_recorded",
        "rectification_ordered",
        "rectification_reported",
        "verification_failed",
        "rectification_round",
        "rectification_reported",
        "verification_failed",
        "penalty_procedure_opened",
        "investigation_reported",
        "prior_notice_given",
        "defence_window_closed",
        "responsible_persons_dealt_with",
        "penalty_decided",
        "decision_served",
        "fine_paid",
    ]
    assert await case.documents() == [
        "filing_decision",
        "interview_notice",
        "interview_record",
        "rectification_order",
        "investigation_report",
        "prior_notice",
        "decision_letter",
        "proof_of_service",
    ]


DIDI_TURNOVER = "182000000000"
DIDI_FINE = "8026000000"
DIDI_EXECUTIVES = [
    {"name": "Executive A", "role": "chairman and CEO", "measure": "fine", "fine_yuan": "1000000"},
    {"name": "Executive B", "role": "president", "measure": "fine", "fine_yuan": "1000000"},
]


async def test_didi_security_review_fine_after_hearing(opener: Opener) -> None:
    """Didi (2022): network-security review → case filed → investigation → legal review and
    collective decision (major) → prior notice of ¥8.026 bn (within 5% of ¥182 bn turnover)
    and ¥1 m on each of two executives → statement and hearing → the same decision → paid."""
    case = await opener(
        subject=subject(
            "platform",
            "Didi Global",
            app_package=f"com.sdu.didi.p{uid()}",
            domain=f"didi-{uid()}.example.com",
        ),
        violation_category="network_security_review",
        legal_basis="PIPL art. 66; CSL; DSL",
        severity="major",
        office="national",
    )
    await case.do("decide_filing")
    check_handling_limit(await case.state())
    await case.do("open_penalty_procedure", reasons="Findings of the network security review.")
    pen = await penalty(case)
    assert (pen.rung, pen.measure) == (0, Measure.FINE)
    assert pen.legal_review_required and pen.collective_decision_required

    await case.do("record_investigation_report")
    await case.do("record_legal_review", actor=LEGAL)
    assert (await case.state()).stage is Stage.COLLECTIVE_DECISION
    assert "at least three" in await case.refused(
        "record_collective_decision", actor=DIRECTOR, participants=["director", "deputy.a"]
    )
    await case.do("record_collective_decision", actor=DIRECTOR, participants=LEADERS)

    terms: dict[str, Any] = {
        "measure": "fine",
        "prior_year_turnover_yuan": DIDI_TURNOVER,
        "responsible_persons": DIDI_EXECUTIVES,
    }
    # Above 5% of the prior year's turnover (¥9.1 bn): refused.
    reason = await case.refused("notify_penalty", **terms | {"fine_yuan": "10000000000"})
    assert "outside the policy's range" in reason
    # Without the turnover the cap is ¥50 m: refused too.
    assert "outside the policy's range" in await case.refused(
        "notify_penalty", measure="fine", fine_yuan=DIDI_FINE
    )
    await case.do("notify_penalty", **terms | {"fine_yuan": DIDI_FINE})
    pen = await penalty(case)
    assert pen.hearing_right is True
    assert pen.notice_at is not None
    deadlines = (await case.state()).deadlines
    check_deadline(deadlines.get("hearing_request"), pen.notice_at, 5, "working")  # APL 64(1)
    check_deadline(deadlines.get("defence"), pen.notice_at, 5, "working")

    await case.do("record_statement", actor=PARTY, statement="We ask for a lighter penalty.")
    await case.do("request_hearing", actor=PARTY)
    later = (await case.now() + timedelta(days=30)).isoformat()
    assert "may not be an investigator" in await case.refused(
        "schedule_hearing", hearing_at=later, place="Hall 1", chair="officer.li"
    )
    now = await case.now()
    too_soon = now + timedelta(days=3)
    reason = await case.refused(
        "schedule_hearing", hearing_at=too_soon.isoformat(), place="Hall 1", chair=CHAIR
    )
    assert "7 working days" in reason and "64" in reason
    seventh, _ = expected_last_day(local(now), 7, "working")
    assert seventh.isoformat() in reason
    # The first working day after the seventh working day, 09:30 local.
    hearing_day, _ = expected_last_day(seventh, 1, "working")
    hearing_at = datetime.combine(hearing_day, time(9, 30), SHANGHAI)
    await case.do(
        "schedule_hearing", hearing_at=hearing_at.isoformat(), place="Hall 1", chair=CHAIR
    )
    assert "before it is held" in await case.refused("record_hearing")
    await case.sleep_until(hearing_at, after=timedelta(hours=2))
    await case.do("record_hearing", actor=CHAIR)

    await case.do(
        "decide_penalty", **terms | {"fine_yuan": DIDI_FINE}, reasons="Proven after the hearing."
    )
    state = await serve_and_pay(case, DIDI_FINE)

    assert await outcome(case) is Outcome.PENALIZED
    assert state.penalty is not None and state.penalty.decided_at is not None
    assert state.penalty.fine_yuan == Decimal(DIDI_FINE)
    assert state.payment is not None and state.payment.paid_yuan == Decimal(DIDI_FINE)
    assert state.payment.surcharge_yuan == Decimal("0")
    assert [(p.name, p.fine_yuan) for p in state.responsible_persons] == [
        ("Executive A", Decimal("1000000")),
        ("Executive B", Decimal("1000000")),
    ]
    assert await case.actions() == [
        "case_opened",
        "filed",
        "penalty_procedure_opened",
        "investigation_reported",
        "legal_review_approved",
        "collective_decision_approved",
        "prior_notice_given",
        "statement_recorded",
        "hearing_requested",
        "hearing_scheduled",
        "hearing_held",
        "penalty_decided",
        "decision_served",
        "fine_paid",
    ]
    assert await case.documents() == [
        "filing_decision",
        "investigation_report",
        "prior_notice",
        "hearing_notice",
        "hearing_record",
        "decision_letter",
        "proof_of_service",
    ]


async def test_personal_information_campaign_batch_numbered_without_gaps(
    opener: Opener, pool: asyncpg.Pool
) -> None:
    """294 apps ("Chaofan Cleanup Manager"): illegal personal-information processing, a batch
    from one campaign — five cases at once, each rectified, each with its own documents, every
    series of the office numbered 1, 2, 3 … without gaps or duplicates."""
    office = f"qinglang-{uid()}"
    cases = [
        await opener(
            subject=app(f"Chaofan Cleanup Manager {n}", "chaofan"),
            violation_category="personal_information",
            legal_basis="Personal Information Protection Law art. 66",
            office=office,
        )
        for n in range(5)
    ]

    async def rectify(case: Case) -> None:
        await case.to_rectifying(interview=False)
        state = await case.state()
        assert state.rectification.ordered_at is not None
        check_deadline(
            state.deadlines.get("rectification"), state.rectification.ordered_at, 10, "working"
        )
        await case.do("submit_rectification_report", actor=PARTY)
        await case.do("record_verification")

    await asyncio.gather(*(rectify(case) for case in cases))  # the campaign, concurrently

    for case in cases:
        assert await outcome(case) is Outcome.RECTIFIED
        assert await case.actions() == [
            "case_opened",
            "filed",
            "rectification_ordered",
            "rectification_reported",
            "verification_passed",
        ]
        assert await case.documents() == ["filing_decision", "rectification_order"]

    rows = await pool.fetch(
        "SELECT case_id, kind, year, sequence, number FROM documents WHERE office = $1", office
    )
    assert len(rows) == 10
    for kind in ("filing_decision", "rectification_order"):
        series = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["sequence"])
        assert [r["sequence"] for r in series] == [1, 2, 3, 4, 5]
        assert {r["case_id"] for r in series} == {case.case_id for case in cases}
        for r in series:
            assert r["number"] == f"{office}-{kind}-{r['year']}-{r['sequence']:04d}"


async def test_kongkong_voice_apps_without_security_assessment_removed(opener: Opener) -> None:
    """44 apps ("Kongkong Voice"): no required security assessment → app removal through the
    penalty procedure, carried out by the app stores."""
    case = await opener(
        subject=app("Kongkong Voice", "kongkong"),
        violation_category="security_assessment_missing",
    )
    await case.do("decide_filing")
    await case.do("open_penalty_procedure", reasons="Launched without a security assessment.")
    pen = await penalty(case)
    assert (pen.rung, pen.measure) == (0, Measure.APP_REMOVAL)
    await case.to_notice()
    assert "no such measure" in await case.refused("notify_penalty", measure="fine", fine_yuan="1")
    await case.do("notify_penalty", measure="app_removal")
    pen = await let_defence_window_pass(case)
    assert pen.hearing_right is True
    await case.do("decide_penalty", measure="app_removal")
    await serve(case)
    await acknowledge_referral(case, Authority.APP_STORES, Outcome.APP_REMOVED)

    assert await outcome(case) is Outcome.APP_REMOVED
    assert await case.actions() == [
        "case_opened",
        "filed",
        "penalty_procedure_opened",
        "investigation_reported",
        "prior_notice_given",
        "defence_window_closed",
        "penalty_decided",
        "decision_served",
        "referral_sent",
        "referral_acknowledged",
    ]
    assert await case.documents() == [
        "filing_decision",
        "investigation_report",
        "prior_notice",
        "decision_letter",
        "proof_of_service",
        "referral_letter",
    ]
    row = await case.register()
    assert (row["stage"], row["outcome"]) == ("closed", "app_removed")


# --- rules the named cases ran into (found as bugs, now fixed) ---------------------------------


async def test_didi_decision_may_not_fine_executives_beyond_the_notice(opener: Opener) -> None:
    """Didi row, APL 44/45: the executives' fines are part of the penalty. A decision may not
    fine them more than the prior notice proposed, nor fine someone the notice did not name."""
    case = await opener(
        subject=subject("platform", "Didi Global", app_package=f"com.sdu.didi.p{uid()}"),
        violation_category="network_security_review",
    )
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    await case.to_notice()
    noticed = [dict(p, fine_yuan="500000") for p in DIDI_EXECUTIVES]
    terms = {"measure": "fine", "fine_yuan": DIDI_FINE, "prior_year_turnover_yuan": DIDI_TURNOVER}
    await case.do("notify_penalty", **terms, responsible_persons=noticed)
    await let_defence_window_pass(case)

    raised = "heavier than the prior notice"
    assert raised in await case.refused(
        "decide_penalty",
        **terms,
        responsible_persons=DIDI_EXECUTIVES,  # ¥1 m each, not ¥500 k
    )
    extra = {"name": "Executive C", "role": "CFO", "measure": "fine", "fine_yuan": "100000"}
    assert raised in await case.refused(
        "decide_penalty", **terms, responsible_persons=[*noticed, extra]
    )


async def test_responsible_person_fines_stay_within_the_policy(opener: Opener) -> None:
    """Taobao / Weibo rows: dealing with responsible persons records discipline; a fine on a
    person is a penalty, decided only through the procedure with prior notice (APL 44)."""
    case = await opener(
        subject=subject("platform", "Taobao", domain=f"taobao-{uid()}.example.com"),
        violation_category="prohibited_information",
    )
    await case.do("decide_filing")
    person = {"name": "Operations lead", "role": "directly responsible manager"}
    reason = await case.refused(
        "deal_with_responsible_persons",
        persons=[person | {"measure": "fine", "fine_yuan": "99999999"}],
    )
    assert "decided through the penalty procedure, after prior notice" in reason


async def test_interview_required_category_orders_only_after_an_interview(
    opener: Opener,
) -> None:
    """Taobao / Weibo / iQiyi / multiple-violations rows: their categories have
    `interview_required: true`, so a rectification order before any interview is refused."""
    case = await opener(
        subject=subject("platform", "Taobao", domain=f"taobao-{uid()}.example.com"),
        violation_category="prohibited_information",
    )
    policy = (await case.state()).policy
    assert policy is not None and policy.rules.interview_required is True
    await case.do("decide_filing")
    assert "interview" in await case.refused("issue_rectification_order")
