"""Windowed event counts per pod or per artifact, summed from the rollups.

Every value a client chooses reaches ClickHouse as a bound parameter; the
only text placed into SQL comes from the closed enums and rollup names below.

Rows are ordered newest bucket first. Without an entity filter, the newest
buckets of a long history are found by asking about the newest bucket first
and widening the slice of time only while it holds fewer rows than the page
needs, so page one does not sum a year of rollup rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.rollups import ARTIFACT_COUNTS, POD_COUNTS, Rollup

# Each widening multiplies the slice of time asked about.
_WIDENING = 8


class Window(StrEnum):
    """Width of a count bucket."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"

    @property
    def nominal(self) -> timedelta:
        """The usual length; a day across a clock change is an hour off."""
        return _NOMINAL[self]

    def start_sql(self, instant: str) -> str:
        """SQL for the start of the bucket holding ``instant``, in zone ``tz``."""
        start = f"toStartOfInterval({instant}, INTERVAL 1 {self.name}, {{tz:String}})"
        # Weeks come back as a Date; their bucket starts at its local midnight.
        return f"toDateTime({start}, {{tz:String}})" if self is Window.WEEK else start

    def next_start_sql(self, start: str) -> str:
        """SQL for the start of the bucket after the one starting at ``start``.

        Half a window past a start always lies in the next bucket, however
        long a clock change makes either of them.
        """
        past = _NEXT_BUCKET_PROBE[self]
        return self.start_sql(f"({start} + INTERVAL {past})")


_NOMINAL = {
    Window.HOUR: timedelta(hours=1),
    Window.DAY: timedelta(days=1),
    Window.WEEK: timedelta(weeks=1),
}
_NEXT_BUCKET_PROBE = {
    Window.HOUR: "90 MINUTE",
    Window.DAY: "36 HOUR",
    Window.WEEK: "180 HOUR",
}


class Entity(StrEnum):
    """What the counts are grouped by; the value is the id's name in responses."""

    POD = "pod_id"
    ARTIFACT = "artifact_id"

    @property
    def rollup(self) -> Rollup:
        """The rollup table counting this kind of entity."""
        return POD_COUNTS if self is Entity.POD else ARTIFACT_COUNTS


@dataclass(frozen=True)
class CountQuery:
    """Which counts to return.

    ``since`` and ``until`` bound ``occurred_at`` and must fall on quarter
    hours, the rollups' resolution. ``time_zone`` aligns the buckets; None
    means UTC, written with ``Z``.
    """

    entity: Entity
    window: Window = Window.DAY
    time_zone: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    entity_ids: Sequence[UUID] = field(default_factory=tuple)
    types: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class CountRow:
    """Events seen by one entity in one bucket."""

    entity_id: str
    bucket_start: str
    bucket_end: str
    total: int


async def fetch_counts(
    clickhouse: ClickHouse, query: CountQuery, *, limit: int, offset: int
) -> list[CountRow]:
    """Up to ``limit`` count rows after skipping ``offset``, newest bucket first."""
    conditions, parameters = _filters(query)
    parameters |= {"tz": query.time_zone or "UTC", "limit": limit, "offset": offset}
    if query.entity_ids:
        # The rollup's entity projection reads just these entities' rows.
        rows = await clickhouse.query(count_sql(query, conditions), parameters)
        return _count_rows(rows, query.time_zone)
    bounds = await _bucket_bounds(
        clickhouse, query.entity.rollup, _time_filters(query), parameters
    )
    if bounds is None:
        return []
    oldest, newest = bounds
    slice_start = f"bucket >= {query.window.start_sql('{recent:DateTime}')}"
    span = timedelta(0)
    while newest - span > oldest:
        recent = (*conditions, slice_start)
        rows = await clickhouse.query(
            count_sql(query, recent), parameters | {"recent": newest - span}
        )
        # Every bucket inside the slice sorts before every bucket outside it,
        # so a full page from the slice is the page of the whole history.
        if len(rows) == limit:
            return _count_rows(rows, query.time_zone)
        span = span * _WIDENING if span else query.window.nominal
    rows = await clickhouse.query(count_sql(query, conditions), parameters)
    return _count_rows(rows, query.time_zone)


def count_sql(query: CountQuery, conditions: Sequence[str]) -> str:
    """The count query; its parameters are ``tz``, ``limit``, ``offset`` and
    those of ``conditions``.

    Ids are sorted as text, because ClickHouse orders UUID values differently
    from their text.
    """
    rollup, window = query.entity.rollup, query.window
    where = " AND ".join(conditions) or "1"
    return f"""
SELECT
    toString({rollup.entity_column}) AS entity_id,
    {window.start_sql("bucket")} AS bucket_start,
    toUnixTimestamp(bucket_start) AS start_seconds,
    toUnixTimestamp({window.next_start_sql("bucket_start")}) AS end_seconds,
    sum(total) AS events
FROM {rollup.table}
WHERE {where}
GROUP BY {rollup.entity_column}, bucket_start
ORDER BY bucket_start DESC, entity_id ASC
LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}
"""


def _time_filters(query: CountQuery) -> tuple[str, ...]:
    """The conditions of ``from`` and ``to``; their parameters come from
    :func:`_filters`."""
    conditions = []
    if query.since is not None:
        conditions.append("bucket >= {since:DateTime}")
    if query.until is not None:
        conditions.append("bucket < {until:DateTime}")
    return tuple(conditions)


def _filters(query: CountQuery) -> tuple[tuple[str, ...], dict[str, Any]]:
    conditions = list(_time_filters(query))
    parameters: dict[str, Any] = {}
    if query.since is not None:
        parameters["since"] = query.since
    if query.until is not None:
        parameters["until"] = query.until
    if query.entity_ids:
        conditions.append(
            f"{query.entity.rollup.entity_column} IN {{entity_ids:Array(UUID)}}"
        )
        parameters["entity_ids"] = list(query.entity_ids)
    if query.types:
        conditions.append("type IN {types:Array(String)}")
        parameters["types"] = list(query.types)
    return tuple(conditions), parameters


async def _bucket_bounds(
    clickhouse: ClickHouse,
    rollup: Rollup,
    conditions: Sequence[str],
    parameters: dict[str, Any],
) -> tuple[datetime, datetime] | None:
    """The oldest and newest quarter hour with counts, or None when there are none.

    Only time conditions belong here: ClickHouse then answers from each
    part's stored minimum and maximum instead of reading the rollup.
    """
    where = " AND ".join(conditions) or "1"
    rows = await clickhouse.query(
        f"SELECT count() > 0, toUnixTimestamp(min(bucket)), "
        f"toUnixTimestamp(max(bucket)) FROM {rollup.table} WHERE {where}",
        parameters,
    )
    found, oldest, newest = rows[0]
    if not found:
        return None
    return (
        datetime.fromtimestamp(oldest, UTC),
        datetime.fromtimestamp(newest, UTC),
    )


def _count_rows(rows: Sequence[Sequence[Any]], time_zone: str | None) -> list[CountRow]:
    return [
        CountRow(
            entity_id=row[0],
            bucket_start=format_instant(row[2], time_zone),
            bucket_end=format_instant(row[3], time_zone),
            total=int(row[4]),
        )
        for row in rows
    ]


def format_instant(seconds: int, time_zone: str | None) -> str:
    """RFC 3339 text of a Unix time: in UTC with ``Z``, or with the zone's offset."""
    if time_zone is None:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.fromtimestamp(seconds, ZoneInfo(time_zone)).isoformat()
