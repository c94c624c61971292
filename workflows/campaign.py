"""CampaignWorkflow: a special action opens one case per subject, without flooding Temporal.

Each case is an abandoned child CaseWorkflow (`case:{campaign_id}-{n}`): it runs on its own and
outlives the campaign. At most `concurrency` starts are in flight, with a pause between waves.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import Field
from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
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


class CampaignProgress(Model):
    campaign_id: str
    title: str
    total: int
    started: int = 0
    already_open: int = 0
    done: bool = False


@workflow.defn(name="CampaignWorkflow")
class CampaignWorkflow:
    @workflow.init
    def __init__(self, campaign: CampaignInput) -> None:
        self._progress = CampaignProgress(
            campaign_id=campaign.campaign_id, title=campaign.title, total=len(campaign.subjects)
        )

    @workflow.run
    async def run(self, campaign: CampaignInput) -> CampaignProgress:
        numbered = list(enumerate(campaign.subjects, start=1))
        for first in range(0, len(numbered), campaign.concurrency):
            wave = numbered[first : first + campaign.concurrency]
            await asyncio.gather(*(self._open_case(campaign, n, subject) for n, subject in wave))
            if first + campaign.concurrency < len(numbered) and campaign.pause_seconds:
                await workflow.sleep(timedelta(seconds=campaign.pause_seconds))
        self._progress.done = True
        return self._progress

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
                opened,
                id=case_workflow_id(case_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
                search_attributes=case_search_attributes(opened),
            )
            self._progress.started += 1
        except WorkflowAlreadyStartedError:
            self._progress.already_open += 1

    @workflow.query
    def progress(self) -> CampaignProgress:
        return self._progress
