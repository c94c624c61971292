"""Every activity: `case_id` and `workflow_id` bound on each log line it writes, and data the
database refuses classified as what no retry can fix.

Activities that write user data catch `asyncpg.DataError` themselves and leave an alert
(activities/steps.py); this is the backstop for any other: a DataError (text PostgreSQL cannot
store, a number out of range, a bad date) fails the activity non-retryably at once, named by
its class and SQLSTATE, never by its values, instead of being retried for ever. Connection
errors are left to the retry policy: they pass.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from domain.models import case_id_from_workflow_id
from domain.records import UNSTORABLE

log = structlog.get_logger(__name__)


class _BindCaseContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with structlog.contextvars.bound_contextvars(
            workflow_id=info.workflow_id,
            case_id=case_id_from_workflow_id(info.workflow_id or ""),
            activity=info.activity_type,
            attempt=info.attempt,
        ):
            try:
                return await super().execute_activity(input)
            except asyncpg.DataError as exc:
                kind = type(exc).__name__
                log.error("activity refused by the database", error=kind, sqlstate=exc.sqlstate)
                raise ApplicationError(
                    f"{info.activity_type}: the database refused its data ({kind}, SQLSTATE"
                    f" {exc.sqlstate}); retrying cannot fix it",
                    type=UNSTORABLE,
                    non_retryable=True,
                ) from None


class CaseLoggingInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindCaseContext(next)
