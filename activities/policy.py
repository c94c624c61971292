"""Policy files (read by wiring/policy_files.py), and the activity that fixes the policy a case
runs under when it opens.

Policies are data (`policies/*.yaml`, one version per file, each with the date it takes effect):
an operator changes a period, an amount or a ladder without a code change. The worker loads the
folder once at start and refuses it whole if any file is wrong, with one line per problem naming
the file and the field. A case opening asks `case_policy` for the version in force on its opening
day (Asia/Shanghai) and the number of earlier cases of its subject; the workflow stores the answer,
so replay never re-reads a file that may have changed since.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import structlog
from temporalio.exceptions import ApplicationError

from domain.models import SubjectIdentifiers
from domain.policy import CasePolicy, Policy, unknown_category
from wiring.policy_files import (
    POLICY_SUFFIXES,
    PolicyFileError,
    PolicyNotFound,
    PolicySet,
    load_policies,
    load_policy_file,
    local_date,
    validation_lines,
)

__all__ = [
    "POLICY_SUFFIXES",
    "PolicyFileError",
    "PolicyNotFound",
    "PolicySet",
    "load_policies",
    "load_policy_file",
    "local_date",
    "validation_lines",
]

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A plain connection or one borrowed from the pool (the stubs make them generic).
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


# ApplicationError types raised non-retryable: retrying cannot fix either.
UNKNOWN_CATEGORY = "UnknownCategory"
NO_POLICY_IN_FORCE = "NoPolicyInForce"

# A case that ended in one of these established no offence: it does not make a repeat offender.
NO_OFFENCE_OUTCOMES = ("withdrawn", "not_filed")


# --- the activity ----------------------------------------------------------------------------


# A case counts as a prior one only once it was filed (a clue still awaiting its filing decision,
# or one transferred instead, established nothing) and unless it was withdrawn. $1 one single-key
# jsonb object per identifier, $2/$3 the window [since, before): strictly earlier, so two cases of
# one subject opened at the same instant never count each other. $4 the case itself, $5 the
# outcomes that established no offence.
PRIOR_CASES_SQL = """
SELECT count(*)
  FROM cases c
 WHERE c.subject_identifiers @> ANY($1::jsonb[])
   AND c.opened_at >= $2::timestamptz
   AND c.opened_at < $3::timestamptz
   AND c.case_id <> $4
   AND (c.outcome IS NULL OR c.outcome <> ALL($5::text[]))
   AND EXISTS (
       SELECT 1 FROM case_audit a
        WHERE a.case_id = c.case_id AND a.action = ANY($6::text[])
   )
"""

# The audit actions that file a case.
FILING_ACTIONS = ("filed", "filed_summary_disposal")


class PriorCasesRepository:
    """The register read that makes a repeat offender: earlier cases of the same subject."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def count_prior_cases(
        self,
        identifiers: SubjectIdentifiers,
        *,
        since: datetime,
        before: datetime,
        excluding_case_id: str,
    ) -> int:
        """Filed cases opened in [since, before) sharing any identifier with the subject, other
        than the case itself, and not closed as withdrawn or not filed.

        One single-key object per identifier, each matched by containment: the GIN index
        `cases_subject_identifiers_idx` (jsonb_path_ops) serves every probe.
        """
        probes = [
            {key: value}
            for key, value in identifiers.model_dump(mode="json", exclude_none=True).items()
        ]
        count = await self._conn.fetchval(
            PRIOR_CASES_SQL,
            probes,
            since,
            before,
            excluding_case_id,
            list(NO_OFFENCE_OUTCOMES),
            list(FILING_ACTIONS),
        )
        return int(count)


def case_policy(
    policies: PolicySet, opened_at: datetime, category: str, prior_cases: int
) -> CasePolicy:
    """The slice of the policy in force on the case's opening day (Asia/Shanghai) for its
    category; refuses non-retryably when no policy is in force or the category is unknown."""
    try:
        policy = policies.active(local_date(opened_at))
    except PolicyNotFound as exc:
        raise ApplicationError(str(exc), type=NO_POLICY_IN_FORCE, non_retryable=True) from exc
    return policy_slice(policy, category, prior_cases)


def policy_slice(policy: Policy, category: str, prior_cases: int) -> CasePolicy:
    refusal = unknown_category(policy, category)
    if refusal is not None:
        raise ApplicationError(refusal, type=UNKNOWN_CATEGORY, non_retryable=True)
    rules = policy.categories[category]
    case_policy = CasePolicy(
        version=policy.version,
        category=category,
        rules=rules,
        limits=policy.limits,
        safeguards=policy.safeguards,
        referrals=policy.referrals,
        leniency=policy.leniency,
        repeat_offender=policy.repeat_offender,
        reminders=policy.reminders,
        prior_cases=prior_cases,
    )
    # The loaded policy is shared by every call: hand out a copy nobody else holds.
    return case_policy.model_copy(deep=True)
