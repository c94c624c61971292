"""Events from enforcement systems: each idempotency key takes effect once per case."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.models import Stage
    from domain.procedure_models import CaseEvent, EventReceipt
    from workflows.case_core import CaseCore

EVENT_OPENER_PREFIX = "event:"


def opened_by_event(idempotency_key: str) -> str:
    """The `opened_by` of a case an event opened: the receipt then says "opened"."""
    return f"{EVENT_OPENER_PREFIX}{idempotency_key}"


class EventStages(CaseCore):
    @workflow.update
    async def record_event(self, event: CaseEvent) -> EventReceipt:
        """Record an event on the case; a key seen before is acknowledged, not applied again.

        Both checks run under the case lock, so concurrent duplicates take effect once."""
        async with self._command(
            "record an event",
            set(Stage) - {Stage.CLOSED},
            lambda: self._validate_event(event),
            by=event,
        ):
            proc = self._require_v2("record an event")
            if event.idempotency_key in proc.event_keys:
                return self._receipt(event, "duplicate")
            proc.event_keys.append(event.idempotency_key)
            await self._note(
                f"event_{event.type.value}",
                f"{event.source}",
                event.model_dump(mode="json"),
            )
            opener = opened_by_event(event.idempotency_key)
            return self._receipt(
                event, "opened" if self._state.opened.opened_by == opener else "joined"
            )

    @record_event.validator
    def _validate_event(self, event: CaseEvent) -> None:
        self._check_v2("record an event")
        self._require_stage("record an event", set(Stage) - {Stage.CLOSED})

    def _receipt(self, event: CaseEvent, result: str) -> EventReceipt:
        return EventReceipt.model_validate(
            {
                "case_id": self._state.case_id,
                "workflow_id": self._state.workflow_id,
                "idempotency_key": event.idempotency_key,
                "result": result,
                "stage": self._state.stage.value,
            }
        )
