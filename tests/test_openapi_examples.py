"""Every request body in the OpenAPI schema has an example, and every example is valid."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from pydantic import BaseModel

from api.app import create_app
from api.examples import CALENDAR_EXAMPLE
from api.routes.campaigns import CampaignRequest
from api.routes.events import EventBatch, EventIn
from api.schemas import OpenCaseRequest
from domain.calendar_models import YearArrangement
from domain.procedure import COMMANDS, Command
from wiring.settings import Settings


def _examples(model: type[BaseModel]) -> list[Any]:
    extra: Any = model.model_config.get("json_schema_extra") or {}
    examples: list[Any] = extra["examples"]
    return examples


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()
    return schema


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    resolved: dict[str, Any] = schema
    for part in ref.removeprefix("#/").split("/"):
        resolved = resolved[part]
    return resolved


def test_every_body_has_an_example() -> None:
    schema = _schema()
    missing = []
    bodies = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            bodies += 1
            model = _resolve(schema, body.get("schema", {}))
            if not (body.get("example") or body.get("examples") or model.get("examples")):
                missing.append(f"{method.upper()} {path}")
    assert bodies >= 35
    assert missing == []


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_command_examples_are_valid_and_shown(command: Command) -> None:
    (command.http_body or command.body).model_validate(command.example)
    operation = _schema()["paths"][f"/cases/{{case_id}}/{command.path}"]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["example"] == command.example
    assert operation["summary"] == command.summary


@pytest.mark.parametrize(
    ("model", "example"),
    [
        (YearArrangement, CALENDAR_EXAMPLE),
        *[
            (model, example)
            for model in (OpenCaseRequest, EventIn, EventBatch, CampaignRequest)
            for example in _examples(model)
        ],
    ],
)
def test_model_examples_are_valid(model: type[BaseModel], example: dict[str, Any]) -> None:
    model.model_validate(example)
