"""Hypothesis strategies and settings shared by the property tests (tests/test_properties_*.py).

The settings profile is registered here, never loaded globally: each test takes it as the parent
of its own `@settings`, so other test files keep hypothesis's defaults. No example database is
written (nothing lands in the working tree); RECTIFY_PROPERTY_SCALE=10 runs ten times as many
examples (e.g. before a release), 0.2 a fifth of them.
"""

from __future__ import annotations

import os
import string
import sys
import unicodedata
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from domain.commands import EventType
from domain.models import Severity, SubjectKind

settings.register_profile(
    "rectify-properties",
    deadline=None,  # a 2-core CI machine is slow now and then; speed is bounded by max_examples
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROPERTIES = settings.get_profile("rectify-properties")
SCALE = float(os.environ.get("RECTIFY_PROPERTY_SCALE", "1"))


def examples(n: int) -> settings:
    """The shared profile with `n` examples (scaled by RECTIFY_PROPERTY_SCALE)."""
    return settings(PROPERTIES, max_examples=max(1, round(n * SCALE)))


# --- text ------------------------------------------------------------------------------------

NUL = "\x00"
# Any character UTF-8 can carry except NUL: no lone surrogates, which no JSON body or file holds.
STORABLE_CHARS = st.characters(codec="utf-8", exclude_characters=NUL)


def storable_text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(STORABLE_CHARS, min_size=min_size, max_size=max_size)


def words(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text with something besides whitespace: what a required text field accepts."""
    return storable_text(1, max_size).filter(lambda text: text.strip() != "")


def with_nul(text: str, position: int) -> str:
    """`text` with a NUL inserted at `position` (clamped to its length)."""
    at = min(max(position, 0), len(text))
    return text[:at] + NUL + text[at:]


def trimmed_from(original: str, stored: str) -> bool:
    """Whether `stored` is `original` with at most whitespace removed from either end."""
    lead = len(original) - len(original.lstrip())
    for start in range(lead + 1):
        end = start + len(stored)
        rest = original[end:]
        if original[start:end] == stored and (rest == "" or rest.isspace()):
            return True
    return False


# --- JSON-ish values -------------------------------------------------------------------------

JSON_SCALARS: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text(max_size=20)
)


def json_values(
    scalars: st.SearchStrategy[Any] = JSON_SCALARS,
    keys: st.SearchStrategy[str] | None = None,
    max_leaves: int = 12,
) -> st.SearchStrategy[Any]:
    """Values JSON can carry (and YAML too): scalars, lists and string-keyed objects."""
    key_text = keys if keys is not None else storable_text(max_size=12)
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(key_text, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def json_objects(max_leaves: int = 12) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(
        storable_text(max_size=12), json_values(max_leaves=max_leaves), max_size=4
    )


def string_paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and list indices) of every string inside a JSON-ish value."""
    if isinstance(value, str):
        yield at
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_paths(item, (*at, index))


def get_at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of the JSON-ish `value` with the item at `path` replaced by `new`."""
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {k: replaced(v, tuple(rest), new) if k == head else v for k, v in value.items()}
    assert isinstance(value, list)
    return [replaced(v, tuple(rest), new) if i == head else v for i, v in enumerate(value)]


def removed(value: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    """A copy of `value` without the mapping key at `path`."""
    *parents, last = path
    parent = get_at(value, tuple(parents))
    assert isinstance(parent, dict)
    result: dict[str, Any] = replaced(
        value, tuple(parents), {k: v for k, v in parent.items() if k != last}
    )
    return result


# --- moments ---------------------------------------------------------------------------------

OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def aware_moments(min_year: int = 1, max_year: int = 9999) -> st.SearchStrategy[datetime]:
    """Instants with a whole-minute UTC offset, their wall-clock year within the bounds."""
    return st.datetimes(
        min_value=datetime(min_year, 1, 1),
        max_value=datetime(max_year, 12, 31, 23, 59, 59, 999999),
        timezones=OFFSETS,
    )


def plausible_moments() -> st.SearchStrategy[datetime]:
    """Moments a command may carry (2000-2100)."""
    return aware_moments(2000, 2100)


def local_starts(first: date, last: date) -> st.SearchStrategy[datetime]:
    """UTC instants (aware or naive, a naive one is taken as UTC) between two days."""
    return st.datetimes(
        min_value=datetime.combine(first, datetime.min.time()),
        max_value=datetime.combine(last, datetime.max.time()),
        timezones=st.sampled_from([None, UTC]),
    )


# --- money -----------------------------------------------------------------------------------


@st.composite
def amount_texts(draw: st.DrawFn) -> str:
    """A valid amount in yuan as written: ASCII digits, at most 14 whole digits and 2 decimals,
    above zero, no leading zeros."""
    whole = draw(st.integers(min_value=0, max_value=10**14 - 1))
    places = draw(st.sampled_from([0, 1, 2]))
    fraction = draw(st.integers(min_value=0, max_value=10**places - 1)) if places else 0
    if whole == 0 and fraction == 0:
        whole = 1
    return f"{whole}.{fraction:0{places}d}" if places else str(whole)


FULL_WIDTH_DIGITS = {str(d): chr(0xFF10 + d) for d in range(10)}
# Decimal digits of every other script by their value ("3": Arabic-Indic ٣, Devanagari ३, ...):
# Python's Decimal() reads each as that digit.
FOREIGN_DIGITS: dict[str, list[str]] = {d: [] for d in string.digits}
for _char in map(chr, range(0x80, sys.maxunicode + 1)):
    if unicodedata.category(_char) == "Nd":
        FOREIGN_DIGITS[str(unicodedata.digit(_char))].append(_char)


# --- subjects and events ---------------------------------------------------------------------

_LOWER_ALNUM = string.ascii_lowercase + string.digits
_LABELS = st.text(_LOWER_ALNUM, min_size=1, max_size=10)


@st.composite
def domains(draw: st.DrawFn) -> str:
    labels = draw(st.lists(_LABELS, min_size=1, max_size=3))
    if draw(st.booleans()):  # a hyphen inside a label
        first = labels[0]
        labels[0] = f"{first[0]}-{first}"
    tld = draw(st.text(string.ascii_lowercase, min_size=2, max_size=6))
    return ".".join([*labels, tld])


APP_PACKAGES = st.from_regex(
    r"[A-Za-z][A-Za-z0-9_]{0,8}(\.[A-Za-z][A-Za-z0-9_]{0,8}){1,3}", fullmatch=True
)
USCC = st.from_regex(r"[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}", fullmatch=True)
ICP_FILINGS = st.builds(
    lambda region, kind, number: f"{region}ICP{kind}{number}号",
    st.sampled_from(["京", "沪", "粤", "浙"]),
    st.sampled_from(["备", "证"]),
    st.integers(min_value=1000, max_value=10**12 - 1),
)


@st.composite
def identifiers(draw: st.DrawFn) -> dict[str, str]:
    """One to five valid identifiers of a subject."""
    choices = {
        "domain": domains(),
        "icp_filing": ICP_FILINGS,
        "app_package": APP_PACKAGES,
        "unified_social_credit_code": USCC,
        "account_id": words(60),
    }
    names = draw(st.lists(st.sampled_from(sorted(choices)), min_size=1, max_size=5, unique=True))
    return {name: draw(choices[name]) for name in names}


@st.composite
def subjects(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "kind": draw(st.sampled_from(SubjectKind)).value,
        "name": draw(words(60)),
        "identifiers": draw(identifiers()),
    }


@st.composite
def event_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid POST /events body, as JSON would carry it."""
    body: dict[str, Any] = {
        "idempotency_key": draw(words(60)),
        "type": draw(st.sampled_from(EventType)).value,
        "source": draw(words(30)),
        "occurred_at": draw(plausible_moments()).isoformat(),
        # Any keys: the payload is kept as sent (" url" and "url" stay two keys).
        "payload": draw(st.dictionaries(storable_text(max_size=12), json_values(), max_size=4)),
        "subject": draw(subjects()),
        "violation_category": draw(words(30)),
        "legal_basis": draw(words(40)),
        "office": draw(words(20)),
    }
    if draw(st.booleans()):
        body["severity"] = draw(st.sampled_from(Severity)).value
    return body


# --- calendars -------------------------------------------------------------------------------

HOLIDAY_NAMES = st.sampled_from(
    ["New Year's Day", "Spring Festival", "Labour Day", "National Day", "国庆节"]
) | words(20)


def year_days(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(n) for n in range((date(year + 1, 1, 1) - first).days)]


@st.composite
def arrangement_data(draw: st.DrawFn, year: int | None = None) -> dict[str, Any]:
    """A valid arrangement file's content: holiday ranges that do not overlap (in any order), and
    make-up working weekends outside them, all in the year."""
    y = year if year is not None else draw(st.integers(min_value=2000, max_value=2100))
    last_day = date(y, 12, 31)
    cursor = date(y, 1, 1)
    holidays: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        start = cursor + timedelta(draw(st.integers(min_value=0, max_value=70)))
        end = start + timedelta(draw(st.integers(min_value=0, max_value=8)))
        if end > last_day:
            break
        holidays.append({"name": draw(HOLIDAY_NAMES), "from": start, "to": end})
        cursor = end + timedelta(1)
    off = {
        h["from"] + timedelta(n) for h in holidays for n in range((h["to"] - h["from"]).days + 1)
    }
    weekends = [d for d in year_days(y) if d.weekday() >= 5 and d not in off]
    makeups = draw(st.lists(st.sampled_from(weekends), unique=True, max_size=6))
    return {
        "year": y,
        "source": draw(words(40)),
        "holidays": draw(st.permutations(holidays)),
        "makeup_workdays": [{"date": d, "for": draw(HOLIDAY_NAMES)} for d in makeups],
    }


def as_written(data: Any) -> Any:
    """The content with every date written YYYY-MM-DD (as JSON, or quoted YAML, carries it)."""
    if isinstance(data, date):
        return data.isoformat()
    if isinstance(data, dict):
        return {k: as_written(v) for k, v in data.items()}
    if isinstance(data, list):
        return [as_written(v) for v in data]
    return data
