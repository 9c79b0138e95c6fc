"""Every request once: a request id, one log line, and its metrics.

The request id comes from the client's ``X-Request-Id`` when that is a short
plain token, else it is made here; either way it is returned in the same
header, so a gateway can find its request in our logs.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from aiohttp import web

from gateway_analytics.http.problems import Handler
from gateway_analytics.shared.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@web.middleware
async def access_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Time, count and log the request; tag the response with its id."""
    started = time.perf_counter()
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
    response = await handler(request)
    response.headers[REQUEST_ID_HEADER] = request_id

    elapsed_s = time.perf_counter() - started
    route = _route(request)
    HTTP_REQUESTS.labels(route, str(response.status)).inc()
    HTTP_REQUEST_SECONDS.labels(route).observe(elapsed_s)
    logger.info(
        "%s %s %d %.1f ms request_id=%s",
        request.method,
        request.path,
        response.status,
        elapsed_s * 1000,
        request_id,
    )
    return response


def _route(request: web.Request) -> str:
    # The route's template, not the raw path, keeps the metric's label set
    # small whatever paths clients send.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
