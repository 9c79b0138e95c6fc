"""Error responses: one JSON shape for every 4xx and 5xx the API sends.

Every error body is ``{"error": code, "message": sentence, "problems": [...]}``
where ``problems`` (present for invalid events and invalid parameters) lists
each invalid field as ``{"index": event index, "path": field path, "message":
what to fix}``; ``index`` is there only for events. :class:`ErrorBody` is that
shape: every error response is built from it, and the OpenAPI document
describes it from the same model.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _absent_when_none(schema: JsonDict) -> None:
    # None is never sent: the field is left out, so its schema has no default.
    schema.pop("default", None)


class Problem(BaseModel):
    """One invalid field of a request, and what to fix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = Field(
        default=None,
        description="Position of the event in 'events', from 0; only for "
        "problems of events.",
        json_schema_extra=_absent_when_none,
    )
    path: str = Field(
        description="The field: inside the event for events, with dots between "
        "levels (empty for the event as a whole); the parameter name for "
        "query parameters ('query' for the query as a whole).",
        examples=["pod_id", "artifact_ids.1", "from"],
    )
    message: str = Field(description="What is wrong with it and what to send.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: str = Field(
        description="A fixed code a program can test.",
        examples=["invalid_events", "invalid_parameter", "kafka_unavailable"],
    )
    message: str = Field(description="One sentence for a person: what happened.")
    problems: list[Problem] | SkipJsonSchema[None] = Field(
        default=None,
        description="Every invalid field, when the request had some.",
        json_schema_extra=_absent_when_none,
    )

    def as_response(
        self, status: int, *, headers: dict[str, str] | None = None
    ) -> web.Response:
        """This body as a JSON response with ``status``."""
        return web.Response(
            text=self.model_dump_json(exclude_none=True),
            status=status,
            headers=headers,
            content_type="application/json",
        )


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    problems: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON error response; ``problems`` take the shape of :class:`Problem`."""
    body = ErrorBody.model_validate(
        {"error": code, "message": message, "problems": problems}
    )
    return body.as_response(status, headers=headers)


class RequestError(Exception):
    """Raised by handlers to answer with an error response.

    Args:
        status: the HTTP status, 4xx or 503.
        code: a short machine-readable name, such as ``invalid_events``.
        message: one sentence that says what is wrong and what to do.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        problems: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.response = error_response(
            status, code, message, problems=problems, headers=headers
        )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Turn every failure into the JSON error shape; never leak a traceback."""
    try:
        return await handler(request)
    except RequestError as error:
        return error.response
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(
            error.status,
            error.reason.lower().replace(" ", "_"),
            f"{error.reason}: {request.method} {request.path}",
            headers={k: v for k, v in error.headers.items() if k == "Allow"},
        )
    except Exception:
        logger.exception("Unhandled error in %s %s", request.method, request.path)
        return error_response(
            500, "internal_error", "The server failed; the error is in its log."
        )
