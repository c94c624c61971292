"""CampaignWorkflow: a special action opens one case per subject, without flooding Temporal.

Each case is an abandoned child CaseWorkflow (`case:{campaign_id}-{n}`): it runs on its own and
outlives the campaign. At most `concurrency` starts are in flight, with a pause between waves.
Before each wave the campaign asks whether the worker is behind (the same backlog measure as the
API's 429, activities/admission.py); while it is, the campaign waits, and asks again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import Field, model_validator
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.admission import Pace, PacingActivities, PacingRequest
    from domain.case import CaseRun
    from domain.models import (
        Actor,
        CaseId,
        Model,
        NonEmpty,
        OpenCaseInput,
        Severity,
        Subject,
        case_workflow_id,
    )
    from workflows.case import CaseWorkflow
    from workflows.search import case_search_attributes

MAX_SUBJECTS = 2000

# Campaigns started before pacing have no pacing in their history: they replay without it.
PACING_PATCH = "campaign-pacing"
PACING_TIMEOUT = timedelta(seconds=15)
PACING_RETRY = RetryPolicy(maximum_attempts=2)
# A worker that stays behind is asked less often: each wait in a row at least doubles, up to
# this, so an outage of hours adds a few events an hour to the campaign's history, not hundreds.
MAX_PACING_WAIT = timedelta(minutes=5)


def campaign_workflow_id(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def campaign_case_id(campaign_id: str, number: int) -> str:
    return f"{campaign_id}-{number:04d}"


class CampaignInput(Model):
    campaign_id: CaseId
    title: NonEmpty
    office: NonEmpty
    violation_category: NonEmpty
    legal_basis: NonEmpty
    severity: Severity = Severity.GENERAL
    opened_by: Actor
    subjects: list[Subject] = Field(min_length=1, max_length=MAX_SUBJECTS)
    concurrency: int = Field(20, ge=1, le=100, description="case starts in flight at once")
    pause_seconds: float = Field(1.0, ge=0, le=60, description="pause between waves of starts")
    acting_key: str | None = Field(None, description="the API key that opened the campaign")
    subject_digests: list[list[str]] | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="per subject, the keyed hashes of its identifiers for the search attribute"
        " (wiring/keys.py): whoever starts the campaign computes them, the workflow cannot",
    )

    @model_validator(mode="after")
    def _a_digest_list_per_subject(self) -> CampaignInput:
        if self.subject_digests is not None and len(self.subject_digests) != len(self.subjects):
            raise ValueError(
                f"subject_digests: {len(self.subject_digests)} lists for"
                f" {len(self.subjects)} subjects"
            )
        return self


class CampaignProgress(Model):
    campaign_id: str
    title: str
    total: int
    started: int = 0
    already_open: int = 0
    done: bool = False
    worker_waits: int = Field(0, description="times the campaign waited for the worker")
    waiting_for_worker: str | None = Field(None, description="why it is waiting now")


@workflow.defn(name="CampaignWorkflow")
class CampaignWorkflow:
    @workflow.init
    def __init__(self, campaign: CampaignInput) -> None:
        # Campaigns started before the digests existed start their cases without the attribute.
        self._digests = campaign.subject_digests or []
        self._progress = CampaignProgress(
            campaign_id=campaign.campaign_id, title=campaign.title, total=len(campaign.subjects)
        )

    @workflow.run
    async def run(self, campaign: CampaignInput) -> CampaignProgress:
        numbered = list(enumerate(campaign.subjects, start=1))
        for first in range(0, len(numbered), campaign.concurrency):
            if workflow.patched(PACING_PATCH):
                await self._wait_for_worker(campaign)
            wave = numbered[first : first + campaign.concurrency]
            await asyncio.gather(*(self._open_case(campaign, n, subject) for n, subject in wave))
            if first + campaign.concurrency < len(numbered) and campaign.pause_seconds:
                await workflow.sleep(timedelta(seconds=campaign.pause_seconds))
        self._progress.done = True
        return self._progress

    async def _wait_for_worker(self, campaign: CampaignInput) -> None:
        """Return once the worker is not behind (or its backlog cannot be measured)."""
        waited = timedelta(0)
        while True:
            pace: Pace | None
            try:
                pace = await workflow.execute_local_activity_method(
                    PacingActivities.worker_backlog,
                    PacingRequest(campaign_id=campaign.campaign_id),
                    start_to_close_timeout=PACING_TIMEOUT,
                    retry_policy=PACING_RETRY,
                )
            except ActivityError as exc:  # pacing is a courtesy: it never stops the campaign
                workflow.logger.warning("pacing not measured, going on: %s", exc)
                pace = None
            if pace is None or pace.retry_after_s is None:
                self._progress.waiting_for_worker = None
                return
            waited = min(max(timedelta(seconds=pace.retry_after_s), waited * 2), MAX_PACING_WAIT)
            self._progress.worker_waits += 1
            self._progress.waiting_for_worker = pace.reason
            await workflow.sleep(waited)

    async def _open_case(self, campaign: CampaignInput, number: int, subject: Subject) -> None:
        case_id = campaign_case_id(campaign.campaign_id, number)
        opened = OpenCaseInput(
            case_id=case_id,
            subject=subject,
            violation_category=campaign.violation_category,
            legal_basis=campaign.legal_basis,
            severity=campaign.severity,
            office=campaign.office,
            opened_by=campaign.opened_by,
            campaign_id=campaign.campaign_id,
            acting_key=campaign.acting_key,
        )
        try:
            await workflow.start_child_workflow(
                CaseWorkflow.run,
                CaseRun.of(opened),
                id=case_workflow_id(case_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
                search_attributes=case_search_attributes(
                    opened, self._digests[number - 1] if self._digests else ()
                ),
            )
            self._progress.started += 1
        except WorkflowAlreadyStartedError:
            self._progress.already_open += 1

    @workflow.query
    def progress(self) -> CampaignProgress:
        return self._progress
