"""Binds `case_id` and `workflow_id` on every log line an activity writes."""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from domain.models import case_id_from_workflow_id


class _BindCaseContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with structlog.contextvars.bound_contextvars(
            workflow_id=info.workflow_id,
            case_id=case_id_from_workflow_id(info.workflow_id or ""),
            activity=info.activity_type,
            attempt=info.attempt,
        ):
            return await super().execute_activity(input)


class CaseLoggingInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindCaseContext(next)
