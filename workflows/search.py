"""Search attributes of a case, so the Temporal Web UI and the API can filter cases.

Category, office and subject never change: whoever starts a case sets them (with the first
stage) once, at start. The workflow upserts the stage and the next deadline only when they
change. The dev stack and the worker register them; test fixtures register them through the
operator service before any worker starts.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from domain.models import OpenCaseInput, Stage

STAGE = SearchAttributeKey.for_keyword("RectifyStage")
CATEGORY = SearchAttributeKey.for_keyword("RectifyCategory")
OFFICE = SearchAttributeKey.for_keyword("RectifyOffice")
SUBJECT = SearchAttributeKey.for_keyword("RectifySubject")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("RectifyNextDeadline")

ALL = (STAGE, CATEGORY, OFFICE, SUBJECT, NEXT_DEADLINE)


def case_search_attributes(opened: OpenCaseInput) -> TypedSearchAttributes:
    """What a case's workflow starts with: set once, never upserted again (but the stage)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(STAGE, Stage.FILING.value),
            SearchAttributePair(CATEGORY, opened.violation_category),
            SearchAttributePair(OFFICE, opened.office),
            SearchAttributePair(SUBJECT, opened.subject.name),
        ]
    )
