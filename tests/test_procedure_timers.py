"""Rules that run on timers, over days and months on the time-skipping server: payment and
the late surcharge (cap, appeal pause), court enforcement, referrals nobody acknowledges,
the filing and handling limits, provisional deadlines recomputed when the calendar arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from domain.models import Deadline, Outcome, Stage
from ops.cli import main as rectify
from tests.case_driver import PARTY, SUPERVISOR, Case, open_case
from tests.conftest import POLICIES, scratch_database
from wiring.db import create_pool
from wiring.settings import REPO_ROOT
from worker.main import build_worker

EXAMPLE_2027 = REPO_ROOT / "ops" / "examples" / "calendar-2027.yaml"


@pytest.fixture
async def fined(
    ts_env: WorkflowEnvironment, ts_worker: object, pool: asyncpg.Pool, task_queue: str
) -> Case:
    """A case whose ¥20,000 fine was decided and served today."""
    case = await open_case(ts_env, pool, task_queue)
    await case.do("decide_filing")
    await case.do("open_penalty_procedure")
    await case.to_notice()
    await case.do("notify_penalty", measure="fine", fine_yuan="20000")
    defence = (await case.state()).deadlines["defence"]
    await case.sleep_until(defence.due_at, after=timedelta(hours=1))
    await case.do("decide_penalty", measure="fine", fine_yuan="20000")
    await case.do("serve_decision", served_at=(await case.now()).isoformat())
    return case


async def payment_deadline(case: Case) -> tuple[date, datetime]:
    state = await case.state()
    deadline = state.deadlines["payment"]
    assert (deadline.days, deadline.kind) == (15, "calendar")
    assert state.payment is not None and state.payment.due_last_day == deadline.last_day
    return date.fromisoformat(deadline.last_day), deadline.due_at


async def test_payment_in_time_closes_the_case(fined: Case) -> None:
    await payment_deadline(fined)
    assert "¥20,000.00 is due" in await fined.refused(
        "record_payment", amount_yuan="19999", paid_at=(await fined.now()).isoformat()
    )
    receipt = await fined.do(
        "record_payment", amount_yuan="20000", paid_at=(await fined.now()).isoformat()
    )
    assert (receipt.stage, receipt.outcome) == (Stage.CLOSED, Outcome.PENALIZED)


async def test_late_surcharge_pauses_while_an_appeal_is_pending(fined: Case) -> None:
    last_day, due_at = await payment_deadline(fined)
    await fined.sleep_until(due_at, after=timedelta(hours=1))  # the day after the last day
    state = await fined.state()
    assert state.stage is Stage.ENFORCEMENT
    assert (await fined.documents())[-1] == "payment_reminder"

    now = await fined.now()
    one_day = await fined.refused("record_payment", amount_yuan="20000", paid_at=now.isoformat())
    assert "late surcharge ¥600.00" in one_day  # 3% of ¥20,000 for one day

    await fined.do("record_appeal", kind="reconsideration", event="filed", at=now.isoformat())
    await fined.env.sleep(timedelta(days=5))
    concluded = await fined.now()
    await fined.do(
        "record_appeal", kind="reconsideration", event="concluded", at=concluded.isoformat()
    )
    appeals = (await fined.state()).appeals
    expected_pause = [(last_day + timedelta(days=n)).isoformat() for n in range(1, 6)]
    assert appeals.paused_days == expected_pause
    # Six days late, five of them paused: one day of surcharge.
    receipt = await fined.do("record_payment", amount_yuan="20600", paid_at=concluded.isoformat())
    assert receipt.outcome is Outcome.PENALIZED
    surcharge = await fined.pool.fetchval(
        "SELECT payload->>'surcharge_yuan' FROM case_audit WHERE case_id = $1"
        " AND action = 'fine_paid'",
        fined.case_id,
    )
    assert Decimal(surcharge) == Decimal("600.00")


async def test_surcharge_is_capped_at_the_fine_and_court_enforcement_follows(
    fined: Case,
) -> None:
    _, due_at = await payment_deadline(fined)
    await fined.sleep_until(due_at, after=timedelta(days=40))
    actions = await fined.actions()
    assert "payment_reminder_sent" in actions and "court_enforcement_applied" in actions
    # The reminder's step set the enforcement deadline; the application settled it.
    reminder = await fined.pool.fetchval(
        "SELECT payload FROM case_audit WHERE case_id = $1 AND action = 'payment_reminder_sent'",
        fined.case_id,
    )
    enforcement = Deadline.model_validate(reminder["deadlines"]["enforcement"])
    assert enforcement.kind == "working"
    assert enforcement.days == 10
    state = await fined.state()
    assert "enforcement" not in state.deadlines
    assert state.payment is not None and state.payment.enforcement_applied_at is not None
    assert state.payment.enforcement_applied_at >= enforcement.due_at
    assert (await fined.documents())[-2:] == ["payment_reminder", "enforcement_application"]
    now = (await fined.now()).isoformat()
    # 40 days x 3% = 120% of the fine, capped at 100%: ¥40,000 in all.
    assert "¥40,000.00 is due" in await fined.refused(
        "record_payment", amount_yuan="39999", paid_at=now
    )
    receipt = await fined.do("record_payment", amount_yuan="40000", paid_at=now)
    assert receipt.outcome is Outcome.PENALIZED


@pytest.mark.usefixtures("ts_worker")
async def test_referral_nobody_acknowledges_goes_to_a_supervisor(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue)
    await case.do("decide_filing")
    await case.do("refer", authority="market_regulator", reasons="Price fraud on the site.")
    state = await case.state()
    referral = state.referrals[0]
    assert referral.status == "sent" and referral.letter_number is not None
    acknowledgement = state.deadlines["referral:1:acknowledgement"]
    await case.sleep_until(acknowledgement.due_at, after=timedelta(hours=1))
    state = await case.state()
    assert state.referrals[0].overdue == ["referral_unacknowledged"]
    assert "referral_unacknowledged:1" in state.needs_supervisor
    assert state.stage is Stage.FILED  # the case itself goes on
    await case.do("acknowledge_referral", actor="market.regulator", referral_id=1)
    state = await case.state()
    assert state.referrals[0].status == "acknowledged"
    assert "referral:1:acknowledgement" not in state.deadlines
    assert (await case.actions())[-3:] == [
        "referral_sent",
        "referral_unacknowledged",
        "referral_acknowledged",
    ]


@pytest.mark.usefixtures("ts_worker")
async def test_criminal_referral_approval_and_transfer_on_their_own_timers(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue)
    await case.do("decide_filing")
    assert "transferred to the police" in await case.refused(
        "refer", authority="market_regulator", criminal=True
    )
    await case.do("refer", authority="police", criminal=True, reasons="Fraud over the limit.")
    state = await case.state()
    referral = state.referrals[0]
    assert referral.status == "awaiting_approval"
    approval = state.deadlines["referral:1:approval"]
    assert (approval.days, approval.kind) == (3, "calendar")
    await case.sleep_until(approval.due_at, after=timedelta(hours=1))
    assert (await case.state()).referrals[0].overdue == ["referral_approval_overdue"]

    await case.do("approve_referral", actor="agency.head", referral_id=1)
    state = await case.state()
    referral = state.referrals[0]
    assert "referral:1:approval" not in state.deadlines
    assert referral.transfer_due_at is not None
    assert referral.transfer_due_at - await case.now() <= timedelta(hours=24)
    await case.env.sleep(timedelta(hours=25))
    assert (await case.state()).referrals[0].overdue[-1] == "referral_transfer_overdue"
    await case.do("record_transfer", referral_id=1)
    await case.do("acknowledge_referral", actor="police", referral_id=1)
    assert (await case.documents())[-1] == "referral_letter"
    assert "approve the referral: referral 1 is acknowledged" in await case.refused(
        "approve_referral", actor="agency.head", referral_id=1
    )


@pytest.mark.usefixtures("ts_worker")
async def test_handling_limit_flags_near_and_past_then_extension(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue)
    await case.do("decide_filing")
    state = await case.state()
    limit = state.deadlines["handling"]
    assert (limit.days, limit.kind) == (90, "calendar")
    assert state.policy is not None
    warning = state.policy.limits.handling_warning_days
    await case.sleep_until(limit.due_at, after=-timedelta(days=warning - 1))
    assert (await case.state()).handling_flags == ["handling_limit_near"]
    await case.sleep_until(limit.due_at, after=timedelta(hours=1))
    state = await case.state()
    assert state.handling_flags == ["handling_limit_near", "handling_limit_exceeded"]
    assert "handling_limit_exceeded" in state.needs_supervisor
    await case.do("extend_handling_limit", actor=SUPERVISOR, days=30)
    state = await case.state()
    assert state.deadlines["handling"].due_at > limit.due_at
    assert state.handling_flags == [] and "handling_limit_exceeded" not in state.needs_supervisor
    assert (await case.actions())[-3:] == [
        "handling_limit_near",
        "handling_limit_exceeded",
        "handling_limit_extended",
    ]


@pytest.mark.usefixtures("ts_worker")
async def test_filing_decision_overdue_and_its_one_extension(
    ts_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    case = await open_case(ts_env, pool, task_queue)
    deadline = (await case.state()).deadlines["filing"]
    assert (deadline.days, deadline.kind) == (15, "working")
    await case.sleep_until(deadline.due_at, after=timedelta(hours=1))
    assert "filing_overdue" in (await case.state()).needs_supervisor
    await case.do("extend_filing_deadline", actor=SUPERVISOR)
    state = await case.state()
    extended = state.deadlines["filing"]
    assert extended.start_day == deadline.last_day and state.filing.extended
    assert "extended once already" in await case.refused("extend_filing_deadline", actor=SUPERVISOR)
    assert (await case.do("decide_filing")).stage is Stage.FILED


# --- the calendar arrives ----------------------------------------------------------------------


@pytest.fixture
async def scratch_pool(pg_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A database of its own: this test loads a year the shared one must not have."""
    async with scratch_database(pg_dsn, seeded=True) as dsn:
        scratch = await create_pool(dsn)
        yield dsn, scratch
        await scratch.close()


async def test_provisional_deadline_is_recomputed_when_the_year_is_loaded(
    ts_env: WorkflowEnvironment,
    scratch_pool: tuple[str, asyncpg.Pool],
    task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn, scratch = scratch_pool
    async with build_worker(ts_env.client, scratch, task_queue, POLICIES):
        case = await open_case(ts_env, scratch, task_queue)
        await case.to_rectifying(period_days=30)  # runs into 2027: no official data
        before = (await case.state()).deadlines["rectification"]
        assert before.provisional and before.provisional_years == [2027]
        assert (await case.register())["deadline_provisional"] is True

        # The operator loads 2027; the CLI tells the open provisional cases.
        monkeypatch.setenv("DATABASE_URL", dsn)
        monkeypatch.setenv("TEMPORAL_ADDRESS", ts_env.client.service_client.config.target_host)
        load = ["calendar", "load", str(EXAMPLE_2027), "--by", "operator.wu"]
        assert await asyncio.to_thread(rectify, load) == 0
        assert "told 1 open cases" in capsys.readouterr().out
        for _ in range(100):
            if "deadline_recomputed" in await case.actions():
                break
            await ts_env.sleep(timedelta(seconds=1))
        after = (await case.state()).deadlines["rectification"]
        assert not after.provisional
        assert "2027-01-01" in after.skipped_days  # New Year's Day, a Friday
        assert after.due_at > before.due_at
        assert (await case.register())["deadline_provisional"] is False

        # Across Spring Festival 2027 (Feb 6-14) and its make-up Saturday (Feb 20).
        spring = await open_case(ts_env, scratch, task_queue)
        await spring.do("decide_filing")
        await spring.sleep_until(datetime.fromisoformat("2027-02-01T10:00:00+08:00"))
        await spring.interview()
        await spring.do("issue_rectification_order", period_days=10)
        deadline = (await spring.state()).deadlines["rectification"]
        assert deadline.last_day == "2027-02-20" and not deadline.provisional
        assert deadline.makeup_workdays == ["2027-02-20"]
        assert "2027-02-08" in deadline.skipped_days
        await spring.do("submit_rectification_report", actor=PARTY)
