"""OpenAPI examples that no model carries itself (the commands' are their rows' `example` in
domain/procedure.py); tests check each one validates."""

from __future__ import annotations

from typing import Any

CALENDAR_EXAMPLE: dict[str, Any] = {
    "year": 2027,
    "source": "State Council notice on the 2027 public holidays",
    "holidays": [{"name": "Spring Festival", "from": "2027-02-06", "to": "2027-02-14"}],
    "makeup_workdays": [{"date": "2027-02-20", "for": "Spring Festival"}],
}


def body_example(example: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` that puts an example on the operation's JSON body."""
    return {"requestBody": {"content": {"application/json": {"example": example}}}}
