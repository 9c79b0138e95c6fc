"""Error responses: one JSON shape for every 4xx and 5xx the API sends.

Every error body is ``{"error": code, "message": sentence, "problems": [...]}``
where ``problems`` (present for invalid events) lists each invalid field as
``{"index": event index, "path": field path, "message": what to fix}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    problems: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON error response."""
    body: dict[str, Any] = {"error": code, "message": message}
    if problems is not None:
        body["problems"] = problems
    return web.json_response(body, status=status, headers=headers)


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
