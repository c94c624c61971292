"""Properties of the event parser: the bodies of POST /events (`EventIn`) and POST
/events/batch (`EventBatch`, each item then parsed as an `EventIn`), api/routes/events.py.

- Valid generated events parse, keep what was sent, and round-trip (the inbox's `body()`, JSON).
- Anything else (JSON-ish junk of any shape, valid events with one field replaced by junk,
  arbitrary text or bytes as the raw body) is refused with a pydantic ValidationError, never
  another exception; the errors name the field at fault and become the 422 problem the batch
  answers per item.
- A NUL anywhere (in any text, any payload key or value at any depth) is refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from api.problems import validation_problem
from api.routes.events import EventBatch, EventIn
from domain.models import MAX_JSON_DEPTH, NUL_REFUSED
from tests.strategies import (
    JSON_SCALARS,
    event_bodies,
    examples,
    get_at,
    json_values,
    replaced,
    storable_text,
    string_paths,
    with_nul,
)

FIELDS = [
    "idempotency_key",
    "type",
    "source",
    "occurred_at",
    "payload",
    "subject",
    "violation_category",
    "legal_basis",
    "office",
    "severity",
]
TEXT_FIELDS = ("idempotency_key", "source", "violation_category", "legal_basis", "office")
KEYS = st.sampled_from([*FIELDS, "kind", "name", "identifiers", "domain", "events"]) | (
    storable_text(max_size=10)
)
JUNK = json_values(JSON_SCALARS, KEYS, max_leaves=15)


def refused_as_invalid(data: Any) -> ValidationError:
    """`EventIn` refuses `data`: the ValidationError, after checking it makes the batch's 422."""
    with pytest.raises(ValidationError) as refused:
        EventIn.model_validate(data)
    problem = validation_problem(refused.value.errors())
    document = problem.document()
    assert problem.status == 422 and document["status"] == 422
    assert document["errors"] and all(e["field"] and e["message"] for e in document["errors"])
    json.dumps(document)  # the batch answers it as JSON
    return refused.value


# --- valid events ----------------------------------------------------------------------------


@examples(100)
@given(body=event_bodies())
def test_valid_events_parse_and_round_trip(body: dict[str, Any]) -> None:
    """A valid body parses, from Python or from JSON text alike; the payload is kept exactly as
    sent; what the inbox stores (`body()`) and the JSON dump parse back to the same event."""
    event = EventIn.model_validate(body)
    assert EventIn.model_validate_json(json.dumps(body)) == event
    assert event.payload == body["payload"]
    assert event.subject.identifiers.model_dump(exclude_none=True).keys() == (
        body["subject"]["identifiers"].keys()
    )
    assert event.acting_key is None and "acting_key" not in event.body()
    assert EventIn.model_validate(event.body()) == event
    assert EventIn.model_validate_json(event.model_dump_json()) == event
    assert json.loads(json.dumps(event.body())) == event.body()


@examples(25)
@given(bodies=st.lists(event_bodies(), min_size=1, max_size=5))
def test_a_batch_of_valid_events_parses_item_by_item(bodies: list[dict[str, Any]]) -> None:
    """A batch keeps its items as sent, in order; each then parses as the event it is."""
    batch = EventBatch.model_validate({"events": bodies})
    assert batch.events == bodies
    assert [EventIn.model_validate(item) for item in batch.events] == [
        EventIn.model_validate(body) for body in bodies
    ]
    assert EventBatch.model_validate_json(json.dumps({"events": bodies})) == batch


# --- junk ------------------------------------------------------------------------------------


@examples(150)
@given(junk=JUNK)
def test_junk_is_refused_with_a_validation_error(junk: Any) -> None:
    """Any JSON-ish value (of any shape, with keys that look like the event's) is refused with a
    ValidationError the batch turns into its 422 answer, from Python or JSON text alike."""
    refused_as_invalid(junk)
    with pytest.raises(ValidationError):
        EventIn.model_validate_json(json.dumps(junk))


@examples(150)
@given(body=event_bodies(), field=st.sampled_from(FIELDS), junk=JUNK)
def test_one_field_of_junk_is_refused_naming_that_field(
    body: dict[str, Any], field: str, junk: Any
) -> None:
    """A valid event with one field replaced by junk is accepted only if the junk is a valid
    value for that field; otherwise refused with every error naming that field."""
    data = {**body, field: junk}
    try:
        event = EventIn.model_validate(data)
    except ValidationError as exc:
        assert {e["loc"][0] for e in exc.errors()} == {field}, exc.errors()
        refused_as_invalid(data)
    else:  # junk that happens to be a valid value: kept (text trimmed), and stable
        if field in TEXT_FIELDS:
            assert getattr(event, field) == junk.strip()
        elif field == "payload":
            assert event.payload == junk  # kept as sent: keys are not trimmed
        assert EventIn.model_validate(event.body()) == event


@examples(100)
@given(
    raw=st.text(max_size=80).map(str.encode)
    | st.binary(max_size=80)
    | JUNK.map(lambda v: json.dumps(v).encode())
)
def test_any_raw_body_is_refused_with_a_validation_error(raw: bytes) -> None:
    """Raw bytes as a body (any text, any bytes, not UTF-8, JSON of junk) are refused by the
    JSON parser or the model with a ValidationError, never another exception; as a batch, only
    an object of a non-empty list of objects under `events` gets past the batch's own check."""
    with pytest.raises(ValidationError):
        EventIn.model_validate_json(raw)
    try:
        batch = EventBatch.model_validate_json(raw)
    except ValidationError:
        return
    assert set(json.loads(raw)) == {"events"}
    for item in batch.events:
        refused_as_invalid(item)


@examples(100)
@given(junk=JUNK | st.dictionaries(KEYS, JUNK, max_size=3))
def test_batch_junk_is_refused_with_a_validation_error(junk: Any) -> None:
    """The batch body holds a non-empty list of objects under `events` and nothing else:
    anything else is refused with a ValidationError (and every item is parsed on its own)."""
    try:
        batch = EventBatch.model_validate(junk)
    except ValidationError as exc:
        assert validation_problem(exc.errors()).status == 422
    else:
        assert isinstance(junk, dict) and set(junk) == {"events"}
        assert 1 <= len(batch.events) <= 500
        for item in batch.events:
            refused_as_invalid(item)


# --- NUL anywhere ----------------------------------------------------------------------------


@examples(150)
@given(body=event_bodies(), data=st.data())
def test_a_nul_anywhere_is_refused(body: dict[str, Any], data: st.DataObject) -> None:
    """A NUL in any text of a valid event (a field, the subject, a payload value at any depth)
    is refused, naming that field; in text, with the NUL message."""
    path = data.draw(st.sampled_from(list(string_paths(body))), label="path")
    text = get_at(body, path)
    position = data.draw(st.integers(min_value=0, max_value=len(text)), label="position")
    hostile = replaced(body, path, with_nul(text, position))
    errors = refused_as_invalid(hostile).errors()
    named = [e for e in errors if tuple(e["loc"]) == path[: len(e["loc"])]]
    assert named, errors
    free_text = path[0] in ("payload", *TEXT_FIELDS) or path in (
        ("subject", "name"),
        ("subject", "identifiers", "account_id"),
    )
    if free_text:
        assert any(NUL_REFUSED in e["msg"] for e in named), named
    batch = EventBatch.model_validate({"events": [body, hostile]})  # refused item by item
    EventIn.model_validate(batch.events[0])
    refused_as_invalid(batch.events[1])


@examples(80)
@given(
    body=event_bodies(),
    key=storable_text(max_size=10),
    position=st.integers(min_value=0, max_value=10),
    depth=st.integers(min_value=0, max_value=MAX_JSON_DEPTH - 2),  # the payload, "deep"
)
def test_a_nul_in_a_payload_key_at_any_depth_is_refused(
    body: dict[str, Any], key: str, position: int, depth: int
) -> None:
    """A payload key holding a NUL, however deep in objects and lists (up to the depth a
    payload may have), is refused naming the payload; without the NUL it is accepted as sent."""
    clean: Any = {key: "value"}
    hostile: Any = {with_nul(key, position): "value"}
    for level in range(depth):
        clean, hostile = ([clean], [hostile]) if level % 2 else ({"k": clean}, {"k": hostile})
    accepted = EventIn.model_validate({**body, "payload": {"deep": clean}})
    assert accepted.payload == {"deep": clean}
    errors = refused_as_invalid({**body, "payload": {"deep": hostile}}).errors()
    assert [(e["loc"], NUL_REFUSED in e["msg"]) for e in errors] == [(("payload",), True)]


@examples(60)
@given(body=event_bodies(), field=st.sampled_from(FIELDS))
def test_a_nul_in_a_key_of_the_body_is_refused(body: dict[str, Any], field: str) -> None:
    """A top-level key that is a field's name with a NUL in it is an unknown field: refused."""
    data = {**body, field + "\x00": body.get(field, "x")}
    errors = refused_as_invalid(data).errors()
    assert any(e["type"] == "extra_forbidden" and e["loc"] == (field + "\x00",) for e in errors)
