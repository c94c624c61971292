"""Search attributes the case workflow keeps up to date, so the Temporal Web UI can filter cases.

The dev stack registers them at start, the worker makes sure they exist, and the test fixtures
register them through the operator service before any worker starts.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("RectifyStage")
CATEGORY = SearchAttributeKey.for_keyword("RectifyCategory")
OFFICE = SearchAttributeKey.for_keyword("RectifyOffice")
SUBJECT = SearchAttributeKey.for_keyword("RectifySubject")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("RectifyNextDeadline")

ALL = (STAGE, CATEGORY, OFFICE, SUBJECT, NEXT_DEADLINE)
