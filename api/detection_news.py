"""Coalesced news of detections for their cases' workflows.

A detection is recorded in the inbox (api/intake.py) and its case is only marked here. Every
`detection_signal_interval_s` the marked cases each get one `detections_arrived` signal with the
count and the latest few, read from the inbox then: a case detected a thousand times a second
gets one signal per interval, so its history grows with the procedure, not the detections. The
inbox stays the truth: a signal lost with a process (or to a case closing) loses nothing.

A case whose run is found ended without an outcome (failed, terminated) is reported through
`api.case_calls.interrupted_problem`, which records it in the register.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.case_calls import interrupted_problem
from api.intake import DetectionInbox
from domain.commands import DetectionsArrived
from domain.models import case_workflow_id
from workflows.case import CaseWorkflow

log = structlog.get_logger(__name__)


class DetectionNews:
    """Marks cases with new detections; a background task signals each marked case once per
    interval."""

    def __init__(
        self,
        client: Client,
        inbox: DetectionInbox,
        interval_s: float,
        heal: Callable[[str], Awaitable[None]],
        concurrency: int = 16,
    ) -> None:
        self._client, self._inbox, self._interval = client, inbox, interval_s
        self._heal = heal  # starts a case whose opening detection never started it
        self._gate = asyncio.Semaphore(concurrency)
        self._marked: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.signals_sent = 0

    def note(self, case_id: str) -> None:
        self._marked.add(case_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Send what is marked, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while self._marked:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        marked, self._marked = self._marked, set()
        await asyncio.gather(*(self._tell_one(case_id) for case_id in sorted(marked)))

    async def _tell_one(self, case_id: str) -> None:
        async with self._gate:
            try:
                await self._tell(case_id)
            except Exception:  # one case's trouble never stops the others' news
                log.exception("detections news not delivered", case_id=case_id)

    async def _tell(self, case_id: str) -> None:
        count, latest = await self._inbox.summary(case_id)
        handle = self._client.get_workflow_handle_for(CaseWorkflow.run, case_workflow_id(case_id))
        try:
            await handle.signal(
                CaseWorkflow.detections_arrived, DetectionsArrived(count=count, latest=latest)
            )
            self.signals_sent += 1
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # Not running: ended without an outcome (the register must show it), closed with
            # one (nothing to tell), or never started (its opener's request died: start it).
            if await interrupted_problem(self._client, case_id) is not None:
                return
            try:
                await handle.describe()
            except RPCError as missing:
                if missing.status != RPCStatusCode.NOT_FOUND:
                    raise
                await self._heal(case_id)
