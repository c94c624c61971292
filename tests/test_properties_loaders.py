"""Properties of the file loaders: policy files (wiring/policy_files.py) and the working-day
arrangement files (activities/calendar.py, behind `rectify calendar load` in ops/calendar_cli.py).

- Valid generated files (YAML, JSON) load to the model they were made from, and what a loaded
  file dumps to loads to the same again.
- A valid file changed in one place is refused with the loader's own error, naming the file and
  the field at fault (never another field's); anything at all (junk values, mutated or
  arbitrary text, bytes that are not UTF-8, YAML tags, impossible dates, deep nesting) either
  loads or is refused with that error: never another exception type.
- Loading writes nothing: the files and their folder are as they were; a bad arrangement file
  is refused by the CLI before it asks for the database; a folder with one bad policy file
  gives no policies at all.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
from argparse import Namespace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from activities.calendar import (
    WEEKDAYS,
    CalendarFileError,
    YearArrangement,
    load_arrangement_file,
    parse_arrangement,
)
from domain.models import NUL_REFUSED
from domain.policy import Policy
from ops.calendar_cli import run_calendar_command
from tests.strategies import (
    arrangement_data,
    as_written,
    examples,
    get_at,
    json_values,
    removed,
    replaced,
    storable_text,
    with_nul,
    words,
    year_days,
)
from wiring.policy_files import (
    PolicyFileError,
    PolicyNotFound,
    load_policies,
    load_policy_file,
)
from wiring.settings import REPO_ROOT, Settings

DEFAULT_FILE = REPO_ROOT / "policies" / "default.yaml"
DEFAULT_TEXT = DEFAULT_FILE.read_text(encoding="utf-8")
DEFAULT_DATA: dict[str, Any] = yaml.safe_load(DEFAULT_TEXT)
DEFAULT_POLICY = Policy.model_validate(DEFAULT_DATA)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder under pytest's basetemp; each example takes a fresh folder inside it."""
    return tmp_path_factory.mktemp("loaders")


def fresh(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in the folder and its bytes: what loading must leave as it was."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def dump_yaml(data: Any) -> str:
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    if "\x85" in text:
        # PyYAML writes a NEL raw inside single quotes, where YAML reads it as a line break:
        # its writer would change the text, so it is escaped ("\N") instead.
        text = yaml.safe_dump(data, allow_unicode=False, sort_keys=False)
    return text


def dump_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


# Text edits: YAML and JSON syntax, digits, letters, quotes, spaces and line breaks.
EDIT_CHARS = st.sampled_from([*":{}[],-#&*!|>'\"\\ \t\n0123456789abcxyz.\u3000"])


@st.composite
def edited(draw: st.DrawFn, text: str) -> str:
    """`text` after one to five edits (insert, delete or replace a character)."""
    chars = list(text)
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        at = draw(st.integers(min_value=0, max_value=max(len(chars) - 1, 0)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert" or not chars:
            chars.insert(at, draw(EDIT_CHARS))
        elif action == "delete":
            del chars[at]
        else:
            chars[at] = draw(EDIT_CHARS)
    return "".join(chars)


def names_the_file(message: str, path: Path) -> bool:
    return message.startswith((f"{path.name}: ", f"{path}: "))


# --- arrangement files: valid ones load and round-trip ---------------------------------------

FILE_FORMATS = st.sampled_from(["yaml", "yaml-quoted-dates", "json"])


def write_arrangement(folder: Path, data: dict[str, Any], fmt: str) -> Path:
    if fmt == "json":
        path = folder / "calendar.json"
        path.write_text(dump_json(as_written(data)), encoding="utf-8")
    else:
        path = folder / "calendar.yaml"
        # Plain dates (2027-01-01, which the loader reads as text) or quoted ones ('2027-01-01').
        content = data if fmt == "yaml" else as_written(data)
        path.write_text(dump_yaml(content), encoding="utf-8")
    return path


@examples(40)
@given(data=arrangement_data(), fmt=FILE_FORMATS)
def test_valid_arrangement_files_load_and_round_trip(
    scratch: Path, data: dict[str, Any], fmt: str
) -> None:
    """A valid arrangement written as YAML (dates plain or quoted) or JSON loads to the model it
    was made from; its JSON dump, as a file, loads to the same; its dump parses to it."""
    expected = YearArrangement.model_validate(data)
    folder = fresh(scratch)
    assert load_arrangement_file(write_arrangement(folder, data, fmt)) == expected
    again = folder / "again.json"
    again.write_text(expected.model_dump_json(by_alias=True), encoding="utf-8")
    assert load_arrangement_file(again) == expected
    assert parse_arrangement(expected.model_dump(by_alias=True), "x.yaml") == expected
    assert len(expected.holidays) == len(data["holidays"])
    assert [m.day for m in expected.makeup_workdays] == [m["date"] for m in data["makeup_workdays"]]


# --- arrangement files: one change, refused naming the field ---------------------------------


def _holiday_paths(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [("holidays", i) for i in range(len(data["holidays"]))]


def _makeup_paths(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [("makeup_workdays", j) for j in range(len(data["makeup_workdays"]))]


def _written(path: tuple[Any, ...]) -> str:
    """A path as the calendar loader writes it: `holidays[0].from`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@st.composite
def broken_arrangements(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid arrangement changed in one place, and what the refusal must say."""
    data = draw(arrangement_data())
    year = data["year"]
    kinds = ["missing", "unknown-key", "nul", "bad-year", "unwritten-date", "makeup-weekday"]
    if data["holidays"]:
        kinds += ["date-in-another-year", "to-before-from", "makeup-inside-holiday"]
    if data["makeup_workdays"]:
        kinds += ["makeup-twice"]
    kind = draw(st.sampled_from(kinds))
    if kind == "missing":
        key = draw(st.sampled_from(["year", "source", "holidays", "makeup_workdays"]))
        return removed(data, (key,)), f"{key}: missing"
    if kind == "unknown-key":
        where = draw(st.sampled_from([(), *_holiday_paths(data), *_makeup_paths(data)]))
        key = draw(st.sampled_from(["colour", "form", "dates", "name2", "备注"]))
        node = {**get_at(data, where), key: draw(json_values(max_leaves=3))}
        return replaced(data, where, node), f"{_written((*where, key))}: unknown key"
    if kind == "nul":
        texts = [("source",)]
        texts += [(*p, "name") for p in _holiday_paths(data)]
        texts += [(*p, "for") for p in _makeup_paths(data)]
        path = draw(st.sampled_from(texts))
        text = get_at(data, path)
        hostile = with_nul(text, draw(st.integers(min_value=0, max_value=len(text))))
        return replaced(data, path, hostile), f"{_written(path)}: {NUL_REFUSED}"
    if kind == "bad-year":
        bad = draw(
            st.integers(max_value=1999)
            | st.integers(min_value=2101)
            | st.sampled_from(["next", "二〇二七", "2027a", "", "MMXXVII", 2027.5, [2027]])
            | st.none()
        )
        return {**data, "year": bad}, "year: "
    if kind == "unwritten-date":
        dates = [(*p, k) for p in _holiday_paths(data) for k in ("from", "to")]
        dates += [(*p, "date") for p in _makeup_paths(data)]
        if not dates:
            return removed(data, ("holidays",)), "holidays: missing"
        path = draw(st.sampled_from(dates))
        day = get_at(data, path)
        unix = (day - date(1970, 1, 1)).days * 86400
        bad = draw(
            st.sampled_from(
                [
                    str(unix),
                    unix,
                    f"{day}T00:00:00",
                    f"{day}T00:00:00+08:00",
                    day.strftime("%Y/%m/%d"),
                    day.strftime("%d.%m.%Y"),
                    f" {day}",
                    f"{day.year}-{day.month}-{day.day}x",
                    True,
                    None,
                ]
            )
        )
        return replaced(data, path, bad), f"{_written(path)}: expected a date written YYYY-MM-DD"
    if kind == "makeup-weekday":
        weekday = draw(st.sampled_from([d for d in year_days(year) if d.weekday() < 5]))
        makeups = [*data["makeup_workdays"], {"date": weekday, "for": "x"}]
        j = len(makeups) - 1
        return {**data, "makeup_workdays": makeups}, (
            f"makeup_workdays[{j}].date: {weekday} is a {WEEKDAYS[weekday.weekday()]}; "
            "a make-up working day is a Saturday or Sunday"
        )
    if kind == "makeup-twice":
        first = draw(st.sampled_from(data["makeup_workdays"]))
        j = len(data["makeup_workdays"])
        makeups = [*data["makeup_workdays"], first]
        return {**data, "makeup_workdays": makeups}, f"makeup_workdays[{j}].date: " + (
            f"{first['date']} is listed twice"
        )
    i = draw(st.integers(min_value=0, max_value=len(data["holidays"]) - 1))
    holiday = data["holidays"][i]
    if kind == "date-in-another-year":
        key = draw(st.sampled_from(["from", "to"]))
        shift = draw(st.sampled_from([-366, 366, 3650]))
        day = holiday[key] + timedelta(shift)
        bad = {**holiday, key: day}
        return replaced(data, ("holidays", i), bad), f"holidays[{i}].{key}: {day} is not in {year}"
    if kind == "to-before-from":
        if holiday["from"] == holiday["to"]:
            bad = {**holiday, "to": holiday["from"] - timedelta(1)}
        else:
            bad = {**holiday, "from": holiday["to"], "to": holiday["from"]}
        return (
            replaced(data, ("holidays", i), bad),
            f"holidays[{i}].to: {bad['to']} is before from ({bad['from']})",
        )
    # makeup-inside-holiday
    day = holiday["from"] + timedelta(
        draw(st.integers(min_value=0, max_value=(holiday["to"] - holiday["from"]).days))
    )
    makeups = [*data["makeup_workdays"], {"date": day, "for": holiday["name"]}]
    j = len(makeups) - 1
    return {**data, "makeup_workdays": makeups}, (
        f"makeup_workdays[{j}].date: {day} is inside holidays[{i}]"
    )


@examples(120)
@given(broken=broken_arrangements())
def test_a_changed_arrangement_is_refused_naming_the_field(
    broken: tuple[dict[str, Any], str],
) -> None:
    """Each change (a key missing or unknown, a NUL in text, a year out of range, a date not
    written YYYY-MM-DD or in another year, a range backwards, a make-up day on a weekday, inside
    a holiday or given twice) is refused with the loader's error naming the origin and field."""
    data, expected = broken
    with pytest.raises(CalendarFileError) as refused:
        parse_arrangement(data, "calendar-2030.yaml")
    message = str(refused.value)
    assert message.startswith("calendar-2030.yaml: ")
    assert expected in message, message


@examples(40)
@given(broken=broken_arrangements())
def test_a_changed_arrangement_file_is_refused_by_the_cli_before_the_database(
    scratch: Path, broken: tuple[dict[str, Any], str]
) -> None:
    """`rectify calendar load` refuses such a file in one line on stderr naming the file and the
    field, prints nothing else and never asks for the database: nothing can be half-written."""
    data, expected = broken
    folder = fresh(scratch)
    path = folder / "calendar-2030.json"
    path.write_text(dump_json(as_written(data)), encoding="utf-8")
    before = snapshot(folder)
    code, out, err, asked = run_load(path)
    assert (code, out, asked) == (1, "", 0)
    assert err.count("\n") == 1 and err.startswith("rectify calendar load: calendar-2030.json: ")
    assert expected in err
    assert snapshot(folder) == before


class _NoDatabase:
    """Settings whose database is never there; counts how often it is asked for."""

    temporal_address = None

    def __init__(self) -> None:
        self.asked = 0

    def require_database_url(self) -> str:
        self.asked += 1
        raise RuntimeError("DATABASE_URL is not set (property test)")


def run_load(path: Path) -> tuple[int, str, str, int]:
    """`rectify calendar load PATH`: exit code, stdout, stderr, times the database was asked."""
    settings = _NoDatabase()
    args = Namespace(calendar_command="load", file=path, loaded_by="officer.test")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_calendar_command(args, cast(Settings, settings))
    return code, out.getvalue(), err.getvalue(), settings.asked


@examples(20)
@given(data=arrangement_data(), fmt=FILE_FORMATS)
def test_a_valid_arrangement_file_passes_the_cli_check_and_goes_to_the_database(
    scratch: Path, data: dict[str, Any], fmt: str
) -> None:
    """The counterpart: a valid file passes every check and the CLI asks for the database once
    (here absent, so it stops there with that one error)."""
    code, out, err, asked = run_load(write_arrangement(fresh(scratch), data, fmt))
    assert (code, out, asked) == (1, "", 1)
    assert err == "rectify calendar load: DATABASE_URL is not set (property test)\n"


# --- arrangement files: anything else is loaded or refused, never a crash --------------------

FIELD_NAMES = st.sampled_from(
    ["year", "source", "holidays", "makeup_workdays", "name", "from", "to", "date", "for"]
)
YAML_SCALARS: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | storable_text(max_size=12)
    | st.dates()
    | st.binary(max_size=8)
    | st.frozensets(st.integers(), max_size=3)
)
YAML_KEYS: st.SearchStrategy[Any] = (
    FIELD_NAMES | storable_text(max_size=8) | st.integers() | st.none() | st.booleans()
)


def _node_paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _node_paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _node_paths(item, (*at, index))
    return paths


@st.composite
def junk_arrangements(draw: st.DrawFn) -> Any:
    """Anything a YAML file can hold at the top level, or a valid arrangement with any one of
    its parts (itself included) replaced by such a value."""
    junk = json_values(YAML_SCALARS, YAML_KEYS, max_leaves=10)
    if draw(st.booleans()):
        return draw(junk)
    data = as_written(draw(arrangement_data()))
    path = draw(st.sampled_from(_node_paths(data)))
    return replaced(data, path, draw(junk))


@examples(150)
@given(data=junk_arrangements())
def test_any_content_is_parsed_or_refused_with_the_loaders_error(data: Any) -> None:
    """Whatever a file parses to, the arrangement is either valid or refused with a
    CalendarFileError naming the origin: never a bare ValidationError, TypeError, KeyError."""
    try:
        arrangement = parse_arrangement(data, "calendar-junk.yaml")
    except CalendarFileError as exc:
        assert str(exc).startswith("calendar-junk.yaml: ")
        assert len(str(exc)) > len("calendar-junk.yaml: ")  # and says what is wrong
    else:
        assert isinstance(arrangement, YearArrangement)


VALID_ARRANGEMENT_TEXT = st.builds(
    lambda data, fmt: (
        dump_json(as_written(data)) if fmt == "json" else dump_yaml(as_written(data)),
        fmt,
    ),
    arrangement_data(),
    st.sampled_from(["yaml", "json"]),
)


@st.composite
def arrangement_file_contents(draw: st.DrawFn) -> tuple[bytes, str]:
    """A file's bytes and suffix: a valid arrangement edited a little, any text, any bytes."""
    text, fmt = draw(VALID_ARRANGEMENT_TEXT)
    choice = draw(st.sampled_from(["edited", "edited", "text", "bytes"]))
    if choice == "edited":
        return draw(edited(text)).encode(), fmt
    if choice == "text":
        return draw(st.text(max_size=60)).encode("utf-8", "surrogatepass"), fmt
    return draw(st.binary(max_size=60)), fmt


@examples(120)
@given(content=arrangement_file_contents())
def test_any_file_is_loaded_or_refused_naming_it_and_left_as_it_was(
    scratch: Path, content: tuple[bytes, str]
) -> None:
    """Any file (edited, arbitrary, not UTF-8) loads or is refused with a CalendarFileError
    naming the file; the file and its folder are left as they were."""
    raw, fmt = content
    folder = fresh(scratch)
    path = folder / f"calendar.{fmt}"
    path.write_bytes(raw)
    before = snapshot(folder)
    try:
        arrangement = load_arrangement_file(path)
    except CalendarFileError as exc:
        assert names_the_file(str(exc), path), str(exc)
    else:
        assert isinstance(arrangement, YearArrangement)
    assert snapshot(folder) == before


# Tags whose bad values the calendar loader must refuse cleanly (`!!bool x` was a bare KeyError
# and `!!timestamp x` an AttributeError before wiring/yaml_files.py).
CALENDAR_TAGS = [
    "bool",
    "timestamp",
    "int",
    "float",
    "str",
    "null",
    "binary",
    "set",
    "omap",
    "seq",
    "map",
    "python/name:os.system",
    "x",
]


@examples(60)
@given(
    tag=st.sampled_from(CALENDAR_TAGS),
    value=st.sampled_from(["x", "2027", "-1", "[]", "{a: 1}", "'", "===", "2027-02-30"]),
)
def test_tagged_values_are_loaded_or_refused_naming_the_file(
    scratch: Path, tag: str, value: str
) -> None:
    """A YAML tag on any value (known, unknown, unsafe) loads or is refused naming the file."""
    path = fresh(scratch) / "calendar.yaml"
    text = f"year: !!{tag} {value}\nsource: s\nholidays: []\nmakeup_workdays: []\n"
    path.write_text(text, encoding="utf-8")
    try:
        load_arrangement_file(path)
    except CalendarFileError as exc:
        assert names_the_file(str(exc), path), str(exc)


# --- policy files: valid ones load and round-trip --------------------------------------------

PERIOD_PATHS = [
    ("limits", "filing_decision"),
    ("limits", "handling"),
    ("safeguards", "statement_and_defence"),
    ("safeguards", "payment"),
    ("safeguards", "service"),
    ("referrals", "criminal_approval"),
    ("referrals", "acknowledgement", "police"),
    ("categories", "prohibited_information", "rectification"),
]
VERSIONS = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)
YUAN = st.integers(min_value=0, max_value=10**12)


@st.composite
def policy_data(
    draw: st.DrawFn, version: str | None = None, effective: date | None = None
) -> dict[str, Any]:
    """The default policy with a new version, date and description, and periods, amounts and
    rules varied within what is valid."""
    data: dict[str, Any] = copy.deepcopy(DEFAULT_DATA)
    data["version"] = version if version is not None else draw(VERSIONS)
    data["effective_from"] = effective or draw(st.dates(date(2000, 1, 1), date(2100, 12, 31)))
    data["description"] = draw(storable_text(max_size=60))
    for path in draw(st.lists(st.sampled_from(PERIOD_PATHS), max_size=4, unique=True)):
        period = {
            "days": draw(st.integers(min_value=1, max_value=3650)),
            "kind": draw(st.sampled_from(["working", "calendar"])),
        }
        if draw(st.booleans()):
            period["article"] = draw(words(60))
        data = replaced(data, path, period)
    low, high = sorted([draw(YUAN), draw(YUAN)])
    rung = ("categories", "data_security", "ladder", 1)
    data = replaced(data, rung, {**get_at(data, rung), "min_yuan": low, "max_yuan": f"{high}.50"})
    data["reminders"] = {
        "days_before_deadline": draw(st.lists(st.integers(min_value=1, max_value=60), max_size=4))
    }
    data["leniency"] = {**data["leniency"], "enabled": draw(st.booleans())}
    data["repeat_offender"] = {
        "lookback_days": draw(st.integers(min_value=1, max_value=3650)),
        "rung_offset": draw(st.integers(min_value=0, max_value=5)),
    }
    return data


def write_policy(folder: Path, data: Any, fmt: str, stem: str = "policy") -> Path:
    path = folder / f"{stem}.{fmt}"
    path.write_text(dump_json(data) if fmt == "json" else dump_yaml(data), encoding="utf-8")
    return path


POLICY_FORMATS = st.sampled_from(["yaml", "yml", "json"])


@examples(30)
@given(data=policy_data(), fmt=POLICY_FORMATS)
def test_valid_policy_files_load_and_round_trip(
    scratch: Path, data: dict[str, Any], fmt: str
) -> None:
    """A valid policy written as YAML or JSON loads to the model it was made from; the loaded
    policy dumped to a file (either format) loads to the same again."""
    expected = Policy.model_validate(data)
    folder = fresh(scratch)
    assert load_policy_file(write_policy(folder, data, fmt)) == expected
    dumped = expected.model_dump(mode="json")
    assert load_policy_file(write_policy(folder, dumped, "json", "again")) == expected
    assert load_policy_file(write_policy(folder, dumped, "yaml", "again")) == expected


@st.composite
def policy_folders(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Two to four valid versions, each with its own version and effective date."""
    versions = draw(st.lists(VERSIONS, min_size=2, max_size=4, unique=True))
    days = draw(
        st.lists(
            st.dates(date(2000, 1, 1), date(2100, 12, 31)),
            min_size=len(versions),
            max_size=len(versions),
            unique=True,
        )
    )
    return [draw(policy_data(v, d)) for v, d in zip(versions, days, strict=True)]


@examples(15)
@given(
    versions=policy_folders(),
    on=st.dates(date(1999, 1, 1), date(2101, 12, 31)),
    broken=st.none() | st.integers(min_value=0, max_value=3),
)
def test_a_folder_loads_whole_or_not_at_all(
    scratch: Path, versions: list[dict[str, Any]], on: date, broken: int | None
) -> None:
    """A folder of valid versions loads them all, in the order they take effect, and the one in
    force on a day is the latest to take effect by then. With one file broken, the folder is
    refused naming that file (every line naming a file of the folder); nothing is loaded, and
    no file is changed."""
    folder = fresh(scratch)
    for i, data in enumerate(versions):
        bad = broken is not None and i == broken % len(versions)
        content = {**data, "limits": "broken"} if bad else data
        write_policy(folder, content, ["yaml", "json"][i % 2], f"p{i}")
    before = snapshot(folder)
    ordered = sorted(versions, key=lambda d: d["effective_from"])
    if broken is not None:
        i = broken % len(versions)
        bad_name = f"p{i}.{['yaml', 'json'][i % 2]}"
        with pytest.raises(PolicyFileError) as refused:
            load_policies(folder)
        assert refused.value.problems == [
            f"{bad_name}: limits: Input should be a valid dictionary or instance of Limits"
        ]
    else:
        policies = load_policies(folder)
        assert policies.versions == [d["version"] for d in ordered]
        in_force = [d for d in ordered if d["effective_from"] <= on]
        if in_force:
            assert policies.active(on).version == in_force[-1]["version"]
        else:
            with pytest.raises(PolicyNotFound, match=f"no policy in force on {on}"):
                policies.active(on)
    assert snapshot(folder) == before


# --- policy files: one change, refused naming the field --------------------------------------

SIMPLE_KEYS = st.from_regex(r"[a-z_]{1,8}", fullmatch=True)
POLICY_JUNK = json_values(
    st.none() | st.booleans() | st.integers() | st.floats() | storable_text(max_size=12),
    SIMPLE_KEYS,
    max_leaves=6,
)
DEFAULT_PATHS = [p for p in _node_paths(DEFAULT_DATA) if p]
FREE_MAPPINGS = {("categories",), ("referrals", "acknowledgement")}  # names → models


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(map(str, path))


def _problem_field(line: str, name: str) -> str:
    assert line.startswith(f"{name}: "), line
    return line[len(name) + 2 :].split(": ", 1)[0]


def _on_lineage(field: str, changed: str) -> bool:
    """Whether an error at `field` concerns the change at `changed`: the same node, one that
    holds it (a cross-field rule), or one inside it."""
    if field == "(top level)":
        return True
    return field == changed or changed.startswith(field + ".") or field.startswith(changed + ".")


@examples(120)
@given(
    path=st.sampled_from(DEFAULT_PATHS),
    change=st.sampled_from(["junk", "delete", "unknown-key"]),
    junk=POLICY_JUNK,
    key=SIMPLE_KEYS.map(lambda k: f"x_{k}"),
    fmt=st.sampled_from(["yaml", "json"]),
)
def test_a_changed_policy_is_loaded_or_refused_naming_that_field(
    scratch: Path, path: tuple[Any, ...], change: str, junk: Any, key: str, fmt: str
) -> None:
    """The default policy changed at any one place (a value replaced by junk, a key deleted, an
    unknown key added) loads, or is refused with a PolicyFileError whose every line names the
    file and a field on the changed one's lineage (it, what holds it, or what is inside it)."""
    node = get_at(DEFAULT_DATA, path)
    parent = get_at(DEFAULT_DATA, path[:-1])
    changed = _dotted(path)
    expected_line = None
    if change == "delete" and isinstance(parent, dict):
        data = removed(DEFAULT_DATA, path)
    elif change == "unknown-key" and isinstance(node, dict):
        data = replaced(DEFAULT_DATA, path, {**node, key: junk})
        changed = _dotted((*path, key))
        if path not in FREE_MAPPINGS:  # a new category or authority is an entry, not a field
            expected_line = f"{changed}: Extra inputs are not permitted"
    else:
        data = replaced(DEFAULT_DATA, path, junk)
    folder = fresh(scratch)
    file = write_policy(folder, data, fmt)
    before = snapshot(folder)
    try:
        policy = load_policy_file(file)
    except PolicyFileError as exc:
        problems = exc.problems
        assert problems
        for line in problems:
            assert _on_lineage(_problem_field(line, file.name), changed), (changed, line)
        if expected_line is not None:
            assert f"{file.name}: {expected_line}" in problems
    else:
        assert expected_line is None
        assert policy == Policy.model_validate(data)
    assert snapshot(folder) == before


# --- policy files: anything else is loaded or refused, never a crash -------------------------

_DEEP = st.integers(min_value=300, max_value=1000)  # too deep for the parser from about 500
_HOSTILE = st.sampled_from(
    [
        "effective_from: 2026-02-30",
        "effective_from: 2026-13-01",
        "effective_from: 2026-01-01 25:00:00",
        "effective_from: !!timestamp soon",
        "description: !!bool maybe",
        "description: !!int many",
        "description: !!float much",
        "description: !!binary ###",
        "description: !!set [1]",
        "description: !!omap 1",
        "description: !!python/object:os.system {}",
        "description: !nonsense x",
        "version: 1" + "0" * 5000,
        "version: '2026.1'\nversion: '2026.2'",
        "\ufeffversion: x",
        "\tversion: x",
        "version: &a [*a]",
        "<<: *missing",
    ]
)
# Mostly the quick hostile lines; a deep one now and then (each takes a few tenths of a second).
HOSTILE_LINES = st.one_of(
    _HOSTILE,
    _HOSTILE,
    _HOSTILE,
    _DEEP.map(lambda n: "description: " + "[" * n + "]" * n),
    _DEEP.map(lambda n: "description: " + "{a: " * n + "1" + "}" * n),
)
HOSTILE_JSON = st.one_of(
    st.integers(min_value=200, max_value=100_000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=200, max_value=100_000).map(
        lambda n: '{"description": ' + '{"a": ' * n + "1" + "}" * n + "}"
    ),
    st.just('{"version": 1' + "0" * 5000 + "}"),
    st.just('{"version": "a", "version": "b"}'),
    st.just('\ufeff{"version": "x"}'),
    st.just('{"effective_from": NaN}'),
)


@st.composite
def policy_file_contents(draw: st.DrawFn) -> tuple[bytes, str]:
    """A policy file's bytes and suffix: the default edited, the default with a hostile line,
    hostile JSON, any text, any bytes."""
    choice = draw(st.sampled_from(["edited", "hostile", "hostile-json", "text", "bytes"]))
    if choice == "edited":
        return draw(edited(DEFAULT_TEXT)).encode(), "yaml"
    if choice == "hostile":
        lines = DEFAULT_TEXT.splitlines()
        at = draw(st.integers(min_value=0, max_value=len(lines)))
        return "\n".join([*lines[:at], draw(HOSTILE_LINES), *lines[at:]]).encode(), "yaml"
    if choice == "hostile-json":
        return draw(HOSTILE_JSON).encode(), "json"
    fmt = draw(st.sampled_from(["yaml", "json"]))
    if choice == "text":
        return draw(st.text(max_size=80)).encode("utf-8", "surrogatepass"), fmt
    return draw(st.binary(max_size=80)), fmt


@examples(100)
@given(content=policy_file_contents())
def test_any_policy_file_is_loaded_or_refused_naming_it(
    scratch: Path, content: tuple[bytes, str]
) -> None:
    """Any file (edited, with a hostile line: bad tags, impossible dates, huge numbers, nesting
    thousands deep; any text; bytes not UTF-8) loads or is refused with a PolicyFileError whose
    every line names the file; the file is left as it was."""
    raw, fmt = content
    folder = fresh(scratch)
    path = folder / f"policy.{fmt}"
    path.write_bytes(raw)
    before = snapshot(folder)
    try:
        policy = load_policy_file(path)
    except PolicyFileError as exc:
        assert exc.problems
        for line in exc.problems:
            assert line.startswith(f"{path.name}: "), line
    else:
        assert isinstance(policy, Policy)
    assert snapshot(folder) == before


def test_hostile_yaml_values_name_the_line() -> None:
    """The values SafeLoader used to fail on with a bare ValueError or KeyError (an impossible
    date, a bad tagged value) are refused naming the file and the line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        for line, problem in [
            ("effective_from: 2026-02-30", "'2026-02-30' is not a valid timestamp (day is out"),
            ("effective_from: !!timestamp soon", "'soon' is not a valid timestamp"),
            ("description: !!bool maybe", "'maybe' is not a valid bool"),
            ("description: !!int many", "'many' is not a valid int (invalid literal"),
        ]:
            path.write_text(f"version: x\n{line}\n", encoding="utf-8")
            with pytest.raises(PolicyFileError) as refused:
                load_policy_file(path)
            (only,) = refused.value.problems
            column = line.index(":") + 3  # where the value (or its tag) starts
            assert only.startswith(f"p.yaml: line 2, column {column}: YAML syntax error: {problem}")
        path.write_text("\x1f", encoding="utf-8")  # the reader's message has two lines
        with pytest.raises(PolicyFileError) as refused:
            load_policy_file(path)
        (only,) = refused.value.problems
        assert only.startswith("p.yaml: YAML syntax error: unacceptable character #x001f")
        # A key with a line break is quoted in the field path: still one line per problem.
        data = copy.deepcopy(DEFAULT_DATA)
        data["categories"]["two\nlines"] = {"title": "x"}
        path.write_text(dump_yaml(data), encoding="utf-8")
        with pytest.raises(PolicyFileError) as refused:
            load_policy_file(path)
        assert (
            refused.value.problems[0]
            == "p.yaml: categories.'two\\nlines'.legal_basis: Field required"
        )
        assert all(
            line.startswith("p.yaml: categories.'two\\nlines'.") for line in refused.value.problems
        )
        path.write_text("description: " + "[" * 3000 + "]" * 3000, encoding="utf-8")
        with pytest.raises(PolicyFileError, match=r"^p\.yaml: YAML error: nested too deeply$"):
            load_policy_file(path)
