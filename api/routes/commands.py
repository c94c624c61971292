"""Every command a case takes, as POST /cases/{case_id}/<path>: one route per row of the
procedure table (domain/procedure.py), nothing listed here.

Each route takes the row's body (its `http_body` where the HTTP body differs: a path parameter
such as `{referral_id}` then joins it into the update's input), sends the update named by the
row and answers the workflow's small `Receipt`; the whole state is at GET /cases/{case_id}. Its
access rule is the row's role on the case's office; its summary and example are the row's. A
refusal is 409 with the validator's reason; an unknown case 404; a bad body 422; a case that
does not answer 504.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from api import problems
from api.auth import AccessRoute, command_access
from api.case_calls import send_command
from api.deps import AppSettings, DbPool, TemporalClient
from api.examples import body_example
from domain.case import Receipt
from domain.models import CaseCommand, Model
from domain.procedure import COMMANDS, Command
from wiring.api_keys import ApiKey

router = APIRouter(
    prefix="/cases",
    tags=["commands"],
    route_class=AccessRoute,
    responses=problems.responses(404, 409, 413, 422, 504),
)

Endpoint = Callable[..., Awaitable[Receipt]]
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def _path_parameters(command: Command) -> list[inspect.Parameter]:
    """The row's path parameters, each typed and bounded as the update's input field is."""
    fields = command.body.model_fields
    return [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[fields[name].annotation, Path(), *fields[name].metadata],
        )
        for name in _PATH_PARAMETER.findall(command.path)
    ]


def _command_route(command: Command) -> Endpoint:
    http_body = command.http_body or command.body

    async def endpoint(
        case_id: str,
        body: Model,
        caller: ApiKey,
        client: TemporalClient,
        pool: DbPool,
        settings: AppSettings,
        **path: Any,
    ) -> Receipt:
        if command.http_body is None and isinstance(body, CaseCommand):
            cmd = body  # the HTTP body is the update's input
        else:
            cmd = command.body.model_validate({**body.model_dump(), **path})
        return await send_command(client, pool, settings, case_id, command.name, cmd, by=caller)

    keyword = inspect.Parameter.KEYWORD_ONLY
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("case_id", keyword, annotation=str),
            inspect.Parameter("body", keyword, annotation=http_body),
            inspect.Parameter(
                "caller", keyword, annotation=Annotated[ApiKey, Depends(command_access(command))]
            ),
            inspect.Parameter("client", keyword, annotation=TemporalClient),
            inspect.Parameter("pool", keyword, annotation=DbPool),
            inspect.Parameter("settings", keyword, annotation=AppSettings),
            *_path_parameters(command),
        ],
        return_annotation=Receipt,
    )
    endpoint.__name__ = command.name
    return endpoint


for _command in COMMANDS:
    router.add_api_route(
        f"/{{case_id}}/{_command.path}",
        _command_route(_command),
        methods=["POST"],
        response_model=Receipt,
        summary=_command.summary,
        openapi_extra=body_example(_command.example),
    )
