"""The count rollups: how far each has counted, and filling what one lacks.

Materialized views count every insert into ``analytics_events`` into the
rollup tables (see the migration that creates them). ClickHouse stores the
events and each view's counts as separate parts, so a crash between them
leaves a rollup behind the events table; and events stored before the views
existed were never counted. Both gaps are closed the same way: each rollup
row keeps the lowest and highest Kafka offset it counted, per partition, and
whatever the events table holds below the lowest or past the highest is
counted through the view's own query, so the two can never disagree on what
a count means.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.events_table import TABLE, stored_offsets
from gateway_analytics.shared.errors import StorageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rollup:
    """A rollup table, the column holding its entity, and the view feeding it."""

    table: str
    entity_column: str
    feed: str


POD_COUNTS = Rollup(table="pod_counts", entity_column="pod_id", feed="pod_counts_feed")
ARTIFACT_COUNTS = Rollup(
    table="artifact_counts", entity_column="artifact_id", feed="artifact_counts_feed"
)
ROLLUPS = (POD_COUNTS, ARTIFACT_COUNTS)

# The events table as a view's stored query names it: bare, or qualified with
# its database, either part possibly in backquotes.
_EVENTS_SOURCE = re.compile(rf"\bFROM\s+(?:`?\w+`?\.)?`?{TABLE}`?(?=\s)")


async def counted_offsets(
    clickhouse: ClickHouse, table: str
) -> dict[int, tuple[int, int]]:
    """The lowest and highest Kafka offset a rollup table has counted, per
    partition."""
    rows = await clickhouse.query(
        "SELECT kafka_partition, min(first_offset), max(last_offset) "
        f"FROM {table} GROUP BY kafka_partition"
    )
    return {int(partition): (int(first), int(last)) for partition, first, last in rows}


async def feed_query(clickhouse: ClickHouse, rollup: Rollup) -> str:
    """The SELECT of the view that feeds ``rollup``, as ClickHouse stored it."""
    rows = await clickhouse.query(
        "SELECT as_select FROM system.tables "
        "WHERE database = currentDatabase() AND name = {name:String}",
        {"name": rollup.feed},
    )
    if not rows:
        raise StorageError(f"the view {rollup.feed} does not exist; run migrate")
    return str(rows[0][0])


async def count_events_between(
    clickhouse: ClickHouse, rollup: Rollup, ranges: Mapping[int, tuple[int, int]]
) -> None:
    """Count into ``rollup`` the stored events in ``ranges``.

    ``ranges`` maps a partition to the offsets to count: past the first and
    up to the second. One statement covers them all, so the events table is
    read once.
    """
    select, replaced = _EVENTS_SOURCE.subn(
        f"FROM (SELECT * FROM {TABLE} "
        "WHERE kafka_partition IN {partitions:Array(UInt32)} "
        "AND kafka_offset > {afters:Array(Int64)}"
        "[indexOf({partitions:Array(UInt32)}, kafka_partition)] "
        "AND kafka_offset <= {throughs:Array(Int64)}"
        "[indexOf({partitions:Array(UInt32)}, kafka_partition)]) AS events",
        await feed_query(clickhouse, rollup),
    )
    if replaced != 1:
        raise StorageError(f"the view {rollup.feed} does not read {TABLE} once")
    partitions = sorted(ranges)
    await clickhouse.command(
        f"INSERT INTO {rollup.table} {select}",
        {
            "partitions": partitions,
            "afters": [ranges[p][0] for p in partitions],
            "throughs": [ranges[p][1] for p in partitions],
        },
    )


async def catch_up_rollups(
    clickhouse: ClickHouse, partitions: Collection[int] | None = None
) -> int:
    """Count what each rollup lacks of the events table.

    Returns how many (rollup, partition) pairs were recounted below or past
    their counted offsets.

    Only ``partitions`` are looked at when given, so that a sink touches only
    what it was assigned. Nothing may insert into those partitions meanwhile:
    a crash's gap is found past a rollup's highest counted offset, so a newer
    insert counted first would hide it. (Events older than anything a rollup
    counted are found below its lowest, whatever was inserted since.)
    """
    stored = await stored_offsets(clickhouse)
    if partitions is not None:
        stored = {p: offset for p, offset in stored.items() if p in partitions}
    recounted = 0
    for rollup in ROLLUPS:
        counted = await counted_offsets(clickhouse, rollup.table)
        # Events stored before the view existed lie below the first offset it
        # counted, however many inserts it counted before this catch-up.
        before = {
            partition: (-1, counted[partition][0] - 1)
            for partition in stored
            if partition in counted and counted[partition][0] > 0
        }
        # Often nothing is missing: the newest events of a partition may
        # simply name no pod, or no artifact. Counting the range then adds
        # nothing, which is cheaper than finding that out first.
        behind = {
            partition: (counted.get(partition, (0, -1))[1], stored_offset)
            for partition, stored_offset in stored.items()
            if counted.get(partition, (0, -1))[1] < stored_offset
        }
        for ranges in (before, behind):
            if ranges:
                await count_events_between(clickhouse, rollup, ranges)
        recounted += len(before.keys() | behind.keys())
    if recounted:
        logger.info("Recounted %d rollup partitions outside their counts", recounted)
    return recounted


async def rebuild_rollups(clickhouse: ClickHouse) -> None:
    """Recount every rollup from the events table and swap each in at once."""
    for rollup in ROLLUPS:
        fresh = f"{rollup.table}_rebuild"
        await clickhouse.command(f"DROP TABLE IF EXISTS {fresh}")
        await clickhouse.command(f"CREATE TABLE {fresh} AS {rollup.table}")
        await clickhouse.command(
            f"INSERT INTO {fresh} {await feed_query(clickhouse, rollup)}"
        )
        await clickhouse.command(f"EXCHANGE TABLES {rollup.table} AND {fresh}")
        await clickhouse.command(f"DROP TABLE {fresh}")
