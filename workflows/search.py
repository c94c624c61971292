"""Search attributes of a case, so the Temporal Web UI and the API can filter cases.

Category, office and subject never change: whoever starts a case sets them (with the first
stage) once, at start. The workflow upserts the stage and the next deadline only when they
change. The dev stack and the worker register them; test fixtures register them through the
operator service before any worker starts.

The visibility store is not encrypted, so the subject is there only as keyed hashes of its
identifiers (`Keyring.subject_digests`, wiring/keys.py): whoever holds an identifier and the key
finds its cases (`RectifySubjectDigest = '…'`; the API's registry listing gives that query for
its `subject` filter), nobody reads a name or an identifier off the store. Cases started before
the hash carry their subject's name in `RectifySubject`, which nothing sets any more.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from domain.models import OpenCaseInput, Stage

STAGE = SearchAttributeKey.for_keyword("RectifyStage")
CATEGORY = SearchAttributeKey.for_keyword("RectifyCategory")
OFFICE = SearchAttributeKey.for_keyword("RectifyOffice")
SUBJECT_DIGEST = SearchAttributeKey.for_keyword_list("RectifySubjectDigest")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("RectifyNextDeadline")

ALL = (STAGE, CATEGORY, OFFICE, SUBJECT_DIGEST, NEXT_DEADLINE)


def case_search_attributes(
    opened: OpenCaseInput, subject_digests: Sequence[str]
) -> TypedSearchAttributes:
    """What a case's workflow starts with: set once, never upserted again (but the stage)."""
    pairs: list[SearchAttributePair[str] | SearchAttributePair[Sequence[str]]] = [
        SearchAttributePair(STAGE, Stage.FILING.value),
        SearchAttributePair(CATEGORY, opened.violation_category),
        SearchAttributePair(OFFICE, opened.office),
    ]
    if subject_digests:
        pairs.append(SearchAttributePair(SUBJECT_DIGEST, list(subject_digests)))
    return TypedSearchAttributes(pairs)
