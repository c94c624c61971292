"""`GET /cases/{id}/history`: the timeline of recorded histories (pure), and of a case driven
through the API on a real Temporal dev server with a real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api import timeline
from api.timeline import AuditRow, DocumentRow, TimelineEntry
from domain.case import CaseRun
from domain.commands import DetectionsArrived
from domain.models import case_workflow_id
from tests.conftest import new_case_id, open_case_input
from tests.keys import TEST_KEYRING
from tests.test_api_integration import api_client
from workflows.case import CaseWorkflow
from workflows.search import case_search_attributes

HISTORIES = Path(__file__).resolve().parent / "histories"


def recorded(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"case:{name}", (HISTORIES / f"{name}.json").read_text())


def of_kind(entries: list[TimelineEntry], *kinds: str) -> list[TimelineEntry]:
    return [entry for entry in entries if entry.kind in kinds]


def json_payload(data: bytes) -> Payloads:
    return Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=data)])


# --- pure: recorded histories -------------------------------------------------------------------


FINED = "case-v3-fined-after-hearing"
MISSED = "case-v3-deadline-missed-warned"


def test_fined_after_hearing_lists_every_command_in_order_with_its_actor() -> None:
    entries = timeline.temporal_entries(recorded(FINED))
    commands = [(e.step, e.who) for e in of_kind(entries, "command")]
    assert commands == [
        ("decide_filing", "officer.li"),
        ("open_penalty_procedure", "officer.li"),
        ("record_investigation_report", "officer.li"),
        ("notify_penalty", "officer.li"),
        ("request_hearing", "party:rep"),
        ("schedule_hearing", "officer.li"),
        ("record_hearing", "officer.li"),
        ("decide_penalty", "officer.li"),
        ("serve_decision", "officer.li"),
        ("record_payment", "officer.li"),
    ]
    assert [e.event_id for e in entries] == sorted(e.event_id or 0 for e in entries)
    started, completed = entries[0], entries[-1]
    assert (started.step, started.who) == ("workflow_started", "officer.li")
    assert (completed.step, completed.data["outcome"]) == ("workflow_completed", "penalized")


def test_fined_after_hearing_finds_the_hearing_request_window_and_the_payment() -> None:
    entries = timeline.temporal_entries(recorded(FINED))
    timers = [(e.step, e.data["summary"], e.data.get("after")) for e in of_kind(entries, "timer")]
    # The statement-and-defence window (in which the party may ask for a hearing) ends early
    # because the party asked for one; the payment timer ends with the payment.
    defence = next(t[1] for t in timers if t[1].startswith("defence due "))
    assert ("timer_set", defence, None) in timers
    assert ("timer_cancelled", defence, "command request_hearing") in timers
    payment_due = next(t[1] for t in timers if t[1].startswith("payment due "))
    assert ("timer_cancelled", payment_due, "command record_payment") in timers
    assert not [t for t in timers if t[0] == "timer_fired"]

    payment = next(e for e in entries if e.step == "record_payment")
    assert payment.data["input"]["amount_yuan"] == "200000"
    assert payment.detail == "record_payment done"
    # Each step is one local activity (the marker keeps its result): its number, documents and
    # the deadlines it counted.
    steps = [e for e in entries if e.step == "record_step"]
    assert [e.data["seq"] for e in steps] == list(range(2, 12))
    assert steps[-1].detail == "step 11 written"
    assert any("-hearing_notice-" in e.detail for e in steps)
    assert any(e.detail.startswith("case registered: policy 2026.1") for e in entries)
    activities = of_kind(entries, "activity")
    assert all(e.data["attempts"] == 1 for e in activities)
    # The opening is a regular activity; every later step a local one.
    assert [e.step for e in activities if not e.data.get("local")] == ["open_case"]


def test_fired_timers_say_which_deadline_and_what_followed() -> None:
    history = recorded(MISSED)
    fired = [e for e in timeline.temporal_entries(history) if e.step == "timer_fired"]
    due = fired[0].data["summary"]
    assert due.startswith("rectification due ")
    # Alone, a history names the step a timer led to; with the audit trail, its action.
    assert [e.data["then"] for e in fired] == ["step 6", "step 7", "step 8", "step 12"]
    actions = {6: "deadline_reminder", 7: "deadline_reminder", 8: "penalty_procedure_opened"}
    named = [
        (e.data["summary"], e.data["then"])
        for e in timeline.temporal_entries(history, actions=actions | {12: "defence_closed"})
        if e.step == "timer_fired"
    ]
    assert named[:3] == [
        (due, "deadline_reminder"),
        (due, "deadline_reminder"),
        (due, "penalty_procedure_opened"),
    ]
    assert named[3][0].startswith("defence due ") and named[3][1] == "defence_closed"
    assert fired[-1].detail.endswith("; then step 12")
    assert timeline.workflow_status(history) == "completed"


def test_retried_activity_shows_its_attempts() -> None:
    events = list(recorded(FINED).events)
    marker = next(e for e in events if e.HasField("marker_recorded_event_attributes"))
    data = marker.marker_recorded_event_attributes.details["data"].payloads[0]
    data.data = json.dumps({**json.loads(data.data), "attempt": 3}).encode()
    entries = timeline.temporal_entries(WorkflowHistory("case:x", events))
    retried = next(e for e in entries if e.kind == "activity" and e.data.get("local"))
    assert (retried.step, retried.data["attempts"]) == ("record_step", 3)
    assert retried.detail.endswith("(after 3 attempts)")


def test_update_refused_by_its_handler_and_a_signal_are_shown() -> None:
    events = list(recorded(FINED).events)
    completed = next(
        e for e in events if e.HasField("workflow_execution_update_completed_event_attributes")
    )
    outcome = completed.workflow_execution_update_completed_event_attributes.outcome
    outcome.failure.message = "cannot decide the filing: case is at stage filed"
    last = events[-1]
    signal = HistoryEvent(
        event_id=last.event_id + 1,
        event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    )
    signal.event_time.CopyFrom(last.event_time)
    attrs = signal.workflow_execution_signaled_event_attributes
    attrs.signal_name, attrs.identity = "calendar_updated", "ops-cli"
    attrs.input.CopyFrom(json_payload(b'{"year":2027}'))
    entries = timeline.temporal_entries(WorkflowHistory("case:x", [*events, signal]))

    refused = of_kind(entries, "refused")
    assert [(e.step, e.who) for e in refused] == [("decide_filing", "officer.li")]
    assert refused[0].detail.endswith("case is at stage filed")
    assert [(e.step, e.who, e.detail) for e in of_kind(entries, "signal")] == [
        ("calendar_updated", "ops-cli", "calendar_updated(year=2027)")
    ]


def test_merge_orders_by_time_then_source_then_audit_seq_then_event_id() -> None:
    at = datetime(2026, 12, 1, 8, tzinfo=UTC)
    audit = [
        AuditRow(seq=s, action=a, from_stage="f", to_stage="t", actor="x", occurred_at=at)
        for s, a in ((2, "second"), (1, "first"))
    ]
    documents = [
        DocumentRow(kind=kind, number=f"n-{kind}", title="Notice", actor="x", issued_at=issued)
        for kind, issued in (("later", at + timedelta(1)), ("same", at))
    ]
    temporal = [
        TimelineEntry(
            at=at, kind="activity", step=f"e{i}", detail="", source="temporal", event_id=i
        )
        for i in (9, 3)
    ]
    merged = timeline.merge(
        timeline.document_entries(documents), timeline.audit_entries(audit), temporal
    )
    assert [e.step for e in merged] == ["e3", "e9", "first", "second", "same", "later"]
    assert merged[-1].detail == "Notice (n-later)"


def test_workflow_steps_carry_the_workflow_clock_like_the_audit_trail() -> None:
    """An audit row's occurred_at (and its documents' issued_at) is workflow.now(): a command
    and the step it wrote, in one workflow task, carry that instant, not the later time the
    server wrote their events."""
    history = recorded(FINED)
    entries = timeline.temporal_entries(history)
    results = {
        event.event_id: json.loads(
            event.marker_recorded_event_attributes.details["result"].payloads[0].data
        )
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
    }
    checked = 0
    for command, step in itertools.pairwise(entries):
        if command.kind == "command" and step.step == "record_step":
            assert step.at == command.at, command.step
            for document in results[step.event_id or 0]["documents"]:
                assert datetime.fromisoformat(document["issued_at"]) == step.at, command.step
                checked += 1
    assert checked >= 6


# --- through the API on the dev server ----------------------------------------------------------


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment,
    dev_worker: Worker,
    pg_dsn: str,
    pool: asyncpg.Pool,
    task_queue: str,
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(dev_env, pg_dsn, task_queue) as client:
        yield client


def case_body(case_id: str) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "subject": {
            "kind": "app",
            "name": "Chaofan Cleanup Manager",
            # Its own subject per case: never a repeat offender by accident.
            "identifiers": {"app_package": f"com.t{uuid.uuid4().hex[:10]}.cleanup"},
        },
        "violation_category": "personal_information",
        "legal_basis": "PIPL art. 66",
        "severity": "serious",
        "office": "shanghai",
        "opened_by": "officer.chen",
    }


# (path, body, the update it sends, the audit action it records)
FULL_PATH: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "filing-decision",
        {"actor": "officer.chen", "decision": "filed", "reasons": "Monitoring evidence."},
        "decide_filing",
        "filed",
    ),
    (
        "interview/schedule",
        {
            "actor": "officer.chen",
            "scheduled_for": "2099-01-05T09:30:00+08:00",
            "place": "Shanghai office",
            "reason": "unlawful collection of personal information",
            "attendees_required": ["person in charge"],
        },
        "schedule_interview",
        "interview_scheduled",
    ),
    (
        "interview/record",
        {
            "actor": "officer.chen",
            "officials": ["officer.chen", "officer.zhou"],
            "attended_by": ["CEO Wang"],
            "summary": "Admitted; will stop the collection.",
        },
        "record_interview",
        "interview_recorded",
    ),
    (
        "rectification-order",
        {"actor": "officer.chen", "period_days": 10, "requirements": "Stop the collection."},
        "issue_rectification_order",
        "rectification_ordered",
    ),
    (
        "rectification-report",
        {"actor": "party:chaofan", "summary": "SDK removed.", "evidence": ["v2.1 build"]},
        "submit_rectification_report",
        "rectification_reported",
    ),
    (
        "verification",
        {"actor": "officer.zhou", "passed": True, "findings": "Collection stopped."},
        "record_verification",
        "verification_passed",
    ),
]


async def post(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Any:
    response = await api.post(path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.mark.integration
async def test_history_of_a_fully_driven_case_lists_every_step_in_order(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    case_id = new_case_id()
    await post(api, "/cases", case_body(case_id))
    deadline_day = ""
    for path, body, _, _ in FULL_PATH:
        if path == "interview/schedule":  # a second ahead: the dev server's clock is real
            at = datetime.now(UTC) + timedelta(seconds=1)
            body = body | {"scheduled_for": at.isoformat()}
        if path == "interview/record":  # once its time has come
            await asyncio.sleep((at - datetime.now(UTC)).total_seconds() + 0.3)
        await post(api, f"/cases/{case_id}/{path}", body)
        if path == "rectification-order":
            deadline_day = (await api.get(f"/cases/{case_id}")).json()["deadline"]["last_day"]
    await dev_env.client.get_workflow_handle(f"case:{case_id}").result()

    response = await api.get(f"/cases/{case_id}/history")
    assert response.status_code == 200, response.text
    assert "content-disposition" not in response.headers
    body = response.json()
    assert (body["case_id"], body["workflow_id"]) == (case_id, f"case:{case_id}")
    assert (body["stage"], body["outcome"], body["workflow_status"]) == (
        "closed",
        "rectified",
        "completed",
    )
    assert (
        body["temporal_ui_url"]
        == f"http://localhost:8233/namespaces/default/workflows/case%3A{case_id}"
    )
    assert body["temporal_history_available"] is True and len(body["run_ids"]) == 1
    entries = [TimelineEntry.model_validate(e) for e in body["timeline"]]
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    assert entries[0].step == "workflow_started" and entries[0].who == "officer.chen"
    # The last step and the workflow's end are one workflow task: its events, then its audit row.
    completed = [e for e in entries if e.source == "temporal"][-1]
    assert (completed.step, completed.data["outcome"]) == ("workflow_completed", "rectified")
    assert entries[-1].step == "verification_passed"

    audit = [(e.step, e.who) for e in entries if e.kind == "audit"]
    assert audit == [
        ("case_opened", "officer.chen"),
        ("filed", "officer.chen"),
        ("interview_scheduled", "officer.chen"),
        ("interview_recorded", "officer.chen"),
        ("rectification_ordered", "officer.chen"),
        ("rectification_reported", "party:chaofan"),
        ("verification_passed", "officer.zhou"),
    ]
    commands = [(e.step, e.who) for e in entries if e.kind == "command"]
    assert commands == [(update, sent["actor"]) for _, sent, update, _ in FULL_PATH]
    steps = [(e.kind, e.step) for e in entries]
    for _, _, update, action in FULL_PATH:  # each command before the audit row it produced
        assert steps.index(("command", update)) < steps.index(("audit", action))

    numbers = await pool.fetch(
        "SELECT kind, number FROM documents WHERE case_id = $1 ORDER BY id", case_id
    )
    documents = [(e.step, e.data["number"]) for e in entries if e.kind == "document"]
    assert documents == [(row["kind"], row["number"]) for row in numbers]
    assert [kind for kind, _ in documents] == [
        "filing_decision",
        "interview_notice",
        "interview_record",
        "rectification_order",
    ]
    # Each step is one local activity; its entry names the documents the step issued.
    written = " ".join(e.detail for e in entries if e.step == "record_step")
    assert all(number in written for _, number in documents)

    summary = f"rectification due {deadline_day}"
    timers = [(e.step, e.data["summary"]) for e in entries if e.kind == "timer"]
    assert ("timer_set", summary) in timers
    set_at = next(i for i, e in enumerate(entries) if e.data.get("summary") == summary)
    cancelled = next(
        e for e in entries if e.step == "timer_cancelled" and e.data["summary"] == summary
    )
    assert cancelled.data["after"] == "command submit_rectification_report"
    assert set_at < steps.index(("command", "submit_rectification_report"))
    assert set_at > steps.index(("command", "issue_rectification_order"))

    # The audit rows and the steps that wrote them read the same (workflow) clock.
    steps_at = {e.data["seq"]: e.at for e in entries if e.step == "record_step"}
    for entry in entries:
        if entry.kind == "audit" and entry.step != "case_opened":
            assert steps_at[entry.seq] == entry.at, entry.step


@pytest.mark.integration
async def test_history_download_is_an_attachment(api: httpx.AsyncClient) -> None:
    case_id = new_case_id()
    await post(api, "/cases", case_body(case_id))
    await post(api, f"/cases/{case_id}/filing-decision", FULL_PATH[0][1])
    response = await api.get(f"/cases/{case_id}/history", params={"format": "json", "download": 1})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        f'attachment; filename="case-{case_id}-history.json"'
    )
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["workflow_status"] == "running"
    assert [e["step"] for e in body["timeline"] if e["kind"] == "audit"] == ["case_opened", "filed"]

    bad = await api.get(f"/cases/{case_id}/history", params={"format": "xml"})
    assert bad.status_code == 422 and bad.json()["type"].endswith("/invalid-request")


@pytest.mark.integration
async def test_unknown_case_history_is_404(api: httpx.AsyncClient) -> None:
    missing = new_case_id()
    response = await api.get(f"/cases/{missing}/history")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"no case {missing}"


@pytest.mark.integration
async def test_history_gone_from_temporal_comes_from_the_audit_trail_and_documents(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    case_id = new_case_id()
    await post(api, "/cases", case_body(case_id))
    await post(api, f"/cases/{case_id}/filing-decision", FULL_PATH[0][1])
    await dev_env.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace="default", workflow_execution=WorkflowExecution(workflow_id=f"case:{case_id}")
        )
    )
    handle = dev_env.client.get_workflow_handle(f"case:{case_id}")
    for _ in range(100):  # deletion is asynchronous
        try:
            await handle.describe()
        except RPCError as exc:
            assert exc.status == RPCStatusCode.NOT_FOUND
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the workflow was not deleted")

    response = await api.get(f"/cases/{case_id}/history")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["temporal_history_available"] is False
    assert "retention" in body["temporal_history_note"]
    assert (body["stage"], body["workflow_status"], body["run_ids"]) == ("filed", None, [])
    assert {e["source"] for e in body["timeline"]} == {"audit", "documents"}
    # The filing decision's document and audit row are one step, one instant: the row first.
    assert [(e["kind"], e["step"], e["who"]) for e in body["timeline"]] == [
        ("audit", "case_opened", "officer.chen"),
        ("audit", "filed", "officer.chen"),
        ("document", "filing_decision", "officer.chen"),
    ]


def test_a_single_run_begins_opened_and_is_summed_up() -> None:
    history = recorded(FINED)
    shown = timeline.run_shown("run-1", history)
    assert (shown.run_id, shown.run, shown.begins, shown.status, shown.follows) == (
        "run-1",
        1,
        "opened",
        "completed",
        None,
    )
    started = timeline.temporal_entries(history)[0]
    assert started.step == "workflow_started"
    assert started.data == {"run": 1, "begins": "opened"}


# --- a case of several runs ---------------------------------------------------------------------


@pytest.mark.integration
async def test_history_of_a_continued_case_follows_every_run_oldest_first(
    api: httpx.AsyncClient, dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    """A low history limit makes the case continue-as-new; its history shows both runs as one,
    each beginning with its `workflow_started`, the audit trail once."""
    opened = open_case_input(office="shanghai")
    workflow_id = case_workflow_id(opened.case_id)
    handle = await dev_env.client.start_workflow(
        CaseWorkflow.run,
        CaseRun.of(opened, history_limit=100),
        id=workflow_id,
        task_queue=task_queue,
        search_attributes=case_search_attributes(
            opened, TEST_KEYRING.subject_digests(opened.subject.identifiers)
        ),
    )
    first_run = handle.result_run_id
    await post(api, f"/cases/{opened.case_id}/filing-decision", FULL_PATH[0][1])
    latest = first_run
    for count in range(1, 150):  # news of detections grows the history, never the audit trail
        await handle.signal(CaseWorkflow.detections_arrived, DetectionsArrived(count=count))
        if count % 5 == 0:
            latest = (await dev_env.client.get_workflow_handle(workflow_id).describe()).run_id
            if latest != first_run:
                break
    assert latest != first_run, "the case did not continue-as-new at its history limit"
    # The continued run carries the case on: a command is taken, as the next step.
    receipt = await post(api, f"/cases/{opened.case_id}/interview/schedule", FULL_PATH[1][1])
    assert receipt["step"] == 3

    response = await api.get(f"/cases/{opened.case_id}/history")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_ids"][0] == first_run and body["run_ids"][-1] == latest
    runs = body["runs"]
    assert [r["run_id"] for r in runs] == body["run_ids"]
    assert [r["run"] for r in runs] == list(range(1, len(runs) + 1))
    assert (runs[0]["begins"], runs[0]["status"]) == ("opened", "continued_as_new")
    assert all(r["begins"] == "continued" for r in runs[1:])
    assert [r["follows"] for r in runs[1:]] == body["run_ids"][:-1]
    assert (runs[-1]["status"], body["workflow_status"]) == ("running", "running")

    starts = [e for e in body["timeline"] if e["step"] == "workflow_started"]
    assert [(e["run_id"], e["data"]["begins"]) for e in starts] == [
        (r["run_id"], r["begins"]) for r in runs
    ]
    assert f"continues run {first_run}" in starts[1]["detail"]
    ends = [e for e in body["timeline"] if e["step"] == "continued_as_new"]
    assert [e["run_id"] for e in ends] == body["run_ids"][:-1]
    # Each run's entries sit between its start and the next run's.
    entries = body["timeline"]
    for earlier, later in itertools.pairwise(starts):
        begin, end = entries.index(earlier), entries.index(later)
        assert {e["run_id"] for e in entries[begin:end] if e["source"] == "temporal"} == {
            earlier["run_id"]
        }
    assert [(e["step"], e["seq"]) for e in entries if e["kind"] == "audit"] == [
        ("case_opened", 1),
        ("filed", 2),
        ("interview_scheduled", 3),
    ]
    commands = [(e["step"], e["run_id"]) for e in entries if e["kind"] == "command"]
    assert commands == [("decide_filing", first_run), ("schedule_interview", latest)]
