"""Reading request bodies within a size limit, gzip included."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway_analytics.http.problems import RequestError

_CHUNK_BYTES = 64 * 1024


async def read_body(request: web.Request, *, max_body_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it passes the limit.

    aiohttp inflates ``Content-Encoding: gzip`` (and deflate) bodies while
    they stream in, so the limit applies to the decompressed size and a
    compressed bomb is stopped after ``max_body_bytes``, not after inflating.
    """
    declared = request.content_length
    if declared is not None and declared > max_body_bytes:
        raise _too_large(max_body_bytes)
    body = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK_BYTES):
        body += chunk
        if len(body) > max_body_bytes:
            raise _too_large(max_body_bytes)
    return bytes(body)


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``, or a 400 that says where it breaks."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(
            400,
            "malformed_json",
            f"The body is not UTF-8 text: byte {error.start} is invalid.",
        ) from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(
            400,
            "malformed_json",
            f"The body is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}.",
        ) from error
    except RecursionError as error:
        # Python's parser recurses once per level of nesting.
        raise RequestError(
            400,
            "malformed_json",
            "The body nests arrays or objects too deeply to be read; "
            "events are flat objects in one list.",
        ) from error


def _too_large(max_body_bytes: int) -> RequestError:
    return RequestError(
        413,
        "body_too_large",
        f"The body is larger than {max_body_bytes} bytes (after decompression); "
        "send the events in smaller batches.",
    )
