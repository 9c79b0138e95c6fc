"""Counts worked out without the rollups, to hold the count endpoints against.

Two references: a SQL query over the raw ``analytics_events`` rows, written
with other ClickHouse functions than the endpoints use, and a pure-Python
count that places buckets with :mod:`zoneinfo`, so the time-zone rules are
pinned independently of ClickHouse. Both follow the documented semantics: an
event counts for its pod, and once for each distinct artifact it names.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient, TestServer

from gateway_analytics.clickhouse.client import ClickHouse, connect
from gateway_analytics.clickhouse.counts import Entity, Window
from gateway_analytics.clickhouse.migrations import migrate
from gateway_analytics.http.app import create_app
from gateway_analytics.shared.events import Event, EventRecord
from gateway_analytics.shared.settings import Settings

PATHS = {Entity.POD: "/api/analytics/pods", Entity.ARTIFACT: "/api/analytics/artifacts"}

# The zones the tests ask about: none (UTC written with Z), UTC itself, zones
# that change their clocks in spring and autumn (north and south), and zones
# offset from UTC by a half and by three quarters of an hour.
ZONES = [
    None,
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
]

# A count row as the API writes it: entity id, bucket start, bucket end, total.
Row = tuple[str, str, str, int]


@dataclass(frozen=True)
class CountFilter:
    """The optional parameters of one count request.

    ``since`` and ``until`` are the RFC 3339 texts sent as ``from`` and ``to``.
    """

    since: str | None = None
    until: str | None = None
    ids: tuple[UUID, ...] = ()
    types: tuple[str, ...] = ()

    def parameters(self, entity: Entity) -> list[tuple[str, str]]:
        """The query string pairs of this filter, repeated names included."""
        pairs = [(entity.value, str(entity_id)) for entity_id in self.ids]
        pairs += [("type", kind) for kind in self.types]
        if self.since is not None:
            pairs.append(("from", self.since))
        if self.until is not None:
            pairs.append(("to", self.until))
        return pairs

    def admits(self, event: Event) -> bool:
        """Whether the event's type and time pass this filter."""
        occurred_at = event.occurred_at
        assert occurred_at is not None
        if self.types and event.type not in self.types:
            return False
        if self.since is not None and occurred_at < datetime.fromisoformat(self.since):
            return False
        return self.until is None or occurred_at < datetime.fromisoformat(self.until)


class NoPublisher:
    """The count endpoints never publish; any call is a test failure."""

    async def publish(self, records: Any) -> None:
        raise AssertionError("a count query published events")


@contextmanager
def shared_database(clickhouse_url: str) -> Iterator[ClickHouse]:
    """A migrated database for several tests to share, dropped afterwards.

    The client runs its statements on a thread of its own, so it serves any
    event loop; setting up and dropping run in loops of their own, which lets
    a module-scoped fixture hold it while each test runs in its own loop.
    """
    database = f"shared_{uuid.uuid4().hex[:12]}"
    clickhouse = connect(url=clickhouse_url, database=database)
    asyncio.run(migrate(clickhouse))
    yield clickhouse

    async def drop() -> None:
        await clickhouse.command(f"DROP DATABASE IF EXISTS `{database}`")
        await clickhouse.close()

    asyncio.run(drop())


@asynccontextmanager
async def api_client(clickhouse: ClickHouse) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The API on a test server, reading from ``clickhouse``."""
    app = create_app(
        settings=Settings(), clickhouse=clickhouse, publisher=NoPublisher()
    )
    async with TestClient(TestServer(app)) as client:
        yield client


async def api_counts(
    client: TestClient,  # type: ignore[type-arg]
    entity: Entity,
    window: Window,
    zone: str | None,
    count_filter: CountFilter,
    *,
    page_size: int = 200,
) -> list[Row]:
    """Every row the API answers, walking its pages until ``has_more`` is false.

    Each page but the last must be full, which also checks ``has_more``.
    """
    parameters = [("window", window.value), ("page_size", str(page_size))]
    parameters += count_filter.parameters(entity)
    if zone is not None:
        parameters.append(("tz", zone))
    rows: list[Row] = []
    page = 1
    while True:
        response = await client.get(
            PATHS[entity], params=[*parameters, ("page", str(page))]
        )
        assert response.status == 200, await response.text()
        body = await response.json()
        rows += [
            (r[entity.value], r["bucket_start"], r["bucket_end"], r["total"])
            for r in body["data"]
        ]
        if not body["has_more"]:
            return rows
        assert len(body["data"]) == page_size, f"page {page} is short yet has_more"
        page += 1


def named_entities(event: Event, entity: Entity) -> set[UUID]:
    """The pods, or the distinct artifacts, an event counts for."""
    if entity is Entity.POD:
        return {event.pod_id} if event.pod_id is not None else set()
    named = set(getattr(event, "artifact_ids", ()))
    artifact_id = getattr(event, "artifact_id", None)
    if artifact_id is not None:
        named.add(artifact_id)
    return named


def local_bucket(
    instant: datetime, window: Window, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """Start and end of the bucket holding ``instant``, as times in ``zone``.

    Hours start at the local hour (the zones tested change their clocks by
    whole hours, so an hour bucket always lasts 60 minutes); days at local
    midnight; weeks at local Monday midnight. A day's end is the next local
    midnight, however many hours lie between.
    """
    local = instant.astimezone(zone)
    if window is Window.HOUR:
        start = local.replace(minute=0, second=0, microsecond=0)
        end = (start.astimezone(UTC) + timedelta(hours=1)).astimezone(zone)
        return start, end
    day = local.date()
    length = timedelta(days=1)
    if window is Window.WEEK:
        day -= timedelta(days=day.weekday())
        length = timedelta(weeks=1)
    return _first_instant(day, zone), _first_instant(day + length, zone)


def _first_instant(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local day: midnight, or 01:00 where the clocks
    skip midnight (zoneinfo reads a skipped time with the earlier offset,
    which is the same instant)."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC).astimezone(zone)


def instant_text(moment: datetime, zone: str | None) -> str:
    """RFC 3339 text: UTC with ``Z`` when no zone was asked for, else its offset."""
    if zone is None:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat()


def python_counts(
    records: Iterable[EventRecord],
    entity: Entity,
    window: Window,
    zone: str | None,
    count_filter: CountFilter,
) -> list[Row]:
    """The rows the API should answer, counted in Python, in the API's order."""
    tz = ZoneInfo(zone or "UTC")
    totals: Counter[tuple[str, int]] = Counter()
    buckets: dict[int, tuple[datetime, datetime]] = {}
    for record in records:
        event = record.event
        if not count_filter.admits(event):
            continue
        assert event.occurred_at is not None
        start, end = local_bucket(event.occurred_at, window, tz)
        key = int(start.timestamp())
        buckets[key] = (start, end)
        for entity_id in named_entities(event, entity):
            if not count_filter.ids or entity_id in count_filter.ids:
                totals[(str(entity_id), key)] += 1
    ordered = sorted(totals, key=lambda item: (-item[1], item[0]))
    return [
        (
            entity_id,
            instant_text(buckets[key][0], zone),
            instant_text(buckets[key][1], zone),
            totals[(entity_id, key)],
        )
        for entity_id, key in ordered
    ]


_RAW_ENTITY = {
    Entity.POD: "SELECT pod_id AS entity, type, occurred_at "
    "FROM analytics_events WHERE pod_id IS NOT NULL",
    Entity.ARTIFACT: "SELECT arrayJoin(arrayDistinct(arrayConcat(artifact_ids, "
    "if(artifact_id IS NULL, [], [assumeNotNull(artifact_id)])))) AS entity, "
    "type, occurred_at FROM analytics_events",
}
_RAW_START = {
    Window.HOUR: "toStartOfHour(occurred_at, {tz:String})",
    Window.DAY: "toStartOfDay(occurred_at, {tz:String})",
    Window.WEEK: "toDateTime(toMonday(occurred_at, {tz:String}), {tz:String})",
}


async def raw_counts(
    clickhouse: ClickHouse,
    entity: Entity,
    window: Window,
    zone: str | None,
    count_filter: CountFilter,
) -> list[tuple[str, int, int]]:
    """(entity id, bucket start in Unix seconds, total) straight from the events."""
    conditions = ["1"]
    parameters: dict[str, Any] = {"tz": zone or "UTC"}
    if count_filter.since is not None:
        conditions.append("occurred_at >= {since:DateTime64(3, 'UTC')}")
        parameters["since"] = datetime.fromisoformat(count_filter.since)
    if count_filter.until is not None:
        conditions.append("occurred_at < {until:DateTime64(3, 'UTC')}")
        parameters["until"] = datetime.fromisoformat(count_filter.until)
    if count_filter.ids:
        conditions.append("entity IN {ids:Array(UUID)}")
        parameters["ids"] = list(count_filter.ids)
    if count_filter.types:
        conditions.append("type IN {types:Array(String)}")
        parameters["types"] = list(count_filter.types)
    rows = await clickhouse.query(
        f"""
        SELECT toString(entity) AS entity_id,
               toUnixTimestamp({_RAW_START[window]}) AS start_seconds,
               count() AS total
        FROM ({_RAW_ENTITY[entity]})
        WHERE {" AND ".join(conditions)}
        GROUP BY entity_id, start_seconds
        ORDER BY start_seconds DESC, entity_id ASC
        """,
        parameters,
    )
    return [(str(row[0]), int(row[1]), int(row[2])) for row in rows]


def as_seconds(rows: Sequence[Row]) -> list[tuple[str, int, int]]:
    """API rows as (entity id, bucket start in Unix seconds, total)."""
    return [
        (entity_id, int(datetime.fromisoformat(start).timestamp()), total)
        for entity_id, start, _, total in rows
    ]


async def assert_counts_match(
    clickhouse: ClickHouse,
    records: Sequence[EventRecord],
    cases: Sequence[tuple[Entity, Window, str | None, CountFilter]],
) -> None:
    """The API agrees with both references on every case."""
    async with api_client(clickhouse) as client:
        for entity, window, zone, count_filter in cases:
            case = f"{entity.value} {window.value} tz={zone} {count_filter}"
            answered = await api_counts(client, entity, window, zone, count_filter)
            expected = python_counts(records, entity, window, zone, count_filter)
            raw = await raw_counts(clickhouse, entity, window, zone, count_filter)

            assert answered == expected, case
            assert as_seconds(answered) == raw, case
