"""``GET /api/analytics/pods`` and ``GET /api/analytics/artifacts``."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.counts import Entity, Window, fetch_counts
from gateway_analytics.http.pagination import parse_page
from gateway_analytics.http.problems import Handler, RequestError
from gateway_analytics.shared.errors import StorageError

logger = logging.getLogger(__name__)

_WINDOWS = ", ".join(window.value for window in Window)


def parse_window(query: Mapping[str, str]) -> Window:
    """The ``window`` parameter, ``day`` when absent.

    Raises:
        RequestError: 400 for a value that is not a window.
    """
    text = query.get("window", Window.DAY.value)
    try:
        return Window(text)
    except ValueError:
        raise RequestError(
            400,
            "invalid_parameter",
            f"window must be one of {_WINDOWS}, got {text!r}.",
        ) from None


def counts_handler(
    *, clickhouse: ClickHouse, entity: Entity, retry_after_s: int
) -> Handler:
    """The request handler for the counts of one kind of entity."""

    async def get_counts(request: web.Request) -> web.Response:
        window = parse_window(request.query)
        page = parse_page(request.query)
        try:
            rows = await fetch_counts(
                clickhouse,
                entity=entity,
                window=window,
                limit=page.limit,
                offset=page.offset,
            )
        except StorageError as error:
            logger.warning("Count query failed: %s", error)
            raise RequestError(
                503,
                "clickhouse_unavailable",
                f"The counts cannot be read right now; retry after {retry_after_s} s.",
                headers={"Retry-After": str(retry_after_s)},
            ) from error
        page_rows, has_more = page.split(rows)
        return web.json_response(
            {
                "data": [
                    {
                        entity.value: row.entity_id,
                        "bucket_start": row.bucket_start,
                        "bucket_end": row.bucket_end,
                        "total": row.total,
                    }
                    for row in page_rows
                ],
                "window": window.value,
                "page": page.number,
                "page_size": page.size,
                "has_more": has_more,
            }
        )

    return get_counts
