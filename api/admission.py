"""Admission: while the worker is behind, the API refuses new work with 429 and Retry-After.

Opening a case costs the worker its first workflow task and its `open_case` activity; when the
worker falls behind, every opening accepted lengthens the wait of all of them, until callers
time out (504) for minutes. So the routes that open cases ask `Admission` first: above the
bound on the task queue's backlog (wiring/backlog.py), they answer 429 with `Retry-After` and a
problem document naming the backlog, the queue and the bound; nothing is started.

The backlog is measured at most once per `admission_refresh_s`, by one call shared by all the
requests waiting for it, so a request costs nothing more than a look at the latest figure. A
measure that fails (Temporal unreachable, a server without task queue stats) admits: the request
goes on to its own error path, and is never refused for a figure nobody has.

- a route: a parameter typed `Admitted` (api/deps.py), placed after the parameter that takes
  the route's access rule, so a caller without a key still gets 401 (dependencies listed in the
  decorator would run before it);
- per item (an event that would open a case): `await admission.retry_after()` (None: admitted),
  then `admission.refusal(seconds)` for the 429 problem (`.document()` for a batch item).
"""

from __future__ import annotations

import asyncio
import time

import structlog
from temporalio.client import Client

from api.problems import Problem
from wiring.backlog import Backlog, BacklogBound, measure_backlog, whole_seconds
from wiring.settings import Settings

log = structlog.get_logger(__name__)

WORKER_BEHIND = "worker-behind"


def worker_behind(backlog: Backlog | None, bound: BacklogBound, retry_after_s: float) -> Problem:
    """The 429 problem for a refusal: `Retry-After` in whole seconds, the detail naming the
    backlog, its task queue and the bound, and the figures as members of the document."""
    seconds = whole_seconds(retry_after_s)
    if backlog is None:  # not expected: a refusal always follows a measure
        return Problem(
            429,
            WORKER_BEHIND,
            f"the worker is behind; retry after {seconds} s",
            headers={"Retry-After": str(seconds)},
            retry_after_s=seconds,
        )
    return Problem(
        429,
        WORKER_BEHIND,
        bound.reason(backlog, retry_after_s),
        headers={"Retry-After": str(seconds)},
        task_queue=backlog.task_queue,
        backlog=backlog.tasks,
        workflow_tasks=backlog.workflow_tasks,
        activity_tasks=backlog.activity_tasks,
        limit=bound.max_backlog,
        retry_after_s=seconds,
    )


class Admission:
    """Whether the API takes new work now, from the backlog of the worker's task queue.

    Made once per process in the FastAPI lifespan (`Admission.from_settings`); routes reach it
    through `AdmissionControl` (api/deps.py). `measurements` counts the measures taken.
    """

    def __init__(
        self, client: Client, task_queue: str, bound: BacklogBound, *, refresh_s: float
    ) -> None:
        self.client, self.task_queue, self.bound, self.refresh_s = (
            client,
            task_queue,
            bound,
            refresh_s,
        )
        self.measurements = 0
        self._latest: Backlog | None = None
        self._measured_at = -float("inf")
        self._measuring: asyncio.Task[Backlog | None] | None = None
        self._was_behind = False

    @classmethod
    def from_settings(cls, client: Client, settings: Settings) -> Admission:
        return cls(
            client,
            settings.task_queue,
            BacklogBound.from_settings(settings),
            refresh_s=settings.admission_refresh_s,
        )

    async def backlog(self) -> Backlog | None:
        """The latest backlog, at most `refresh_s` old (None: it could not be measured).
        Concurrent callers of a stale figure share one measure."""
        if time.monotonic() - self._measured_at < self.refresh_s:
            return self._latest
        if self._measuring is None:
            self._measuring = asyncio.create_task(self._measure())
        # A caller that gives up (its request cancelled) does not cancel the shared measure.
        return await asyncio.shield(self._measuring)

    async def retry_after(self) -> float | None:
        """None when new work is admitted; else the seconds the caller should wait first."""
        if not self.bound.enabled:
            return None
        backlog = await self.backlog()
        return None if backlog is None else self.bound.retry_after(backlog)

    def refusal(self, retry_after_s: float) -> Problem:
        """The 429 problem for a `retry_after()` that was not None, naming the latest backlog."""
        return worker_behind(self._latest, self.bound, retry_after_s)

    async def admit(self) -> None:
        """Return when new work is admitted; raise the 429 problem while the worker is behind."""
        retry_after_s = await self.retry_after()
        if retry_after_s is not None:
            raise self.refusal(retry_after_s)

    async def close(self) -> None:
        if self._measuring is not None:
            self._measuring.cancel()
            await asyncio.gather(self._measuring, return_exceptions=True)

    async def _measure(self) -> Backlog | None:
        self.measurements += 1
        latest: Backlog | None
        try:
            latest = await measure_backlog(self.client, self.task_queue)
        except Exception as exc:  # unmeasured admits: the request meets its own error
            if self._latest is not None or self.measurements == 1:
                log.warning(
                    "backlog not measured: admitting", task_queue=self.task_queue, error=str(exc)
                )
            latest = None
        self._latest, self._measured_at, self._measuring = latest, time.monotonic(), None
        self._note_change(latest)
        return latest

    def _note_change(self, latest: Backlog | None) -> None:
        behind = latest is not None and self.bound.retry_after(latest) is not None
        if behind != self._was_behind and latest is not None:
            log.warning(
                "worker behind: refusing new work" if behind else "worker caught up: admitting",
                task_queue=self.task_queue,
                backlog=latest.tasks,
                limit=self.bound.max_backlog,
            )
        self._was_behind = behind
