"""The pydantic models of one enforcement case: what opens it, the commands it takes, its state.

One model in, one model out: every field added later gets a default so running cases keep
deserialising their history.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

WORKFLOW_ID_PREFIX = "case:"
CASE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def case_workflow_id(case_id: str) -> str:
    """The business-key workflow id of a case: one workflow per case, never two."""
    return f"{WORKFLOW_ID_PREFIX}{case_id}"


def case_id_from_workflow_id(workflow_id: str) -> str | None:
    if workflow_id.startswith(WORKFLOW_ID_PREFIX):
        return workflow_id[len(WORKFLOW_ID_PREFIX) :]
    return None


NUL_REFUSED = "contains a NUL character (U+0000), which cannot be stored: remove it"


def holds_nul(value: object) -> bool:
    """Whether text anywhere in the value (keys and items included) holds U+0000, which
    PostgreSQL text and jsonb cannot store. Iterative: a deeply nested body is not a crash."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            pending.extend(item)
    return False


MAX_JSON_DEPTH = 32


def json_problem(value: object, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why free-form JSON (an event's payload) cannot be kept as sent, or None: nested deeper
    than `max_depth`, or a number JSON has no text for (NaN, Infinity), which would come back
    as null."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
            return "holds NaN or Infinity, which JSON cannot carry: send a number or text"
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"is nested deeper than {max_depth} levels"
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


class Model(BaseModel):
    """Base for Rectify's messages: unknown fields are refused, text is trimmed, and text that
    could never be stored (a NUL character) is refused naming its field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: object) -> object:
        if holds_nul(value):
            raise ValueError(NUL_REFUSED)
        return value


NonEmpty = Annotated[str, Field(min_length=1, max_length=500)]
LongText = Annotated[str, Field(min_length=1, max_length=20_000)]
Actor = Annotated[
    str, Field(min_length=1, max_length=200, description="who gives this command (user id)")
]
CaseId = Annotated[str, Field(pattern=CASE_ID_PATTERN, examples=["BJ-2026-0042"])]


class SubjectKind(StrEnum):
    WEBSITE = "website"
    APP = "app"
    ACCOUNT = "account"
    PLATFORM = "platform"


class Severity(StrEnum):
    MINOR = "minor"
    GENERAL = "general"
    SERIOUS = "serious"
    MAJOR = "major"


class Stage(StrEnum):
    FILING = "filing"  # a clue awaiting the filing decision
    FILED = "filed"  # filed, awaiting an interview, an order or the penalty procedure
    INTERVIEW_SCHEDULED = "interview_scheduled"
    INTERVIEWED = "interviewed"
    RECTIFYING = "rectifying"
    VERIFYING = "verifying"
    INVESTIGATING = "investigating"
    LEGAL_REVIEW = "legal_review"
    COLLECTIVE_DECISION = "collective_decision"
    NOTICE_PENDING = "notice_pending"
    DEFENCE = "defence"
    HEARING_SCHEDULING = "hearing_scheduling"
    HEARING_SCHEDULED = "hearing_scheduled"
    DECISION_PENDING = "decision_pending"
    SERVICE_PENDING = "service_pending"
    PAYMENT_PENDING = "payment_pending"
    ENFORCEMENT = "enforcement"
    REFERRING = "referring"
    CLOSED = "closed"


class Outcome(StrEnum):
    RECTIFIED = "rectified"
    WARNED = "warned"
    PENALIZED = "penalized"
    SHUT_DOWN = "shut_down"
    APP_REMOVED = "app_removed"
    REFERRED = "referred"
    NOT_FILED = "not_filed"
    WITHDRAWN = "withdrawn"
    CLOSED_BY_OPERATOR = "closed_by_operator"  # its run failed; an operator closed it


_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
# GB 32100-2015: 18 characters from the code set without I, O, Z, S, V.
# ASCII digits only ([0-9], not \d): a full-width 1 would be another subject to every lookup.
_USCC = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_ICP = re.compile(r"^\S{1,8}ICP[备证][0-9]{4,12}号(-[0-9]{1,4})?$")
_APP_PACKAGE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")


def _matches(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"not a valid {what}: {value!r}")
        return value

    return AfterValidator(check)


class SubjectIdentifiers(Model):
    """How the subject is identified; at least one is required."""

    domain: Annotated[str, _matches(_DOMAIN, "domain name (lower case)")] | None = None
    icp_filing: Annotated[str, _matches(_ICP, "ICP filing number (京ICP备12345678号)")] | None = (
        None
    )
    app_package: Annotated[str, _matches(_APP_PACKAGE, "app package name")] | None = None
    unified_social_credit_code: (
        Annotated[str, _matches(_USCC, "unified social credit code (18 characters)")] | None
    ) = None
    account_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> SubjectIdentifiers:
        if not any(getattr(self, name) for name in type(self).model_fields):
            raise ValueError(
                "give at least one identifier: domain, icp_filing, app_package, "
                "unified_social_credit_code or account_id"
            )
        return self


class Subject(Model):
    kind: SubjectKind
    name: NonEmpty
    identifiers: SubjectIdentifiers


ActingKey = Annotated[str, Field(min_length=1, max_length=64)]
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100  # the years a command's moments may fall in


class CaseCommand(Model):
    """Base of every command a case takes over an update.

    `acting_key` is the prefix of the API key that gave the command: the API sets it from the
    request's key (and refuses a body that sets it), the workflow writes it into every audit
    entry the command makes. Absent (and then left out of every dump, so histories recorded
    before it existed replay byte for byte) on commands sent without the API.
    """

    acting_key: ActingKey | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="the API key that gave the command: set by the API, refused in a request",
        json_schema_extra={"readOnly": True},
    )

    @field_validator("*", mode="after")
    @classmethod
    def _plausible_moment(cls, value: object) -> object:
        """A moment in a command (an interview, a service, a payment, a detection) lies within
        the years a case can run in: 9999 is a typing slip, never a date."""
        if isinstance(value, datetime) and not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
            raise ValueError(
                f"year {value.year} is outside {EARLIEST_YEAR}-{LATEST_YEAR}: check the date"
            )
        return value


class OpenCaseInput(CaseCommand):
    """Everything a case is opened with; the case id is the business key."""

    case_id: CaseId
    subject: Subject
    violation_category: NonEmpty = Field(examples=["prohibited_information"])
    legal_basis: NonEmpty = Field(examples=["Cybersecurity Law art. 61"])
    severity: Severity
    office: NonEmpty = Field(examples=["beijing"])
    opened_by: Actor
    campaign_id: CaseId | None = Field(None, description="the campaign that opened the case")


class Deadline(Model):
    """A deadline computed by an activity and kept in workflow state.

    Never recomputed on replay; recomputed by an activity only while `provisional` (a year whose
    official working-day arrangement was not loaded yet was counted as weekdays only).
    """

    due_at: datetime = Field(description="the instant it passes: 24:00 Asia/Shanghai, last day")
    last_day: str = Field(description="the last day, local date YYYY-MM-DD")
    days: int
    kind: str = Field(description="calendar or working (days)")
    explanation: str
    start_day: str | None = Field(None, description="the day the count starts after (local)")
    provisional: bool = Field(False, description="counted without official data for a year")
    provisional_years: list[int] = Field(default_factory=list)
    skipped_days: list[str] = Field(
        default_factory=list,
        description="holidays and rest days passed over (working days) or rolled over (end day)",
    )
    makeup_workdays: list[str] = Field(
        default_factory=list, description="weekend days counted as working days (调休)"
    )


class CaseResult(Model):
    case_id: str
    outcome: Outcome
    closed_at: datetime
