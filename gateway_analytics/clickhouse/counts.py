"""Windowed event counts per pod or per artifact, as SQL over ``analytics_events``.

Every value a client chooses reaches ClickHouse as a bound parameter; the
only text placed into SQL comes from the closed enums below.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway_analytics.clickhouse.client import ClickHouse


class Window(StrEnum):
    """Width of a count bucket."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"

    @property
    def interval(self) -> str:
        """The window as a ClickHouse interval literal."""
        return f"INTERVAL 1 {self.name}"


class Entity(StrEnum):
    """What the counts are grouped by; the value is the id's name in responses."""

    POD = "pod_id"
    ARTIFACT = "artifact_id"


# An event names a pod through pod_id, and artifacts through artifact_id or
# the entries of artifact_ids; each named entity is counted once per event.
_ENTITY_SOURCE = {
    Entity.POD: "WHERE pod_id IS NOT NULL",
    Entity.ARTIFACT: (
        "ARRAY JOIN arrayDistinct(if(artifact_id IS NULL, artifact_ids, "
        "arrayPushFront(artifact_ids, assumeNotNull(artifact_id)))) AS artifact"
    ),
}
_ENTITY_VALUE = {
    Entity.POD: "assumeNotNull(pod_id)",
    Entity.ARTIFACT: "artifact",
}
_TIME_FORMAT = "'%Y-%m-%dT%H:%i:%SZ'"


@dataclass(frozen=True)
class CountRow:
    """Events seen by one entity in one bucket."""

    entity_id: str
    bucket_start: str
    bucket_end: str
    total: int


def count_sql(entity: Entity, window: Window) -> str:
    """The count query for one entity and window.

    Its parameters are ``limit`` and ``offset``. Ids are grouped and sorted as
    text, because ClickHouse orders UUID values differently from their text.
    """
    bucket = f"toDateTime(toStartOfInterval(occurred_at, {window.interval}), 'UTC')"
    return f"""
SELECT
    toString({_ENTITY_VALUE[entity]}) AS entity_id,
    {bucket} AS bucket_start,
    formatDateTime(bucket_start, {_TIME_FORMAT}, 'UTC') AS bucket_start_text,
    formatDateTime(bucket_start + {window.interval}, {_TIME_FORMAT}, 'UTC')
        AS bucket_end_text,
    count() AS total
FROM analytics_events
{_ENTITY_SOURCE[entity]}
GROUP BY entity_id, bucket_start
ORDER BY bucket_start DESC, entity_id ASC
LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}
"""


async def fetch_counts(
    clickhouse: ClickHouse,
    *,
    entity: Entity,
    window: Window,
    limit: int,
    offset: int,
) -> list[CountRow]:
    """Up to ``limit`` count rows after skipping ``offset``, newest bucket first."""
    rows = await clickhouse.query(
        count_sql(entity, window), {"limit": limit, "offset": offset}
    )
    return [
        CountRow(entity_id=row[0], bucket_start=row[2], bucket_end=row[3], total=row[4])
        for row in rows
    ]
