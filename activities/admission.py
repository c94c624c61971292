"""Pacing for campaigns: is the worker behind? The same measure as the API's admission
(wiring/backlog.py), asked by CampaignWorkflow between its waves of case starts.

It runs as a local activity (no activity task of its own to wait in the backlog it measures),
and it never fails the campaign: a backlog that cannot be measured (Temporal unreachable, a
server without task queue stats such as the time-skipping test server) answers "go on", as the
API admits then too.
"""

from __future__ import annotations

import structlog
from pydantic import Field
from temporalio import activity
from temporalio.client import Client

from domain.models import Model
from wiring.backlog import BacklogBound, measure_backlog, whole_seconds

log = structlog.get_logger(__name__)


class PacingRequest(Model):
    campaign_id: str


class Pace(Model):
    """Whether a campaign may start its next wave now."""

    retry_after_s: float | None = Field(
        None, description="None: start the next wave; else wait this long and ask again"
    )
    backlog: int | None = Field(None, description="tasks waiting; None when not measured")
    limit: int
    reason: str | None = Field(None, description="why the worker counts as behind")


class PacingActivities:
    """Holds the Temporal client, the task queue whose backlog counts and the bound."""

    def __init__(self, client: Client, task_queue: str, bound: BacklogBound) -> None:
        self._client, self._task_queue, self._bound = client, task_queue, bound

    @activity.defn(name="worker_backlog")
    async def worker_backlog(self, request: PacingRequest) -> Pace:
        if not self._bound.enabled:
            return Pace(limit=0)
        try:
            backlog = await measure_backlog(self._client, self._task_queue)
        except Exception as exc:  # unmeasured: go on, as the API admits
            log.warning(
                "backlog not measured: the campaign goes on",
                campaign_id=request.campaign_id,
                task_queue=self._task_queue,
                error=str(exc),
            )
            return Pace(limit=self._bound.max_backlog)
        retry_after_s = self._bound.retry_after(backlog)
        if retry_after_s is None:
            return Pace(backlog=backlog.tasks, limit=self._bound.max_backlog)
        log.info(
            "worker behind: the campaign waits",
            campaign_id=request.campaign_id,
            backlog=backlog.tasks,
            retry_after_s=whole_seconds(retry_after_s),
        )
        return Pace(
            retry_after_s=float(whole_seconds(retry_after_s)),
            backlog=backlog.tasks,
            limit=self._bound.max_backlog,
            reason=self._bound.reason(backlog, retry_after_s),
        )
