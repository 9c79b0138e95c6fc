"""``GET /api/analytics/pods`` and ``GET /api/analytics/artifacts``."""

from __future__ import annotations

import logging
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, Field

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.counts import Entity, Window, fetch_counts
from gateway_analytics.http.count_parameters import PARAMETERS_OF, parse_parameters
from gateway_analytics.http.problems import Handler, RequestError
from gateway_analytics.shared.errors import StorageError

logger = logging.getLogger(__name__)


class _Bucket(BaseModel):
    bucket_start: str = Field(
        description="RFC 3339 start of the bucket (inclusive), in UTC with Z, "
        "or with the offset of the zone asked for.",
        examples=["2024-05-20T00:00:00Z"],
    )
    bucket_end: str = Field(
        description="RFC 3339 end of the bucket (exclusive): where the next "
        "bucket starts.",
        examples=["2024-05-21T00:00:00Z"],
    )
    total: int = Field(ge=1, description="Events counted in the bucket.")


class PodCount(_Bucket):
    """Events that named one pod in one bucket."""

    pod_id: UUID


class ArtifactCount(_Bucket):
    """Events that named one artifact in one bucket."""

    artifact_id: UUID


class _CountsPage(BaseModel):
    window: Window
    page: int = Field(ge=1)
    page_size: int = Field(ge=1)
    has_more: bool = Field(description="Whether a next page has rows.")


class PodCountsPage(_CountsPage):
    """A page of pod counts, newest bucket first, then by pod id."""

    data: list[PodCount]


class ArtifactCountsPage(_CountsPage):
    """A page of artifact counts, newest bucket first, then by artifact id."""

    data: list[ArtifactCount]


RESPONSE_OF: dict[Entity, type[_CountsPage]] = {
    Entity.POD: PodCountsPage,
    Entity.ARTIFACT: ArtifactCountsPage,
}


def counts_handler(
    *, clickhouse: ClickHouse, entity: Entity, retry_after_s: int
) -> Handler:
    """The request handler for the counts of one kind of entity."""
    parameters_model, response_model = PARAMETERS_OF[entity], RESPONSE_OF[entity]

    async def get_counts(request: web.Request) -> web.Response:
        parameters = parse_parameters(parameters_model, request.query)
        page = parameters.as_page()
        try:
            rows = await fetch_counts(
                clickhouse,
                parameters.count_query(entity),
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
        body = response_model.model_validate(
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
                "window": parameters.window.value,
                "page": page.number,
                "page_size": page.size,
                "has_more": has_more,
            }
        )
        return web.Response(
            text=body.model_dump_json(), content_type="application/json"
        )

    return get_counts
