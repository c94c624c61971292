"""The policy files, the pure decisions of domain/policy.py, and the policy slice a case opens
under, fixed by the open_case activity against the real PostgreSQL (filed earlier cases of the
same subject make a repeat offender)."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.policy import (
    FILING_ACTIONS,
    NO_OFFENCE_OUTCOMES,
    NO_POLICY_IN_FORCE,
    PRIOR_CASES_SQL,
    UNKNOWN_CATEGORY,
    PolicyFileError,
    PolicyNotFound,
    PolicySet,
    PriorCasesRepository,
    case_policy,
    load_policies,
    load_policy_file,
    policy_slice,
)
from activities.steps import StepActivities
from domain.models import (
    Outcome,
    Severity,
    Stage,
    Subject,
    SubjectIdentifiers,
    SubjectKind,
    case_workflow_id,
)
from domain.policy import (
    Authority,
    CasePolicy,
    Measure,
    Policy,
    fine_range,
    hearing_right,
    heavier_than_notice,
    late_surcharge,
    lenient,
    rung_at,
    starting_rung,
)
from domain.records import OpeningRequest, OpeningResult, StepRecord
from tests.conftest import POLICIES, open_case_input
from wiring.settings import REPO_ROOT

DEFAULT_FILE = REPO_ROOT / "policies" / "default.yaml"
CATEGORIES = {
    "prohibited_information",
    "unlicensed_news_service",
    "unlicensed_app_service",
    "counterfeit_site",
    "algorithm_recommendation",
    "multiple_violations",
    "personal_information",
    "data_security",
    "network_security_review",
    "security_assessment_missing",
}


def yuan(*amounts: int) -> tuple[Decimal, ...]:
    return tuple(Decimal(amount) for amount in amounts)


def default_data() -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def write_yaml(folder: Path, data: Any, name: str = "default.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def default_policy() -> Policy:
    return load_policy_file(DEFAULT_FILE)


def case_policy_for(policy: Policy, category: str, prior_cases: int = 0) -> CasePolicy:
    return CasePolicy(
        version=policy.version,
        category=category,
        rules=policy.categories[category],
        limits=policy.limits,
        safeguards=policy.safeguards,
        referrals=policy.referrals,
        leniency=policy.leniency,
        repeat_offender=policy.repeat_offender,
        reminders=policy.reminders,
        prior_cases=prior_cases,
    )


# --- the default policy ----------------------------------------------------------------------


def test_default_policy_covers_every_category(default_policy: Policy) -> None:
    assert default_policy.version == "2026.1"
    assert default_policy.effective_from == date(2026, 1, 1)
    assert set(default_policy.categories) == CATEGORIES
    for name, category in default_policy.categories.items():
        assert category.legal_basis, name
        for rung in category.ladder:
            assert rung.article.strip(), f"{name}: a {rung.measure} rung without its article"
            if rung.measure is Measure.FINE:
                assert rung.min_yuan is not None and rung.max_yuan is not None


def test_default_policy_carries_the_statutory_periods(default_policy: Policy) -> None:
    s, limits, referrals = (
        default_policy.safeguards,
        default_policy.limits,
        default_policy.referrals,
    )
    expected = {
        "hearing_request": (s.hearing_request, 5, "working", "art. 64"),
        "hearing_notice_min": (s.hearing_notice_min, 7, "working", "art. 64"),
        "service": (s.service, 7, "working", "art. 61"),
        "payment": (s.payment, 15, "calendar", "art. 67"),
        "enforcement_after_reminder": (s.enforcement_after_reminder, 10, "working", "art. 54"),
        "handling": (limits.handling, 90, "calendar", "art. 60"),
        "criminal_approval": (referrals.criminal_approval, 3, "calendar", "arts. 5, 8"),
    }
    for name, (period, days, kind, article) in expected.items():
        assert (period.days, period.kind) == (days, kind), name
        assert period.article is not None and article in period.article, name
    assert s.statement_and_defence.article is not None
    assert "44" in s.statement_and_defence.article and "45" in s.statement_and_defence.article
    assert s.late_surcharge_daily_rate == Decimal("0.03")
    assert "art. 72" in s.late_surcharge_article
    assert "art. 33" in default_policy.leniency.article
    assert "art. 58" not in s.late_surcharge_article  # sanity: articles are not copy-pasted
    assert referrals.criminal_transfer_hours == 24
    assert set(referrals.acknowledgement) == set(Authority)
    assert (s.large_fine.organisation_yuan, s.large_fine.individual_yuan) == yuan(100000, 10000)
    assert s.legal_review_severities == [Severity.SERIOUS, Severity.MAJOR]
    assert s.collective_decision_severities == [Severity.MAJOR]
    assert (limits.filing_decision.days, limits.filing_extension.days) == (15, 15)
    assert default_policy.repeat_offender.lookback_days == 730
    assert default_policy.repeat_offender.rung_offset == 1
    assert default_policy.reminders.days_before_deadline == [3, 1]


def test_default_categories_take_the_paths_of_the_named_cases(default_policy: Policy) -> None:
    cats = default_policy.categories
    measures = {name: [rung.measure for rung in c.ladder] for name, c in cats.items()}
    assert measures["prohibited_information"] == [
        Measure.WARNING,
        Measure.FINE,
        Measure.FINE,
        Measure.SUSPEND_FUNCTIONS,
        Measure.REFERRAL,
    ]
    assert cats["prohibited_information"].ladder[-1].authority is Authority.POLICE
    counterfeit = cats["counterfeit_site"]
    assert counterfeit.summary_disposal and not counterfeit.interview_required
    assert counterfeit.ladder[0].authority is Authority.TELECOM
    assert measures["unlicensed_app_service"] == [Measure.APP_REMOVAL]
    assert cats["unlicensed_app_service"].ladder[0].authority is Authority.APP_STORES
    assert measures["unlicensed_news_service"] == [Measure.FINE, Measure.SHUTDOWN]
    news_fine = cats["unlicensed_news_service"].ladder[0]
    assert (news_fine.min_yuan, news_fine.max_yuan) == yuan(100000, 1000000)
    pipl = cats["personal_information"].ladder
    assert [r.measure for r in pipl][-2:] == [Measure.SUSPEND_FUNCTIONS, Measure.APP_REMOVAL]
    assert (pipl[1].max_yuan, pipl[1].person_min_yuan, pipl[1].person_max_yuan) == yuan(
        1000000, 10000, 100000
    )
    assert (pipl[2].max_yuan, pipl[2].max_turnover_percent) == yuan(50000000, 5)
    assert (pipl[2].person_min_yuan, pipl[2].person_max_yuan) == yuan(100000, 1000000)
    dsl = cats["data_security"].ladder
    assert [(r.min_yuan, r.max_yuan) for r in dsl if r.measure is Measure.FINE] == [
        yuan(50000, 500000),
        yuan(500000, 2000000),
    ]
    assert (dsl[1].person_min_yuan, dsl[1].person_max_yuan) == yuan(10000, 100000)
    algorithm = cats["algorithm_recommendation"].ladder[1]
    assert (algorithm.min_yuan, algorithm.max_yuan) == yuan(10000, 100000)
    assert measures["security_assessment_missing"] == [Measure.APP_REMOVAL]


def test_default_policy_loads_from_json_too(tmp_path: Path, default_policy: Policy) -> None:
    path = tmp_path / "default.json"
    path.write_text(json.dumps(default_data(), default=str, ensure_ascii=False), encoding="utf-8")
    assert load_policy_file(path) == default_policy


# --- broken policies: every error names the file and the field --------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _cat(data: dict[str, Any], name: str) -> dict[str, Any]:
    category = data["categories"][name]
    assert isinstance(category, dict)
    return category


def _rung(data: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    rung = _cat(data, name)["ladder"][index]
    assert isinstance(rung, dict)
    return rung


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value


def _delete(data: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[last]


BROKEN: list[tuple[str, Mutation, str]] = [
    (
        "fine-rung-without-max",
        lambda d: _delete(d, "categories.data_security.ladder.1.max_yuan"),
        "categories.data_security.ladder.1: a fine rung needs min_yuan and max_yuan",
    ),
    (
        "min-above-max",
        lambda d: _set(d, "categories.data_security.ladder.1.min_yuan", 600000),
        "categories.data_security.ladder.1: min_yuan 600000 is above max_yuan 500000",
    ),
    (
        "negative-amount",
        lambda d: _set(d, "categories.personal_information.ladder.1.min_yuan", -1),
        "categories.personal_information.ladder.1.min_yuan: "
        "Input should be greater than or equal to 0",
    ),
    (
        "ladder-descending",
        lambda d: _cat(d, "prohibited_information")["ladder"].reverse(),
        "categories.prohibited_information: ladder: measures must go from lightest to heaviest",
    ),
    (
        "summary-disposal-without-shutdown",
        lambda d: _set(
            d,
            "categories.counterfeit_site.ladder",
            [{"measure": "app_removal", "article": "x", "authority": "app_stores"}],
        ),
        "categories.counterfeit_site: summary_disposal needs a shutdown rung in the ladder",
    ),
    (
        "acknowledgement-authority-missing",
        lambda d: _delete(d, "referrals.acknowledgement.police"),
        "referrals: acknowledgement: no period for police",
    ),
    (
        "acknowledgement-authority-unknown",
        lambda d: _set(d, "referrals.acknowledgement.courts", {"days": 5, "kind": "working"}),
        "referrals.acknowledgement.courts.[key]: Input should be 'telecom_authority', "
        "'app_stores', 'police', 'market_regulator' or 'other_authority'",
    ),
    (
        "unknown-key",
        lambda d: _set(d, "categories.counterfeit_site.colour", "red"),
        "categories.counterfeit_site.colour: Extra inputs are not permitted",
    ),
    (
        "unknown-top-level-key",
        lambda d: _set(d, "categories_v2", {}),
        "categories_v2: Extra inputs are not permitted",
    ),
    (
        "negative-days",
        lambda d: _set(d, "safeguards.payment.days", -15),
        "safeguards.payment.days: Input should be greater than or equal to 1",
    ),
    (
        "bad-version",
        lambda d: _set(d, "version", "2026 1/beta"),
        "version: String should match pattern '^[A-Za-z0-9._-]+$'",
    ),
    (
        "kind-weeks",
        lambda d: _set(d, "limits.handling.kind", "weeks"),
        "limits.handling.kind: Input should be 'working' or 'calendar'",
    ),
    (
        "app-removal-without-authority",
        lambda d: _delete(d, "categories.unlicensed_app_service.ladder.0.authority"),
        "categories.unlicensed_app_service.ladder.0: "
        "a app_removal rung needs the authority that carries it out",
    ),
    (
        "person-range-half-given",
        lambda d: _delete(d, "categories.personal_information.ladder.1.person_max_yuan"),
        "categories.personal_information.ladder.1: "
        "give both person_min_yuan and person_max_yuan, or neither",
    ),
    (
        "amount-on-a-warning",
        lambda d: _set(d, "categories.data_security.ladder.0.max_yuan", 1000),
        "categories.data_security.ladder.0: min_yuan/max_yuan belong to fine rungs, not warning",
    ),
    (
        "unknown-measure",
        lambda d: _set(d, "categories.data_security.ladder.0.measure", "caution"),
        "categories.data_security.ladder.0.measure: Input should be 'warning', 'fine', "
        "'suspend_functions', 'app_removal', 'shutdown' or 'referral'",
    ),
    (
        "required-period-missing",
        lambda d: _delete(d, "limits.handling"),
        "limits.handling: Field required",
    ),
    (
        "empty-ladder",
        lambda d: _set(d, "categories.counterfeit_site.ladder", []),
        "categories.counterfeit_site.ladder: List should have at least 1 item after validation, "
        "not 0",
    ),
    (
        "bad-date",
        lambda d: _set(d, "effective_from", "2026-13-01"),
        "effective_from: Input should be a valid date or datetime, month value is outside "
        "expected range of 1-12",
    ),
    (
        "unknown-severity",
        lambda d: _set(d, "safeguards.legal_review_severities", ["serious", "grave"]),
        "safeguards.legal_review_severities.1: "
        "Input should be 'minor', 'general', 'serious' or 'major'",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(mutate, expected, id=name) for name, mutate, expected in BROKEN],
)
def test_broken_policy_names_file_and_field(
    tmp_path: Path, mutate: Mutation, expected: str
) -> None:
    data = copy.deepcopy(default_data())
    mutate(data)
    path = write_yaml(tmp_path, data)
    with pytest.raises(PolicyFileError) as caught:
        load_policy_file(path)
    assert caught.value.problems == [f"default.yaml: {expected}"]


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    data = default_data()
    _set(data, "safeguards.payment.days", 0)
    _set(data, "limits.handling.kind", "weeks")
    _delete(data, "categories.personal_information.ladder.2.max_yuan")
    with pytest.raises(PolicyFileError) as caught:
        load_policy_file(write_yaml(tmp_path, data, "2026.2.yaml"))
    assert caught.value.problems == [
        "2026.2.yaml: limits.handling.kind: Input should be 'working' or 'calendar'",
        "2026.2.yaml: safeguards.payment.days: Input should be greater than or equal to 1",
        "2026.2.yaml: categories.personal_information.ladder.2: "
        "a fine rung needs min_yuan and max_yuan",
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text('version: "2026.9"\nlimits:\n  handling: {days: 90\n', encoding="utf-8")
    with pytest.raises(PolicyFileError, match=r"^broken\.yaml: line 4, column 1: YAML syntax"):
        load_policy_file(path)


def test_yaml_duplicate_key_is_refused(tmp_path: Path) -> None:
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    text = text.replace(
        "categories:\n", "categories:\n  counterfeit_site: {}\n", 1
    )  # the real counterfeit_site comes later and would silently win
    path = tmp_path / "twice.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyFileError) as caught:
        load_policy_file(path)
    (line,) = caught.value.problems
    assert line.startswith("twice.yaml: line ")
    assert "key 'counterfeit_site' is given twice" in line


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{\n  "version": "x",\n}\n', encoding="utf-8")
    with pytest.raises(PolicyFileError, match=r"^p\.json: line 3, column 1: JSON syntax error"):
        load_policy_file(path)
    path.write_text('{"version": "1", "limits": {}, "version": "2"}', encoding="utf-8")
    with pytest.raises(
        PolicyFileError, match=r"^p\.json: JSON error: key 'version' is given twice"
    ):
        load_policy_file(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- version: '2026.1'\n", "the top level must be a mapping of policy fields, not list"),
        ("just words\n", "the top level must be a mapping of policy fields, not str"),
        ("", "the file is empty"),
    ],
    ids=["list", "scalar", "empty"],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "top.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyFileError) as caught:
        load_policy_file(path)
    assert str(caught.value) == f"top.yaml: {expected}"


def test_unreadable_or_misnamed_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match=r"^missing\.yaml: cannot read the file"):
        load_policy_file(tmp_path / "missing.yaml")
    text_file = tmp_path / "policy.txt"
    text_file.write_text("version: x\n", encoding="utf-8")
    with pytest.raises(PolicyFileError, match=r"^policy\.txt: a policy file ends in \.yaml"):
        load_policy_file(text_file)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("description: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyFileError, match=r"^latin1\.yaml: not UTF-8 text"):
        load_policy_file(latin1)


# --- folders and the version in force ---------------------------------------------------------


def _version(data: dict[str, Any], version: str, effective_from: date) -> dict[str, Any]:
    data = copy.deepcopy(data)
    data["version"] = version
    data["effective_from"] = effective_from
    return data


def test_duplicate_versions_in_a_folder_name_both_files(tmp_path: Path) -> None:
    data = default_data()
    write_yaml(tmp_path, data, "a-default.yaml")
    write_yaml(tmp_path, _version(data, "2026.1", date(2026, 7, 1)), "b-copy.yml")
    with pytest.raises(PolicyFileError) as caught:
        load_policies(tmp_path)
    assert caught.value.problems == [
        "b-copy.yml: version: '2026.1' is already defined in a-default.yaml"
    ]


def test_two_versions_taking_effect_the_same_day_are_refused(tmp_path: Path) -> None:
    data = default_data()
    write_yaml(tmp_path, data, "a.yaml")
    write_yaml(tmp_path, _version(data, "2026.1b", date(2026, 1, 1)), "b.yaml")
    with pytest.raises(PolicyFileError) as caught:
        load_policies(tmp_path)
    assert caught.value.problems == [
        "b.yaml: effective_from: 2026-01-01 is also when '2026.1' (a.yaml) takes effect"
    ]


def test_empty_or_missing_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a policy", encoding="utf-8")
    with pytest.raises(PolicyFileError, match=r"no policy files \(\*\.yaml, \*\.yml, \*\.json\)"):
        load_policies(tmp_path)
    with pytest.raises(PolicyFileError, match="policy folder not found"):
        load_policies(tmp_path / "nowhere")


def test_folder_reports_the_problems_of_every_file(tmp_path: Path) -> None:
    data = default_data()
    write_yaml(tmp_path, _version(data, "bad version", date(2026, 7, 1)), "a.yaml")
    (tmp_path / "b.json").write_text("[]", encoding="utf-8")
    write_yaml(tmp_path, data, "c.yaml")
    with pytest.raises(PolicyFileError) as caught:
        load_policies(tmp_path)
    assert caught.value.problems == [
        "a.yaml: version: String should match pattern '^[A-Za-z0-9._-]+$'",
        "b.json: the top level must be a mapping of policy fields, not list",
    ]


@pytest.fixture
def two_versions(tmp_path: Path) -> PolicySet:
    data = default_data()
    write_yaml(tmp_path, data, "2026.1.yaml")
    later = _version(data, "2026.2", date(2026, 7, 1))
    later["repeat_offender"]["lookback_days"] = 365
    (tmp_path / "2026.2.json").write_text(json.dumps(later, default=str), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    return load_policies(tmp_path)


def test_policy_set_picks_the_latest_in_force(two_versions: PolicySet) -> None:
    assert two_versions.versions == ["2026.1", "2026.2"]
    assert len(two_versions) == 2
    assert two_versions.active(date(2026, 1, 1)).version == "2026.1"
    assert two_versions.active(date(2026, 6, 30)).version == "2026.1"
    assert two_versions.active(date(2026, 7, 1)).version == "2026.2"
    assert two_versions.active(date(2031, 1, 1)).version == "2026.2"
    with pytest.raises(PolicyNotFound, match="no policy in force on 2025-12-31"):
        two_versions.active(date(2025, 12, 31))
    assert two_versions.get("2026.2").repeat_offender.lookback_days == 365
    with pytest.raises(PolicyNotFound, match=r"no policy version '2027\.1'; known: 2026\.1"):
        two_versions.get("2027.1")


def test_repository_policies_folder_loads() -> None:
    policies = load_policies(REPO_ROOT / "policies")
    assert "2026.1" in policies.versions


# --- the pure decisions -----------------------------------------------------------------------


def test_fine_range_with_turnover_covers_the_didi_fine(default_policy: Policy) -> None:
    rung = default_policy.categories["network_security_review"].ladder[0]
    revenue = Decimal("182000000000")  # ~¥182 bn prior-year revenue
    low, high = fine_range(rung, revenue)
    assert (low, high) == (Decimal(0), Decimal("9100000000.00"))
    didi = Decimal("8026000000")
    assert low <= didi <= high
    assert round(didi / revenue * 100, 1) == Decimal("4.4")
    assert rung.person_max_yuan == Decimal(1000000)  # ¥1 m on each of two executives
    # Without a turnover, or with a small one, the fixed maximum applies.
    assert fine_range(rung, None) == (Decimal(0), Decimal(50000000))
    assert fine_range(rung, Decimal("100000000")) == (Decimal(0), Decimal(50000000))
    # A rung without a turnover share ignores the turnover.
    pipl_refusal = default_policy.categories["personal_information"].ladder[1]
    assert fine_range(pipl_refusal, revenue) == (Decimal(0), Decimal(1000000))


def test_late_surcharge_is_three_percent_a_day_capped_at_the_fine(
    default_policy: Policy,
) -> None:
    rate = default_policy.safeguards.late_surcharge_daily_rate
    fine = Decimal("10000")
    assert late_surcharge(fine, 0, rate) == Decimal("0.00")
    assert late_surcharge(fine, -3, rate) == Decimal("0.00")
    assert late_surcharge(fine, 1, rate) == Decimal("300.00")
    assert late_surcharge(fine, 10, rate) == Decimal("3000.00")
    assert late_surcharge(fine, 33, rate) == Decimal("9900.00")
    assert late_surcharge(fine, 34, rate) == fine  # 10,200 would pass the fine
    assert late_surcharge(fine, 365, rate) == fine
    assert late_surcharge(Decimal("333.33"), 1, rate) == Decimal("10.00")  # rounded to fen


def test_hearing_right_thresholds(default_policy: Policy) -> None:
    policy = case_policy_for(default_policy, "data_security")
    org, person = SubjectKind.PLATFORM, SubjectKind.ACCOUNT
    assert hearing_right(policy, Measure.FINE, Decimal("100000"), org)
    assert not hearing_right(policy, Measure.FINE, Decimal("99999.99"), org)
    assert hearing_right(policy, Measure.FINE, Decimal("10000"), person)
    assert not hearing_right(policy, Measure.FINE, Decimal("9999.99"), person)
    assert not hearing_right(policy, Measure.FINE, Decimal("10000"), SubjectKind.WEBSITE)
    assert not hearing_right(policy, Measure.FINE, None, org)
    for measure in (Measure.SUSPEND_FUNCTIONS, Measure.APP_REMOVAL, Measure.SHUTDOWN):
        assert hearing_right(policy, measure, None, org)
    assert not hearing_right(policy, Measure.WARNING, None, person)
    assert not hearing_right(policy, Measure.REFERRAL, None, org)


def test_decision_never_heavier_than_the_notice() -> None:
    fine = Measure.FINE
    assert not heavier_than_notice(fine, Decimal(50000), fine, Decimal(50000))
    assert not heavier_than_notice(fine, Decimal(40000), fine, Decimal(50000))
    assert heavier_than_notice(fine, Decimal("50000.01"), fine, Decimal(50000))
    assert heavier_than_notice(Measure.SUSPEND_FUNCTIONS, None, fine, Decimal(2000000))
    assert not heavier_than_notice(fine, Decimal(2000000), Measure.SUSPEND_FUNCTIONS, None)
    assert not heavier_than_notice(Measure.WARNING, None, fine, Decimal(10000))
    assert heavier_than_notice(fine, Decimal(1), Measure.WARNING, None)


def test_repeat_offenders_start_higher(default_policy: Policy) -> None:
    first = case_policy_for(default_policy, "prohibited_information")
    assert starting_rung(first) == 0
    assert rung_at(first, starting_rung(first)).measure is Measure.WARNING
    again = case_policy_for(default_policy, "prohibited_information", prior_cases=1)
    assert starting_rung(again) == 1
    assert rung_at(again, starting_rung(again)).measure is Measure.FINE
    many = case_policy_for(default_policy, "prohibited_information", prior_cases=5)
    assert starting_rung(many) == 1  # the offset, not the count
    one_rung = case_policy_for(default_policy, "counterfeit_site", prior_cases=2)
    assert starting_rung(one_rung) == 0  # never past the top of the ladder
    assert rung_at(first, 99).measure is Measure.REFERRAL


def test_leniency_for_a_first_minor_violation_corrected_in_time(default_policy: Policy) -> None:
    first = case_policy_for(default_policy, "prohibited_information")
    assert lenient(first, Severity.MINOR, corrected_in_time=True)
    assert not lenient(first, Severity.MINOR, corrected_in_time=False)
    assert not lenient(first, Severity.GENERAL, corrected_in_time=True)
    repeat = case_policy_for(default_policy, "prohibited_information", prior_cases=1)
    assert not lenient(repeat, Severity.MINOR, corrected_in_time=True)
    disabled = first.model_copy(
        update={"leniency": first.leniency.model_copy(update={"enabled": False})}
    )
    assert not lenient(disabled, Severity.MINOR, corrected_in_time=True)


# --- the policy slice, fixed when a case opens (open_case, against PostgreSQL) ----------------

OPENED_AT = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
CATEGORY = "personal_information"

# The repository's policies and an older version, so earlier cases can open before 2026.
HISTORY = PolicySet(
    [
        load_policy_file(DEFAULT_FILE).model_copy(
            update={"version": "2020.1", "effective_from": date(2020, 1, 1)}
        ),
        *POLICIES,
    ]
)


def unique_app() -> SubjectIdentifiers:
    return SubjectIdentifiers(app_package=f"cn.test.app{uuid.uuid4().hex[:12]}")


async def open_app_case(
    pool: asyncpg.Pool,
    policies: PolicySet,
    identifiers: SubjectIdentifiers,
    *,
    opened_at: datetime = OPENED_AT,
    category: str = CATEGORY,
    case_id: str = "",
) -> tuple[str, OpeningResult]:
    """Open a case of the app as the workflow does: one open_case activity."""
    opened = open_case_input(
        case_id or None,
        subject=Subject(kind=SubjectKind.APP, name="Test app", identifiers=identifiers),
        violation_category=category,
    )
    request = OpeningRequest(
        opened=opened, workflow_id=case_workflow_id(opened.case_id), opened_at=opened_at
    )
    result = await ActivityEnvironment().run(StepActivities(pool, policies).open_case, request)
    return opened.case_id, result


async def run_case_policy(
    pool: asyncpg.Pool,
    policies: PolicySet,
    identifiers: SubjectIdentifiers,
    *,
    opened_at: datetime = OPENED_AT,
    category: str = CATEGORY,
) -> CasePolicy:
    """The policy slice a new case of the app opens under."""
    _, result = await open_app_case(
        pool, policies, identifiers, opened_at=opened_at, category=category
    )
    return result.policy


async def next_step(pool: asyncpg.Pool, case_id: str, action: str, **kw: Any) -> None:
    """The case's next step, as the workflow records it (the day after the last one)."""
    row = await pool.fetchrow(
        "SELECT stage, last_seq, updated_at FROM cases WHERE case_id = $1", case_id
    )
    assert row is not None
    record = StepRecord(
        case_id=case_id,
        workflow_id=case_workflow_id(case_id),
        office="beijing",
        seq=row["last_seq"] + 1,
        action=action,
        from_stage=Stage(row["stage"]),
        actor="officer.li",
        occurred_at=row["updated_at"] + timedelta(days=1),
        **kw,
    )
    result = await ActivityEnvironment().run(StepActivities(pool, POLICIES).record_step, record)
    assert not result.duplicate


async def register_case(
    pool: asyncpg.Pool,
    identifiers: SubjectIdentifiers,
    opened_at: datetime,
    *,
    filing: str | None = "filed",
) -> str:
    """An earlier case in the register: opened, then (unless `filing` is None) filed."""
    case_id, _ = await open_app_case(pool, HISTORY, identifiers, opened_at=opened_at)
    if filing == "filed":
        await next_step(pool, case_id, "filed", to_stage=Stage.FILED)
    elif filing == "filed_summary_disposal":
        await next_step(pool, case_id, filing, to_stage=Stage.REFERRING)
    else:
        assert filing is None
    return case_id


async def close_case(pool: asyncpg.Pool, case_id: str, outcome: Outcome) -> None:
    await next_step(
        pool, case_id, f"closed_{outcome.value}", to_stage=Stage.CLOSED, outcome=outcome
    )


async def written_for(pool: asyncpg.Pool, case_id: str) -> tuple[int, int]:
    """(register rows, audit rows) of a case."""
    cases = await pool.fetchval("SELECT count(*) FROM cases WHERE case_id = $1", case_id)
    audit = await pool.fetchval("SELECT count(*) FROM case_audit WHERE case_id = $1", case_id)
    return int(cases), int(audit)


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies(REPO_ROOT / "policies")


async def test_first_case_of_a_subject_has_no_prior_cases(
    pool: asyncpg.Pool, policies: PolicySet
) -> None:
    result = await run_case_policy(pool, policies, unique_app())
    assert (result.version, result.category, result.prior_cases) == ("2026.1", CATEGORY, 0)
    assert result.rules == policies.get("2026.1").categories[CATEGORY]
    assert result.safeguards.payment.days == 15
    assert starting_rung(result) == 0


async def test_earlier_case_of_the_same_app_counts(pool: asyncpg.Pool, policies: PolicySet) -> None:
    app = unique_app()
    await register_case(pool, app, OPENED_AT - timedelta(days=100))
    # The new case names the app plus another identifier: one in common is enough.
    subject = app.model_copy(update={"account_id": f"acct-{uuid.uuid4().hex}"})
    case_id, opened = await open_app_case(pool, policies, subject)
    result = opened.policy
    assert result.prior_cases == 1
    assert starting_rung(result) == 1
    assert not lenient(result, Severity.MINOR, corrected_in_time=True)
    payload = await pool.fetchval(
        "SELECT payload FROM case_audit WHERE case_id = $1 AND seq = 1", case_id
    )
    assert (payload["policy_version"], payload["prior_cases"]) == ("2026.1", 1)


async def test_any_identifier_in_common_counts(pool: asyncpg.Pool, policies: PolicySet) -> None:
    uscc = "91110000" + uuid.uuid4().hex[:10].upper()  # hex: no I, O, Z, S, V
    company = SubjectIdentifiers(unified_social_credit_code=uscc)
    await register_case(pool, company, OPENED_AT - timedelta(days=10))
    await register_case(pool, company, OPENED_AT - timedelta(days=20))
    other_app_same_company = unique_app().model_copy(update={"unified_social_credit_code": uscc})
    result = await run_case_policy(pool, policies, other_app_same_company)
    assert result.prior_cases == 2


async def test_a_different_subject_does_not_count(pool: asyncpg.Pool, policies: PolicySet) -> None:
    await register_case(pool, unique_app(), OPENED_AT - timedelta(days=5))
    result = await run_case_policy(pool, policies, unique_app())
    assert result.prior_cases == 0


async def test_only_cases_within_the_lookback_count(
    pool: asyncpg.Pool, policies: PolicySet
) -> None:
    app = unique_app()
    await register_case(pool, app, OPENED_AT - timedelta(days=731))  # too old
    await register_case(pool, app, OPENED_AT - timedelta(days=729))
    await register_case(pool, app, OPENED_AT + timedelta(hours=1))  # opened later
    result = await run_case_policy(pool, policies, app)
    assert result.repeat_offender.lookback_days == 730
    assert result.prior_cases == 1


async def test_a_case_counts_only_once_it_is_filed(pool: asyncpg.Pool, policies: PolicySet) -> None:
    app = unique_app()
    clue = await register_case(pool, app, OPENED_AT - timedelta(days=30), filing=None)
    transferred = await register_case(pool, app, OPENED_AT - timedelta(days=25), filing=None)
    await next_step(pool, transferred, "clue_transferred", to_stage=Stage.REFERRING)
    assert (await run_case_policy(pool, policies, app)).prior_cases == 0
    await next_step(pool, clue, "filed", to_stage=Stage.FILED)  # the clue is filed after all
    assert (await run_case_policy(pool, policies, app)).prior_cases == 1
    await register_case(pool, app, OPENED_AT - timedelta(days=20), filing="filed_summary_disposal")
    assert (await run_case_policy(pool, policies, app)).prior_cases == 2


def test_the_filing_actions_are_the_workflows() -> None:
    source = (REPO_ROOT / "workflows" / "intake.py").read_text(encoding="utf-8")
    for action in FILING_ACTIONS:
        assert f'"{action}"' in source, action


async def test_withdrawn_or_unfiled_cases_do_not_count(
    pool: asyncpg.Pool, policies: PolicySet
) -> None:
    app = unique_app()
    withdrawn = await register_case(pool, app, OPENED_AT - timedelta(days=60))
    await close_case(pool, withdrawn, Outcome.WITHDRAWN)
    not_filed = await register_case(pool, app, OPENED_AT - timedelta(days=50), filing=None)
    await close_case(pool, not_filed, Outcome.NOT_FILED)
    assert (await run_case_policy(pool, policies, app)).prior_cases == 0
    penalized = await register_case(pool, app, OPENED_AT - timedelta(days=40))
    await close_case(pool, penalized, Outcome.PENALIZED)
    await register_case(pool, app, OPENED_AT - timedelta(days=30))  # filed, still open
    assert (await run_case_policy(pool, policies, app)).prior_cases == 2


async def test_cases_opened_at_the_same_instant_do_not_count_each_other(
    pool: asyncpg.Pool, policies: PolicySet
) -> None:
    app = unique_app()
    first = await register_case(pool, app, OPENED_AT)
    second, opened = await open_app_case(pool, policies, app)  # the same instant
    assert opened.policy.prior_cases == 0
    await next_step(pool, second, "filed", to_stage=Stage.FILED)
    # Neither counts the other, even once both are filed; a later case counts both.
    async with pool.acquire() as conn:
        for case_id in (first, second):
            assert (
                await PriorCasesRepository(conn).count_prior_cases(
                    app,
                    since=OPENED_AT - timedelta(days=730),
                    before=OPENED_AT,
                    excluding_case_id=case_id,
                )
                == 0
            )
    later = OPENED_AT + timedelta(microseconds=1)
    assert (await run_case_policy(pool, policies, app, opened_at=later)).prior_cases == 2


def test_no_offence_outcomes_are_register_outcomes() -> None:
    assert set(NO_OFFENCE_OUTCOMES) <= {outcome.value for outcome in Outcome}


async def test_the_case_itself_does_not_count(pool: asyncpg.Pool) -> None:
    app = unique_app()
    case_id = await register_case(pool, app, OPENED_AT - timedelta(minutes=1))
    async with pool.acquire() as conn:
        prior = PriorCasesRepository(conn)
        window = {"since": OPENED_AT - timedelta(days=730), "before": OPENED_AT}
        assert await prior.count_prior_cases(app, **window, excluding_case_id=case_id) == 0
        assert await prior.count_prior_cases(app, **window, excluding_case_id="T-other") == 1


async def test_a_retried_opening_keeps_the_prior_cases_it_counted(
    pool: asyncpg.Pool, policies: PolicySet
) -> None:
    app = unique_app()
    await register_case(pool, app, OPENED_AT - timedelta(days=10))
    case_id, first = await open_app_case(pool, policies, app)
    assert first.policy.prior_cases == 1
    await register_case(pool, app, OPENED_AT - timedelta(days=5))  # filed in between
    _, again = await open_app_case(pool, policies, app, case_id=case_id)
    assert again.duplicate
    assert again.policy == first.policy and again.filing_deadline == first.filing_deadline
    assert await written_for(pool, case_id) == (1, 1)


async def test_policy_is_chosen_by_the_opening_day_in_shanghai(
    pool: asyncpg.Pool, two_versions: PolicySet
) -> None:
    app = unique_app()
    # 16:30 UTC on 30 June is 00:30 on 1 July in Beijing: the new version is in force.
    late_june_utc = datetime(2026, 6, 30, 16, 30, tzinfo=UTC)
    case_id, opened = await open_app_case(pool, two_versions, app, opened_at=late_june_utc)
    result = opened.policy
    assert (result.version, result.repeat_offender.lookback_days) == ("2026.2", 365)
    row = await pool.fetchrow("SELECT policy_version FROM cases WHERE case_id = $1", case_id)
    assert row is not None and row["policy_version"] == "2026.2"
    # A retry answers from the version stored, not the one in force now.
    _, again = await open_app_case(pool, two_versions, app, case_id=case_id)
    assert again.duplicate and again.policy == result
    earlier = late_june_utc - timedelta(hours=1)  # 23:30 on 30 June in Beijing
    assert (await run_case_policy(pool, two_versions, app, opened_at=earlier)).version == "2026.1"


def test_case_policy_is_the_slice_in_force(policies: PolicySet, default_policy: Policy) -> None:
    result = case_policy(policies, OPENED_AT, CATEGORY, 3)
    assert result == case_policy_for(default_policy, CATEGORY, prior_cases=3)
    assert policy_slice(default_policy, CATEGORY, 3) == result
    # Each answer is a copy: changing one never changes the loaded policy or the next answer.
    result.rules.ladder.clear()
    result.limits.handling.days = 1
    fresh = case_policy(policies, OPENED_AT, CATEGORY, 0)
    assert fresh.rules == policies.get("2026.1").categories[CATEGORY]
    assert fresh.limits.handling.days == 90


async def test_unknown_category_is_not_retried(pool: asyncpg.Pool, policies: PolicySet) -> None:
    case_id = f"T-spam-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ApplicationError) as caught:
        await open_app_case(pool, policies, unique_app(), category="spam", case_id=case_id)
    error = caught.value
    assert error.type == UNKNOWN_CATEGORY and error.non_retryable
    assert "'spam'" in error.message
    assert "known categories: algorithm_recommendation, counterfeit_site," in error.message
    for category in CATEGORIES:
        assert category in error.message
    assert await written_for(pool, case_id) == (0, 0)
    with pytest.raises(ApplicationError) as plain:
        policy_slice(policies.get("2026.1"), "spam", 0)
    assert plain.value.type == UNKNOWN_CATEGORY and plain.value.non_retryable


async def test_no_policy_in_force_is_not_retried(pool: asyncpg.Pool, policies: PolicySet) -> None:
    before_any = datetime(2025, 12, 31, 15, 59, tzinfo=UTC)  # 23:59 on 31 Dec in Beijing
    case_id = f"T-early-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ApplicationError) as caught:
        await open_app_case(pool, policies, unique_app(), opened_at=before_any, case_id=case_id)
    assert caught.value.type == NO_POLICY_IN_FORCE and caught.value.non_retryable
    assert "no policy in force on 2025-12-31" in caught.value.message
    assert await written_for(pool, case_id) == (0, 0)
    with pytest.raises(ApplicationError) as plain:
        case_policy(policies, before_any, CATEGORY, 0)
    assert plain.value.type == NO_POLICY_IN_FORCE and plain.value.non_retryable


async def test_prior_case_lookup_uses_the_identifier_index(pool: asyncpg.Pool) -> None:
    """The `@> ANY(jsonb[])` probe is served by the GIN index (a bitmap scan per identifier).

    The test register is tiny, so the planner prefers the opened_at index, or starts from the
    few filing rows of the audit trail (a real register files most of its cases); with those
    indexes hidden (dropped inside a transaction that is rolled back), the identifier index must
    take over.
    """
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("DROP INDEX cases_opened_at_idx")
            await conn.execute("DROP INDEX case_audit_action_occurred_idx")
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = await conn.fetch(
                "EXPLAIN " + PRIOR_CASES_SQL,
                [{"app_package": "cn.test.x"}, {"domain": "x.example.cn"}],
                OPENED_AT - timedelta(days=730),
                OPENED_AT,
                "T-none",
                list(NO_OFFENCE_OUTCOMES),
                list(FILING_ACTIONS),
            )
        finally:
            await transaction.rollback()
    text = "\n".join(row[0] for row in plan)
    assert "Bitmap Index Scan on cases_subject_identifiers_idx" in text, text
    assert "Index Cond: (subject_identifiers @> ANY" in text, text
