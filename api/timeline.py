"""A case's history as one readable timeline: Temporal events, audit trail and documents.

Pure functions, no I/O. `temporal_entries` reads one run of a recorded `WorkflowHistory`: commands
(accepted updates) with the actor from their input, timers with their summary and why they ended,
activities with their attempts (a case's steps run as local activities: their marker holds the
result, not the input), signals, and the run's own start and end. `audit_entries` and
`document_entries` turn PostgreSQL rows into entries; `merge` orders everything by time. A case
continued (continue-as-new) or carried on by an operator has several runs: each begins with a
`workflow_started` entry saying how (`data.begins`, `data.run`), and `run_shown` sums one up.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

EntryKind = Literal[
    "workflow", "command", "refused", "timer", "activity", "signal", "audit", "document"
]
EntrySource = Literal["temporal", "audit", "documents"]

_ACTIVITY_ENDS = ("activity_task_completed", "activity_task_failed", "activity_task_timed_out")
_RUN_ENDS = ("completed", "failed", "terminated", "timed_out", "canceled", "continued_as_new")
# Events a workflow task writes when it completes: their time is that task's `workflow.now()`.
_WRITTEN_BY_TASK = (
    "workflow_execution_update_accepted",
    "workflow_execution_update_completed",
    "activity_task_scheduled",
    "timer_started",
    "timer_canceled",
    "marker_recorded",
    "upsert_workflow_search_attributes",
    "workflow_execution_completed",
    "workflow_execution_failed",
    "workflow_execution_continued_as_new",
)
_SOURCE_RANK = {"temporal": 0, "audit": 1, "documents": 2}
_LOCAL_ACTIVITY = "core_local_activity"  # the SDK's marker for a local activity's result
_STEP_ACTIVITY = "record_step"  # writes a case's step: its result names the step (seq)
# What can end a wait: a command, a signal, another timer.
_WAKERS = ("workflow_execution_update_accepted", "workflow_execution_signaled", "timer_fired")


class TimelineEntry(BaseModel):
    at: datetime = Field(
        description="the workflow's clock (workflow.now()) for its own steps, as in the audit "
        "trail; the server's time for what came from outside (timer fired, signal, start)"
    )
    kind: EntryKind
    step: str = Field(description="command, audit action, document kind, activity or event name")
    who: str | None = Field(None, description="the actor, when the step has one")
    detail: str
    source: EntrySource
    event_id: int | None = Field(None, description="Temporal event id (source temporal)")
    run_id: str | None = Field(None, description="Temporal run id (source temporal)")
    seq: int | None = Field(None, description="position in the audit trail (source audit)")
    data: dict[str, Any] = Field(default_factory=dict)


class AuditRow(BaseModel):
    """One row of `case_audit`."""

    seq: int
    action: str
    from_stage: str | None
    to_stage: str
    actor: str
    occurred_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)


class DocumentRow(BaseModel):
    """One row of `documents`."""

    kind: str
    number: str
    title: str
    actor: str
    issued_at: datetime
    step: str | None = None


def _kind(event: HistoryEvent) -> str:
    return (event.WhichOneof("attributes") or "").removesuffix("_event_attributes")


def _attrs(event: HistoryEvent) -> Any:
    kind = _kind(event)
    return getattr(event, f"{kind}_event_attributes") if kind else None


def _at(event: HistoryEvent) -> datetime:
    # As workflow.now() converts it (float seconds), so the same instant compares equal.
    return datetime.fromtimestamp(event.event_time.ToNanoseconds() / 1e9, UTC)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _decode(payload: Payload) -> Any:
    """A payload as JSON values (the pydantic converter writes json/plain); None if unreadable."""
    try:
        return pydantic_data_converter.payload_converter.from_payload(payload)
    except Exception:
        return None


def _first(payloads: Payloads) -> dict[str, Any]:
    """The single model argument (or result) of a call, as a dict (our convention: one model)."""
    value = _decode(payloads.payloads[0]) if payloads.payloads else None
    return value if isinstance(value, dict) else {}


def _deadline(deadline: dict[str, Any]) -> str:
    counted = f"{deadline.get('days')} {deadline.get('kind')} days"
    flag = " (provisional)" if deadline.get("provisional") else ""
    return f"{counted}, last day {deadline.get('last_day')}{flag}"


def _activity_detail(name: str, arg: dict[str, Any], result: dict[str, Any]) -> str:
    """What an activity did, from its input (an activity's) or its result (a local one's)."""
    if name == "record_step":
        detail = f"step {result.get('seq', arg.get('seq', '?'))} written"
        numbers = [doc.get("number") for doc in result.get("documents") or []]
        if numbers:
            detail += f"; documents {', '.join(str(n) for n in numbers)}"
        for period, deadline in (result.get("deadlines") or {}).items():
            detail += f"; {period}: {_deadline(deadline)}"
        return detail
    if name == "open_case":
        policy = result.get("policy") or {}
        detail = (
            f"case registered: policy {policy.get('version')}, "
            f"{policy.get('prior_cases', 0)} prior cases"
        )
        filing = result.get("filing_deadline")
        return detail + (f"; filing: {_deadline(filing)}" if filing else "")
    if name == "compute_deadline" and result:
        return f"deadline computed: {_deadline(result)}"
    return f"{name} ran"


class _Run:
    """One run's events, indexed by the ids that link them (scheduled → started → closed...)."""

    def __init__(
        self, history: WorkflowHistory, run_id: str | None, actions: Mapping[int, str]
    ) -> None:
        self.events = list(history.events)
        self.run_id = run_id
        self.actions = actions  # audit action by step (seq), when the audit trail is known
        self.position = {event.event_id: i for i, event in enumerate(self.events)}
        self.activity_started: dict[int, HistoryEvent] = {}
        self.activity_closed: dict[int, HistoryEvent] = {}
        self.timer_closed: dict[int, HistoryEvent] = {}
        self.timer_label: dict[str, str] = {}
        self.update_closed: dict[str, HistoryEvent] = {}
        # The workflow's clock: what `workflow.now()` read when the workflow made each step, the
        # clock the audit trail and documents use too.
        self.clock: dict[int, datetime] = {}
        task_started: datetime | None = None  # one workflow task runs at a time
        now: datetime | None = None
        for event in self.events:
            kind = _kind(event)
            if kind == "workflow_task_started":
                task_started = _at(event)
            elif kind == "workflow_task_completed":
                now = task_started
            elif kind in _WRITTEN_BY_TASK and now is not None:
                self.clock[event.event_id] = now
            if kind == "activity_task_started":
                self.activity_started[_attrs(event).scheduled_event_id] = event
            elif kind in _ACTIVITY_ENDS or kind == "activity_task_canceled":
                self.activity_closed[_attrs(event).scheduled_event_id] = event
            elif kind in ("timer_fired", "timer_canceled"):
                self.timer_closed[_attrs(event).started_event_id] = event
            elif kind == "workflow_execution_update_completed":
                # Keyed by update id: `accepted_event_id` is not always filled in.
                self.update_closed[_attrs(event).meta.update_id] = event

    def entry(
        self, event: HistoryEvent, kind: EntryKind, step: str, detail: str, **fields: Any
    ) -> TimelineEntry:
        return TimelineEntry(
            at=self.clock.get(event.event_id) or _at(event),
            kind=kind,
            step=step,
            detail=detail,
            source="temporal",
            event_id=event.event_id,
            run_id=self.run_id,
            **fields,
        )

    def woken_by(self, event_id: int) -> str | None:
        """The last command, signal or timer before `event_id`: why a cancelled timer ended."""
        for event in reversed(self.events[: self.position[event_id]]):
            kind, attrs = _kind(event), _attrs(event)
            if kind == "workflow_execution_update_accepted":
                return f"command {attrs.accepted_request.input.name}"
            if kind == "workflow_execution_signaled":
                return f"signal {attrs.signal_name}"
            if kind == "timer_fired":
                return f"timer '{self.timer_label.get(attrs.timer_id, attrs.timer_id)}' firing"
        return None

    def recorded_after(self, event_id: int) -> str | None:
        """The step the workflow wrote in reaction to a fired timer, if any: its audit action
        when the audit trail is known, else `step N`."""
        for event in self.events[self.position[event_id] + 1 :]:
            kind = _kind(event)
            if kind in _WAKERS:
                return None
            marker = _local_activity(event)
            if marker is not None and marker[0] == _STEP_ACTIVITY and "seq" in marker[2]:
                seq = int(marker[2]["seq"])
                return self.actions.get(seq, f"step {seq}")
        return None

    # --- one method per kind of entry ----------------------------------------------------------

    def command(self, event: HistoryEvent) -> TimelineEntry:
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        name, arg = request.input.name, _first(request.input.args)
        data: dict[str, Any] = {"update_id": request.meta.update_id, "input": arg}
        who = arg.get("actor")
        closed = self.update_closed.get(request.meta.update_id)
        if closed is None:
            return self.entry(
                event, "command", name, f"{name} accepted, running", who=who, data=data
            )
        data["completed_at"] = _iso(_at(closed))
        outcome = closed.workflow_execution_update_completed_event_attributes.outcome
        if outcome.HasField("failure"):
            detail = f"{name} refused: {outcome.failure.message}"
            return self.entry(event, "refused", name, detail, who=who, data=data)
        return self.entry(event, "command", name, f"{name} done", who=who, data=data)

    def timer(self, event: HistoryEvent) -> list[TimelineEntry]:
        attrs = event.timer_started_event_attributes
        summary = _decode(event.user_metadata.summary) if event.HasField("user_metadata") else None
        label = str(summary) if summary else f"timer {attrs.timer_id}"
        self.timer_label[attrs.timer_id] = label
        wakes = _iso(_at(event) + attrs.start_to_fire_timeout.ToTimedelta())
        data = {"timer_id": attrs.timer_id, "summary": summary, "wakes_at": wakes}
        entries = [self.entry(event, "timer", "timer_set", f"{label}: wakes {wakes}", data=data)]
        closed = self.timer_closed.get(event.event_id)
        if closed is None:
            return entries
        if _kind(closed) == "timer_fired":
            then = self.recorded_after(closed.event_id)
            detail = f"{label}: its time came ({wakes})" + (f"; then {then}" if then else "")
            data = {**data, "then": then}
            entries.append(self.entry(closed, "timer", "timer_fired", detail, data=data))
        else:
            cause = self.woken_by(closed.event_id)
            detail = f"{label}: no longer needed" + (f" after {cause}" if cause else "")
            data = {**data, "after": cause}
            entries.append(self.entry(closed, "timer", "timer_cancelled", detail, data=data))
        return entries

    def activity(self, event: HistoryEvent) -> TimelineEntry:
        attrs = event.activity_task_scheduled_event_attributes
        name, arg = attrs.activity_type.name, _first(attrs.input)
        started = self.activity_started.get(event.event_id)
        closed = self.activity_closed.get(event.event_id)
        # The started event is written once the activity ends, with its last attempt.
        attempts = started.activity_task_started_event_attributes.attempt if started else 0
        status = _kind(closed).removeprefix("activity_task_") if closed else "running"
        result = _first(_attrs(closed).result) if closed and status == "completed" else {}
        detail = _activity_detail(name, arg, result)
        if started and attempts > 1:
            last = started.activity_task_started_event_attributes.last_failure.message
            detail += f" (after {attempts} attempts; last failure: {last})"
        if closed and status == "failed":
            detail += f"; failed: {_attrs(closed).failure.message}"
        elif status != "completed":
            detail += f"; {status.replace('_', ' ')}"
        data = {"activity_id": attrs.activity_id, "attempts": attempts, "status": status}
        return self.entry(event, "activity", name, detail, who=arg.get("actor"), data=data)

    def local_activity(
        self, event: HistoryEvent, name: str, marker: dict[str, Any], result: dict[str, Any]
    ) -> TimelineEntry:
        failure = event.marker_recorded_event_attributes.failure
        failed = event.marker_recorded_event_attributes.HasField("failure")
        attempts = int(marker.get("attempt") or 1)
        detail = _activity_detail(name, {}, result)
        if attempts > 1:
            detail += f" (after {attempts} attempts)"
        if failed:
            detail += f"; failed: {failure.message}"
        data: dict[str, Any] = {
            "activity_id": marker.get("activity_id"),
            "attempts": attempts,
            "status": "failed" if failed else "completed",
            "local": True,
        }
        if name == _STEP_ACTIVITY and "seq" in result:
            data["seq"] = int(result["seq"])
        return self.entry(event, "activity", name, detail, data=data)

    def signal(self, event: HistoryEvent) -> TimelineEntry:
        attrs = event.workflow_execution_signaled_event_attributes
        arg = _first(attrs.input)
        shown = ", ".join(f"{key}={value}" for key, value in arg.items())
        who = arg.get("actor") or attrs.identity or None
        detail = f"{attrs.signal_name}({shown})"
        return self.entry(event, "signal", attrs.signal_name, detail, who=who, data={"input": arg})

    def started(self, event: HistoryEvent) -> TimelineEntry:
        """Where a run begins: the case opened, continued (continue-as-new), or carried on by
        an operator's order after a run that ended without an outcome."""
        attrs = event.workflow_execution_started_event_attributes
        opened = _first(attrs.input)
        begins = run_begins(event)
        data: dict[str, Any] = {"run": _run_number(opened), "begins": begins}
        case_id = opened.get("case_id")
        if begins == "opened":
            subject = (opened.get("subject") or {}).get("name")
            detail = (
                f"case {case_id} opened: {opened.get('violation_category')}, "
                f"{subject} ({opened.get('office')})"
            )
            who = opened.get("opened_by") or attrs.identity or None
            return self.entry(event, "workflow", "workflow_started", detail, who=who, data=data)
        carried = opened.get("carried") or {}
        state = carried.get("state") or {}
        at = f"at step {state.get('step', '?')}, stage {state.get('stage', '?')}"
        if begins == "continued":
            previous = attrs.continued_execution_run_id
            data["continues"] = previous
            detail = f"case {case_id} continues in run {data['run']} {at}; continues run {previous}"
            return self.entry(event, "workflow", "workflow_started", detail, data=data)
        order = opened.get("order") or {}
        verb = "reopened" if begins == "reopened" else "to be closed"
        detail = (
            f"case {case_id} {verb} by an operator in run {data['run']} {at}, after a "
            f"{order.get('interrupted', '?')} run: {order.get('reason', '')}"
        )
        data |= {"reason": order.get("reason"), "interrupted": order.get("interrupted")}
        who = order.get("actor") or attrs.identity or None
        return self.entry(event, "workflow", "workflow_started", detail, who=who, data=data)

    def workflow(self, event: HistoryEvent) -> TimelineEntry | None:
        kind, attrs = _kind(event), _attrs(event)
        step = kind.removeprefix("workflow_execution_")
        if kind == "workflow_execution_started":
            return self.started(event)
        if kind == "workflow_execution_completed":
            outcome = _first(attrs.result).get("outcome")
            detail = f"case closed: outcome {outcome}"
            return self.entry(
                event, "workflow", "workflow_completed", detail, data={"outcome": outcome}
            )
        if kind == "workflow_execution_continued_as_new":
            detail = f"continued in run {attrs.new_execution_run_id}"
            return self.entry(event, "workflow", step, detail)
        if kind in ("workflow_execution_failed", "workflow_task_failed"):
            return self.entry(event, "workflow", step, attrs.failure.message or step)
        if kind == "workflow_execution_terminated":
            return self.entry(
                event, "workflow", step, attrs.reason or "terminated", who=attrs.identity or None
            )
        if kind in ("workflow_execution_timed_out", "workflow_execution_canceled"):
            return self.entry(event, "workflow", step, step.replace("_", " "))
        if kind == "marker_recorded" and attrs.marker_name == "core_patch":
            patch = _first(attrs.details["patch-data"])
            return self.entry(
                event, "workflow", "version_marker", f"code version {patch.get('id')}"
            )
        return None


RunBegins = Literal["opened", "continued", "reopened", "closed_by_operator"]


def run_begins(started: HistoryEvent) -> RunBegins:
    """How a run began, from its first event: the case opened, a continue-as-new, or an
    operator's order (reopen or close) after a run that ended without an outcome."""
    attrs = started.workflow_execution_started_event_attributes
    if attrs.continued_execution_run_id:
        return "continued"
    order = _first(attrs.input).get("order")
    if isinstance(order, dict):
        return "closed_by_operator" if order.get("action") == "close" else "reopened"
    return "opened"


def _run_number(started_input: dict[str, Any]) -> int:
    carried = started_input.get("carried")
    run = carried.get("run") if isinstance(carried, dict) else None
    return run if isinstance(run, int) else 1


class RunShown(BaseModel):
    """One run of the case's workflow, as its history shows it."""

    run_id: str
    run: int = Field(description="the run in the case's chain, as the run counts itself: 1 first")
    begins: RunBegins = Field(
        description="how it began: the case opened, continued (continue-as-new), or carried on "
        "by an operator's order (reopened, closed_by_operator)"
    )
    started_at: datetime
    status: str = Field(description="running, or how it ended (completed, continued_as_new…)")
    follows: str | None = Field(
        None, description="the run it carries on from, when its history names it"
    )


def run_shown(run_id: str, history: WorkflowHistory) -> RunShown:
    first = history.events[0]
    attrs = first.workflow_execution_started_event_attributes
    return RunShown(
        run_id=run_id,
        run=_run_number(_first(attrs.input)),
        begins=run_begins(first),
        started_at=_at(first),
        status=workflow_status(history),
        follows=attrs.continued_execution_run_id or None,
    )


def _local_activity(event: HistoryEvent) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """A local activity's marker: its type, the marker's data (attempt, id) and its result."""
    if _kind(event) != "marker_recorded":
        return None
    attrs = event.marker_recorded_event_attributes
    if attrs.marker_name != _LOCAL_ACTIVITY:
        return None
    marker = _first(attrs.details["data"]) if "data" in attrs.details else {}
    result = _first(attrs.details["result"]) if "result" in attrs.details else {}
    return str(marker.get("activity_type") or "local_activity"), marker, result


def temporal_entries(
    history: WorkflowHistory,
    run_id: str | None = None,
    actions: Mapping[int, str] | None = None,
) -> list[TimelineEntry]:
    """One run's history as entries, in event order. An update refused by its validator never
    reaches history; one refused by its handler (re-validated under the case lock) is `refused`.
    `actions` (the audit trail's action by step) names what a fired timer led to."""
    run = _Run(history, run_id, actions or {})
    entries: list[TimelineEntry] = []
    for event in run.events:
        kind = _kind(event)
        if (marker := _local_activity(event)) is not None:
            entries.append(run.local_activity(event, *marker))
        elif kind == "workflow_execution_update_accepted":
            entries.append(run.command(event))
        elif kind == "timer_started":
            entries.extend(run.timer(event))
        elif kind == "activity_task_scheduled":
            entries.append(run.activity(event))
        elif kind == "workflow_execution_signaled":
            entries.append(run.signal(event))
        elif (entry := run.workflow(event)) is not None:
            entries.append(entry)
    return sorted(entries, key=lambda entry: entry.event_id or 0)


def workflow_status(history: WorkflowHistory) -> str:
    """`running`, or how the run ended (completed, failed, continued_as_new...)."""
    for event in reversed(history.events):
        step = _kind(event).removeprefix("workflow_execution_")
        if _kind(event).startswith("workflow_execution_") and step in _RUN_ENDS:
            return step
    return "running"


def _stage_move(from_stage: str | None, to_stage: str) -> str:
    if from_stage is None:
        return f"opened at stage {to_stage}"
    return f"{from_stage} → {to_stage}" if from_stage != to_stage else f"at stage {to_stage}"


def audit_entries(rows: Iterable[AuditRow]) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            at=row.occurred_at,
            kind="audit",
            step=row.action,
            who=row.actor,
            detail=_stage_move(row.from_stage, row.to_stage),
            source="audit",
            seq=row.seq,
            data={"from_stage": row.from_stage, "to_stage": row.to_stage, "payload": row.payload},
        )
        for row in rows
    ]


def document_entries(rows: Iterable[DocumentRow]) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            at=row.issued_at,
            kind="document",
            step=row.kind,
            who=row.actor,
            detail=f"{row.title} ({row.number})",
            source="documents",
            data={"number": row.number, "title": row.title, "step": row.step},
        )
        for row in rows
    ]


def merge(*groups: Sequence[TimelineEntry]) -> list[TimelineEntry]:
    """Everything by time. At one instant (one workflow task) the Temporal events come first,
    by event id (the command, then the activity that wrote the row), then audit rows by seq,
    then documents; otherwise as given."""

    def key(entry: TimelineEntry) -> tuple[datetime, int, int, int]:
        seq = sys.maxsize if entry.seq is None else entry.seq
        event_id = sys.maxsize if entry.event_id is None else entry.event_id
        return (entry.at, _SOURCE_RANK[entry.source], seq, event_id)

    return sorted((entry for group in groups for entry in group), key=key)


def build_timeline(
    runs: Sequence[tuple[str | None, WorkflowHistory]],
    audit: Iterable[AuditRow],
    documents: Iterable[DocumentRow],
) -> list[TimelineEntry]:
    """The whole timeline: every run (oldest first) merged with the audit trail and documents."""
    trail = list(audit)
    actions = {row.seq: row.action for row in trail}
    temporal = [
        entry for run_id, history in runs for entry in temporal_entries(history, run_id, actions)
    ]
    return merge(temporal, audit_entries(trail), document_entries(documents))
