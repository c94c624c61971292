"""Properties of the models every request and command goes through (domain/models.py `Model`,
`CaseCommand`, the commands of domain/procedure.py, the money type of domain/commands.py).

- Text: a NUL anywhere in any field is refused naming that field, and in free text with the NUL
  message; any other text round-trips through model_dump/model_validate and JSON, trimmed of
  surrounding whitespace and nothing else.
- Dates: a command's moment is accepted exactly when its year lies in 2000-2100, and refused
  naming the field and the year otherwise; a moment without an offset is refused.
- Money: amounts in ASCII digits (at most 2 decimals, above zero) are accepted and round-trip;
  the same amount with any digit full-width (or from another script) is refused.

Every model is checked from a valid example (each command's OpenAPI example, the event body),
so a field added later is covered without a change here.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ValidationError

from api.examples import CALENDAR_EXAMPLE
from api.routes.events import EXAMPLE as EVENT_EXAMPLE
from api.routes.events import EventIn
from api.schemas import OpenCaseRequest
from domain.calendar_models import YearArrangement
from domain.commands import DecidePenalty, RecordPayment, ResponsiblePerson
from domain.models import (
    EARLIEST_YEAR,
    LATEST_YEAR,
    NUL_REFUSED,
    CaseCommand,
)
from domain.procedure import COMMANDS
from tests.strategies import (
    FOREIGN_DIGITS,
    FULL_WIDTH_DIGITS,
    amount_texts,
    aware_moments,
    examples,
    get_at,
    replaced,
    string_paths,
    trimmed_from,
    with_nul,
    words,
)


def _open_case_example() -> dict[str, Any]:
    extra: Any = OpenCaseRequest.model_config.get("json_schema_extra") or {}
    example: dict[str, Any] = extra["examples"][0]
    return example


# Every body the API takes, each with a valid example: (name, model, example).
BODIES: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
    *[(c.name, c.http_body or c.body, c.example) for c in COMMANDS],
    ("event", EventIn, EVENT_EXAMPLE),
    ("open_case", OpenCaseRequest, _open_case_example()),
    ("calendar", YearArrangement, CALENDAR_EXAMPLE),
]
# (name, model, example, path): every string in every example.
TEXT_FIELDS = [
    (name, model, example, path)
    for name, model, example in BODIES
    for path in string_paths(example)
]


def _id(path: tuple[Any, ...]) -> str:
    return ".".join(map(str, path))


def _accepts(model: type[BaseModel], data: Any) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


def _is_free_text(model: type[BaseModel], example: dict[str, Any], path: tuple[Any, ...]) -> bool:
    """A field that takes any words (not an enum, a pattern, a date or an amount)."""
    return _accepts(model, replaced(example, path, "Plain words here"))


FREE_TEXT = [field for field in TEXT_FIELDS if _is_free_text(*field[1:])]


def test_the_tables_cover_every_body_and_its_free_text() -> None:
    """Sanity of the tables the properties run on: every example is valid as given, and free
    text was found in every kind of body (commands, the event, the case, the calendar)."""
    for name, model, example in BODIES:
        assert _accepts(model, example), name
    assert len(BODIES) == len(COMMANDS) + 3
    found = {name for name, *_ in FREE_TEXT}
    assert {"event", "open_case", "calendar", "decide_filing", "notify_penalty"} <= found
    assert ("event", ("subject", "name")) in {(n, p) for n, _, _, p in FREE_TEXT}


# --- text: NUL is refused everywhere ---------------------------------------------------------


def _errors_at(exc: ValidationError, path: tuple[Any, ...]) -> list[Any]:
    """The errors whose location is `path` or leads to it (a list's or a dict's own check)."""
    return [e for e in exc.errors() if tuple(e["loc"]) == path[: len(e["loc"])] and e["loc"]]


@pytest.mark.parametrize(
    ("model", "example", "path"),
    [pytest.param(m, e, p, id=f"{n}:{_id(p)}") for n, m, e, p in TEXT_FIELDS],
)
@examples(8)
@given(position=st.integers(min_value=0, max_value=200))
def test_a_nul_anywhere_is_refused_naming_its_field(
    model: type[BaseModel], example: dict[str, Any], path: tuple[Any, ...], position: int
) -> None:
    """Any string of any body with a NUL inserted anywhere is refused, and an error names the
    field (or the list or mapping holding it); in free text, with the NUL message."""
    hostile = replaced(example, path, with_nul(get_at(example, path), position))
    with pytest.raises(ValidationError) as refused:
        model.model_validate(hostile)
    named = _errors_at(refused.value, path)
    assert named, refused.value.errors()
    if _is_free_text(model, example, path):
        assert any(NUL_REFUSED in e["msg"] for e in named), named
    # JSON carries it as \u0000: refused the same way.
    with pytest.raises(ValidationError):
        model.model_validate_json(json.dumps(hostile))


# --- text: everything else round-trips -------------------------------------------------------


def _dump_and_back(model: type[BaseModel], value: BaseModel) -> None:
    assert model.model_validate(value.model_dump(by_alias=True)) == value
    assert model.model_validate_json(value.model_dump_json(by_alias=True)) == value


@pytest.mark.parametrize(
    ("model", "example", "path"),
    [pytest.param(m, e, p, id=f"{n}:{_id(p)}") for n, m, e, p in FREE_TEXT],
)
@examples(10)
@given(text=words(60))
def test_free_text_round_trips(
    model: type[BaseModel], example: dict[str, Any], path: tuple[Any, ...], text: str
) -> None:
    """Any text without NUL (any script, emoji, controls, inner whitespace) is kept as given,
    less surrounding whitespace; it round-trips through model_dump and JSON unchanged."""
    value = model.model_validate(replaced(example, path, text))
    stored = get_at(value.model_dump(by_alias=True), path)
    assert isinstance(stored, str)
    assert trimmed_from(text, stored), (text, stored)
    assert stored.strip() == text.strip()
    _dump_and_back(model, value)
    # Trimming is idempotent: the stored text validates to itself.
    assert (
        get_at(
            model.model_validate(replaced(example, path, stored)).model_dump(by_alias=True), path
        )
        == stored
    )


@examples(40)
@given(text=words(40), path=st.sampled_from([p for n, _, _, p in FREE_TEXT if n == "event"]))
def test_whitespace_only_text_is_refused_where_text_is_required(
    text: str, path: tuple[Any, ...]
) -> None:
    """Whitespace around words is trimmed; whitespace alone in a required text field is
    refused, naming the field (payload text is kept as sent, untrimmed)."""
    blank = " \t\u3000\n"
    padded = EventIn.model_validate(replaced(EVENT_EXAMPLE, path, blank + text + blank))
    plain = EventIn.model_validate(replaced(EVENT_EXAMPLE, path, text))
    if path[0] == "payload":
        assert get_at(padded.model_dump(), path) == blank + text + blank
        return
    assert padded == plain
    with pytest.raises(ValidationError) as refused:
        EventIn.model_validate(replaced(EVENT_EXAMPLE, path, blank))
    assert _errors_at(refused.value, path)


@examples(30)
@given(
    text=words(20),
    surrogate=st.characters(categories=["Cs"]),
    position=st.integers(min_value=0, max_value=20),
)
def test_lone_surrogates_are_refused_as_validation_errors(
    text: str, surrogate: str, position: int
) -> None:
    """Text no UTF-8 can carry (a lone surrogate, as Python's json.loads makes of "\\ud800") is
    refused like any invalid value, never by an encoding error further on."""
    name = text[:position] + surrogate + text[position:]
    hostile = replaced(EVENT_EXAMPLE, ("subject", "name"), name)
    with pytest.raises(ValidationError) as refused:
        EventIn.model_validate(hostile)
    assert [tuple(e["loc"]) for e in refused.value.errors()] == [("subject", "name")]


# --- dates -----------------------------------------------------------------------------------


def _is_moment(annotation: Any) -> bool:
    """A datetime field's annotation (also inside `X | None`)."""
    if annotation in (datetime, AwareDatetime):
        return True
    return any(_is_moment(arg) for arg in get_args(annotation))


def _moment_fields() -> list[tuple[str, type[BaseModel], dict[str, Any], str]]:
    fields = []
    for name, model, example in BODIES:
        for field, info in model.model_fields.items():
            if field in example and _is_moment(info.annotation):
                fields.append((name, model, example, field))
    return fields


MOMENTS = _moment_fields()


def _all_subclasses(cls: type[Any]) -> set[type[Any]]:
    found: set[type[Any]] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def test_every_command_moment_is_covered() -> None:
    """Every command model with a moment in it is one the date property runs on."""
    covered = {model for _, model, _, _ in MOMENTS}
    with_moments = {
        cls
        for cls in _all_subclasses(CaseCommand)
        if any("datetime" in str(info.annotation) for info in cls.model_fields.values())
    }
    uncovered = {
        cls for cls in with_moments if not any(issubclass(model, cls) for model in covered)
    }
    assert uncovered == set()
    assert len(MOMENTS) >= 6


@pytest.mark.parametrize(
    ("model", "example", "field"),
    [pytest.param(m, e, f, id=f"{n}.{f}") for n, m, e, f in MOMENTS],
)
@examples(60)
@given(moment=aware_moments(), written=st.booleans())
def test_moments_are_accepted_exactly_within_the_years_a_case_runs(
    model: type[BaseModel], example: dict[str, Any], field: str, moment: datetime, written: bool
) -> None:
    """A moment (given as a datetime, or written ISO 8601 as JSON carries it) is accepted iff its
    year is 2000-2100; outside, exactly that field is refused with a message naming the year.
    An accepted one round-trips through JSON to the same instant."""
    data = {**example, field: moment.isoformat() if written else moment}
    if EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        value = model.model_validate(data)
        assert getattr(value, field) == moment
        assert getattr(value, field).utcoffset() == moment.utcoffset()
        _dump_and_back(model, value)
    else:
        with pytest.raises(ValidationError) as refused:
            model.model_validate(data)
        (error,) = refused.value.errors()
        assert error["loc"] == (field,)
        assert f"year {moment.year} is outside {EARLIEST_YEAR}-{LATEST_YEAR}" in error["msg"]


@pytest.mark.parametrize(
    ("model", "example", "field"),
    [pytest.param(m, e, f, id=f"{n}.{f}") for n, m, e, f in MOMENTS],
)
@examples(15)
@given(moment=aware_moments(EARLIEST_YEAR, LATEST_YEAR))
def test_moments_without_an_offset_are_refused(
    model: type[BaseModel], example: dict[str, Any], field: str, moment: datetime
) -> None:
    """A moment without a UTC offset (whose instant is unknown) is refused, naming the field."""
    naive = moment.replace(tzinfo=None)
    for given_as in (naive, naive.isoformat()):
        with pytest.raises(ValidationError) as refused:
            model.model_validate({**example, field: given_as})
        assert [e["loc"] for e in refused.value.errors()] == [(field,)]


# --- money -----------------------------------------------------------------------------------

PAYMENT = next(c.example for c in COMMANDS if c.body is RecordPayment)
PENALTY = next(c.example for c in COMMANDS if c.body is DecidePenalty)
PERSON = {"name": "Zhang San", "role": "editor-in-chief", "measure": "fine"}
# (model, example, field) of every Money field.
MONEY_FIELDS: list[tuple[type[BaseModel], dict[str, Any], str]] = [
    (RecordPayment, PAYMENT, "amount_yuan"),
    (DecidePenalty, PENALTY, "fine_yuan"),
    (DecidePenalty, PENALTY, "prior_year_turnover_yuan"),
    (ResponsiblePerson, PERSON, "fine_yuan"),
]
MONEY = st.sampled_from(MONEY_FIELDS)


@examples(100)
@given(field=MONEY, amount=amount_texts(), form=st.sampled_from(["text", "padded", "number"]))
def test_amounts_in_ascii_digits_are_accepted_and_round_trip(
    field: tuple[type[BaseModel], dict[str, Any], str], amount: str, form: str
) -> None:
    """An amount above zero with at most 14 whole digits and 2 decimals, written in ASCII digits
    (text, text with spaces around it, or a number), is that amount exactly; dumped and read back
    (Python or JSON) it is the same, and JSON writes it as the same ASCII text."""
    model, example, name = field
    given_as: object = {
        "text": amount,
        "padded": f" {amount}\u3000",
        "number": Decimal(amount) if "." in amount else int(amount),
    }[form]
    value = model.model_validate({**example, name: given_as})
    assert getattr(value, name) == Decimal(amount)
    assert str(getattr(value, name)) == amount
    _dump_and_back(model, value)
    assert json.loads(value.model_dump_json())[name] == amount


@examples(100)
@given(field=MONEY, amount=amount_texts(), data=st.data())
def test_amounts_with_non_ascii_digits_are_refused(
    field: tuple[type[BaseModel], dict[str, Any], str], amount: str, data: st.DataObject
) -> None:
    """The same amount with any of its digits full-width (what an IME types), or a digit of
    another script, is refused naming the field: Python's Decimal() would read it as a number."""
    model, example, name = field
    positions = [i for i, char in enumerate(amount) if char.isdigit()]
    chosen = data.draw(st.sets(st.sampled_from(positions), min_size=1), label="positions")
    foreign = data.draw(st.booleans(), label="other script")
    chars = list(amount)
    for i in chosen:
        digit = chars[i]
        chars[i] = (
            data.draw(st.sampled_from(FOREIGN_DIGITS[digit]))
            if foreign
            else FULL_WIDTH_DIGITS[digit]
        )
    hostile = "".join(chars)
    assert Decimal(hostile) == Decimal(amount)  # the reading the model must never make
    with pytest.raises(ValidationError) as refused:
        model.model_validate({**example, name: hostile})
    (error,) = refused.value.errors()
    assert error["loc"] == (name,)
    assert "ASCII digits" in error["msg"]


@examples(100)
@given(field=MONEY, amount=amount_texts(), data=st.data())
def test_amounts_in_any_other_form_are_refused(
    field: tuple[type[BaseModel], dict[str, Any], str], amount: str, data: st.DataObject
) -> None:
    """Exponents, signs, separators, a bare decimal point, NaN and infinities, zero or less, a
    third decimal or a 15th whole digit: each refused, naming the field."""
    model, example, name = field
    whole, _, fraction = amount.partition(".")
    forms = [
        f"{whole}e2",
        f"{amount}E+0",
        f"+{amount}",
        f"{whole}.",
        f".{whole}",
        f"{int(whole):,}.5" if int(whole) >= 1000 else f"{whole}_0",
        f"{whole}.{fraction}1" if len(fraction) == 2 else f"{whole}.001",
        f"-{amount}",
        "0",
        "0.00",
        f"1{int(whole):014d}",
        f"{amount}\x00",
        "NaN",
        "Infinity",
        "-Infinity",
        "sNaN",
        "",
    ]
    hostile = data.draw(st.sampled_from(forms), label="form")
    with pytest.raises(ValidationError) as refused:
        model.model_validate({**example, name: hostile})
    assert [e["loc"] for e in refused.value.errors()] == [(name,)]
