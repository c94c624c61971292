"""Deadlines, computed outside the workflow so the rule can change without breaking replay."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from temporalio import activity

from workflows.case_models import Deadline
from workflows.records import DeadlineRequest

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def calendar_deadline(start: datetime, days: int) -> Deadline:
    """`days` calendar days counted from the day after `start` (local date), ending at 24:00.

    Asia/Shanghai has no daylight saving, so 24:00 local is always 16:00 UTC.
    """
    first_local_day = start.astimezone(LOCAL_TZ).date()
    last_day = first_local_day + timedelta(days=days)
    due_at = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=LOCAL_TZ)
    return Deadline(
        due_at=due_at.astimezone(UTC),
        last_day=last_day.isoformat(),
        days=days,
        kind="calendar",
        explanation=(
            f"{days} calendar days counted from the day after {first_local_day.isoformat()} "
            f"(Asia/Shanghai); the last day is {last_day.isoformat()}, ending at 24:00"
        ),
    )


class DeadlineActivities:
    @activity.defn(name="compute_deadline")
    async def compute_deadline(self, request: DeadlineRequest) -> Deadline:
        return calendar_deadline(request.start, request.days)
