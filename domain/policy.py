"""Enforcement policy as data: the ladder of measures per violation category, the periods of the
procedure with their legal articles, and the rules for leniency and repeat offenders.

Models and pure decision functions only: the files are read by an activity (activities/policy.py)
and the slice a case needs is stored in its workflow when it opens, so a running case keeps the
policy version it was opened under.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated, Literal, Protocol

from pydantic import Field, model_validator

from domain.models import Model, Severity, SubjectKind

Yuan = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)]
Article = Annotated[str, Field(min_length=1, max_length=200)]


class Measure(StrEnum):
    """Rungs of the escalation ladder, lightest first."""

    WARNING = "warning"
    FINE = "fine"
    SUSPEND_FUNCTIONS = "suspend_functions"  # suspend related functions / order an update
    APP_REMOVAL = "app_removal"  # remove the app from stores
    SHUTDOWN = "shutdown"  # cancel licence / ICP filing and shut down, with the telecom authority
    REFERRAL = "referral"  # transfer to another authority (police for criminal clues)


MEASURE_WEIGHT = {measure: weight for weight, measure in enumerate(Measure)}
PERSON_MEASURE_WEIGHT = {"other": 0, "warning": 1, "fine": 2}


class ResponsiblePersonTerms(Protocol):
    """What the rules read of a measure against a responsible person."""

    @property
    def name(self) -> str: ...

    @property
    def measure(self) -> str: ...

    @property
    def fine_yuan(self) -> Decimal | None: ...


class Authority(StrEnum):
    TELECOM = "telecom_authority"
    APP_STORES = "app_stores"
    POLICE = "police"
    MARKET_REGULATOR = "market_regulator"
    OTHER = "other_authority"


class Period(Model):
    """A period of the procedure: working or calendar days, and the article it comes from."""

    days: int = Field(ge=1, le=3650)
    kind: Literal["working", "calendar"]
    article: Article | None = None


class Rung(Model):
    measure: Measure
    article: Article
    min_yuan: Yuan | None = None
    max_yuan: Yuan | None = None
    max_turnover_percent: Annotated[Decimal, Field(gt=0, le=100)] | None = Field(
        None, description="the maximum may instead be this share of prior-year turnover"
    )
    person_min_yuan: Yuan | None = Field(None, description="fine range for responsible persons")
    person_max_yuan: Yuan | None = None
    authority: Authority | None = Field(
        None, description="who carries the measure out (telecom authority, app stores, police)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Rung:
        if self.measure is Measure.FINE:
            if self.min_yuan is None or self.max_yuan is None:
                raise ValueError("a fine rung needs min_yuan and max_yuan")
            if self.min_yuan > self.max_yuan:
                raise ValueError(f"min_yuan {self.min_yuan} is above max_yuan {self.max_yuan}")
        elif self.min_yuan is not None or self.max_yuan is not None:
            raise ValueError(f"min_yuan/max_yuan belong to fine rungs, not {self.measure.value}")
        elif self.max_turnover_percent is not None:
            raise ValueError("max_turnover_percent belongs to fine rungs")
        if (self.person_min_yuan is None) != (self.person_max_yuan is None):
            raise ValueError("give both person_min_yuan and person_max_yuan, or neither")
        if (
            self.person_min_yuan is not None
            and self.person_max_yuan is not None
            and self.person_min_yuan > self.person_max_yuan
        ):
            raise ValueError("person_min_yuan is above person_max_yuan")
        needs_authority = {Measure.APP_REMOVAL, Measure.SHUTDOWN, Measure.REFERRAL}
        if self.measure in needs_authority and self.authority is None:
            raise ValueError(f"a {self.measure.value} rung needs the authority that carries it out")
        return self


class CategoryPolicy(Model):
    title: str = Field(min_length=1)
    legal_basis: Article
    rectification: Period
    interview_required: bool = True
    summary_disposal: bool = Field(
        False, description="monitoring finds → shutdown with the telecom authority, no interview"
    )
    verification_rounds: int = Field(
        1, ge=1, le=5, description="rectification rounds before a failed verification escalates"
    )
    ladder: list[Rung] = Field(min_length=1)

    @model_validator(mode="after")
    def _ladder_ascends(self) -> CategoryPolicy:
        weights = [MEASURE_WEIGHT[rung.measure] for rung in self.ladder]
        if weights != sorted(weights):
            raise ValueError("ladder: measures must go from lightest to heaviest")
        if self.summary_disposal and not any(r.measure is Measure.SHUTDOWN for r in self.ladder):
            raise ValueError("summary_disposal needs a shutdown rung in the ladder")
        return self


class HearingThreshold(Model):
    organisation_yuan: Yuan
    individual_yuan: Yuan


class Safeguards(Model):
    """What must happen before any penalty (APL 44, 45, 58, 61, 64, 67, 72; ACL 54)."""

    statement_and_defence: Period
    hearing_request: Period
    hearing_notice_min: Period
    large_fine: HearingThreshold
    hearing_measures: list[Measure] = Field(
        default_factory=lambda: [Measure.SUSPEND_FUNCTIONS, Measure.APP_REMOVAL, Measure.SHUTDOWN],
        description="measures that give a right to a hearing whatever the amount",
    )
    legal_review_severities: list[Severity]
    collective_decision_severities: list[Severity]
    service: Period
    payment: Period
    late_surcharge_daily_rate: Decimal = Field(gt=0, le=1)
    late_surcharge_article: Article
    enforcement_after_reminder: Period


class Limits(Model):
    filing_decision: Period
    filing_extension: Period
    handling: Period
    handling_warning_days: int = Field(ge=1, le=60)


class Referrals(Model):
    criminal_approval: Period
    criminal_transfer_hours: int = Field(ge=1, le=240)
    acknowledgement: dict[Authority, Period]

    @model_validator(mode="after")
    def _every_authority(self) -> Referrals:
        missing = sorted(a.value for a in Authority if a not in self.acknowledgement)
        if missing:
            raise ValueError(f"acknowledgement: no period for {', '.join(missing)}")
        return self


class Leniency(Model):
    enabled: bool = True
    max_severity: Severity = Severity.MINOR
    article: Article


class RepeatOffender(Model):
    lookback_days: int = Field(ge=1, le=3650)
    rung_offset: int = Field(ge=0, le=5)


class Reminders(Model):
    days_before_deadline: list[Annotated[int, Field(ge=1, le=60)]] = Field(default_factory=list)


class Policy(Model):
    version: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9._-]+$")
    effective_from: date
    description: str = ""
    limits: Limits
    safeguards: Safeguards
    referrals: Referrals
    leniency: Leniency
    repeat_offender: RepeatOffender
    reminders: Reminders = Field(default_factory=Reminders)
    categories: dict[str, CategoryPolicy] = Field(min_length=1)


class CasePolicy(Model):
    """The slice of the policy one case runs under, fixed when it opens."""

    version: str
    category: str
    rules: CategoryPolicy
    limits: Limits
    safeguards: Safeguards
    referrals: Referrals
    leniency: Leniency
    repeat_offender: RepeatOffender
    reminders: Reminders
    prior_cases: int = Field(0, ge=0, description="earlier cases of the subject in the lookback")


# --- decisions (pure) ----------------------------------------------------------------------


def starting_rung(policy: CasePolicy) -> int:
    """Repeat offenders start higher on the ladder."""
    offset = policy.repeat_offender.rung_offset if policy.prior_cases > 0 else 0
    return min(offset, len(policy.rules.ladder) - 1)


def rung_at(policy: CasePolicy, index: int) -> Rung:
    ladder = policy.rules.ladder
    return ladder[min(index, len(ladder) - 1)]


_SEVERITY_ORDER = list(Severity)


def lenient(policy: CasePolicy, severity: Severity, corrected_in_time: bool) -> bool:
    """APL 33: a first minor violation corrected in time is not penalised."""
    rule = policy.leniency
    return (
        rule.enabled
        and corrected_in_time
        and policy.prior_cases == 0
        and _SEVERITY_ORDER.index(severity) <= _SEVERITY_ORDER.index(rule.max_severity)
    )


def is_individual(kind: SubjectKind) -> bool:
    return kind is SubjectKind.ACCOUNT


def hearing_right(
    policy: CasePolicy, measure: Measure, fine_yuan: Decimal | None, subject: SubjectKind
) -> bool:
    """APL 63-64: large fines, suspension, licence revocation give the party a hearing right."""
    safeguards = policy.safeguards
    if measure in safeguards.hearing_measures:
        return True
    if measure is Measure.FINE and fine_yuan is not None:
        threshold = (
            safeguards.large_fine.individual_yuan
            if is_individual(subject)
            else safeguards.large_fine.organisation_yuan
        )
        return fine_yuan >= threshold
    return False


def heavier_than_notice(
    measure: Measure, fine_yuan: Decimal | None, noticed: Measure, noticed_fine: Decimal | None
) -> bool:
    """APL 45: the decision may not be heavier than the prior notice."""
    if MEASURE_WEIGHT[measure] != MEASURE_WEIGHT[noticed]:
        return MEASURE_WEIGHT[measure] > MEASURE_WEIGHT[noticed]
    return (fine_yuan or Decimal(0)) > (noticed_fine or Decimal(0))


def fine_range(rung: Rung, turnover_yuan: Decimal | None) -> tuple[Decimal, Decimal]:
    """The allowed fine on a fine rung; a turnover share raises the maximum when it is larger."""
    assert rung.min_yuan is not None and rung.max_yuan is not None
    maximum = rung.max_yuan
    if rung.max_turnover_percent is not None and turnover_yuan is not None:
        maximum = max(
            maximum,
            (turnover_yuan * rung.max_turnover_percent / 100).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_UP
            ),
        )
    return rung.min_yuan, maximum


def persons_heavier_than_notice(
    decided: Sequence[ResponsiblePersonTerms], noticed: Sequence[ResponsiblePersonTerms]
) -> str | None:
    """APL 44-45 for responsible persons: nobody the notice did not name, nothing heavier."""
    by_name = {person.name: person for person in noticed}
    for person in decided:
        before = by_name.get(person.name)
        if before is None:
            return f"{person.name} was not named in the prior notice"
        if PERSON_MEASURE_WEIGHT[person.measure] > PERSON_MEASURE_WEIGHT[before.measure]:
            return f"{person.measure} on {person.name} is heavier than the noticed {before.measure}"
        if (person.fine_yuan or Decimal(0)) > (before.fine_yuan or Decimal(0)):
            return f"the fine on {person.name} is above the noticed amount"
    return None


def late_surcharge(fine_yuan: Decimal, days_late: int, daily_rate: Decimal) -> Decimal:
    """APL 72: a daily surcharge on the fine, never more than the fine itself."""
    if days_late <= 0:
        return Decimal("0.00")
    raw = (fine_yuan * daily_rate * days_late).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return min(raw, fine_yuan)


def surcharge_days(last_day: date, paid_day: date, paused: Collection[date]) -> int:
    """Days late after the payment period's last day up to the day paid, less appeal days."""
    late, day = 0, last_day + timedelta(days=1)
    while day <= paid_day:
        if day not in paused:
            late += 1
        day += timedelta(days=1)
    return late


def unknown_category(policy: Policy, category: str) -> str | None:
    """Why `policy` cannot open a case of `category`, or None when it knows the category."""
    if category in policy.categories:
        return None
    return (
        f"unknown violation category {category!r} in policy {policy.version}; "
        f"known categories: {', '.join(sorted(policy.categories))}"
    )
