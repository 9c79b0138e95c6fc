"""The count rollups: how far each has counted, and filling what one lacks.

Materialized views count every insert into ``analytics_events`` into the
rollup tables (see the migration that creates them). ClickHouse stores the
events and each view's counts as separate parts, so a crash between them
leaves a rollup behind the events table; and events stored before the views
existed were never counted. Both gaps are closed the same way: each rollup
row keeps the highest Kafka offset it counted, per partition, and whatever
the events table holds past that is counted again through the view's own
query, so the two can never disagree on what a count means.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
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


async def counted_offsets(clickhouse: ClickHouse, table: str) -> dict[int, int]:
    """The highest Kafka offset a rollup table has counted, per partition."""
    rows = await clickhouse.query(
        f"SELECT kafka_partition, max(kafka_offset) FROM {table} "
        "GROUP BY kafka_partition"
    )
    return {int(partition): int(offset) for partition, offset in rows}


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


async def count_events_after(
    clickhouse: ClickHouse, rollup: Rollup, *, partition: int, after_offset: int
) -> None:
    """Count into ``rollup`` the stored events of a partition past an offset."""
    select, replaced = _EVENTS_SOURCE.subn(
        f"FROM (SELECT * FROM {TABLE} "
        "WHERE kafka_partition = {partition:UInt32} "
        "AND kafka_offset > {after:Int64}) AS events",
        await feed_query(clickhouse, rollup),
    )
    if replaced != 1:
        raise StorageError(f"the view {rollup.feed} does not read {TABLE} once")
    await clickhouse.command(
        f"INSERT INTO {rollup.table} {select}",
        {"partition": partition, "after": after_offset},
    )


async def catch_up_rollups(
    clickhouse: ClickHouse, partitions: Collection[int] | None = None
) -> int:
    """Count what each rollup lacks of the events table.

    Returns how many (rollup, partition) pairs were recounted past their
    counted offset.

    Only ``partitions`` are looked at when given, so that a sink touches only
    what it was assigned.
    """
    stored = await stored_offsets(clickhouse)
    recounted = 0
    for rollup in ROLLUPS:
        counted = await counted_offsets(clickhouse, rollup.table)
        for partition, stored_offset in sorted(stored.items()):
            if partitions is not None and partition not in partitions:
                continue
            counted_offset = counted.get(partition, -1)
            if counted_offset >= stored_offset:
                continue
            # Often nothing is missing: the newest events of a partition may
            # simply name no pod, or no artifact. Counting past the offset
            # then adds nothing, which is cheaper than finding that out first.
            await count_events_after(
                clickhouse, rollup, partition=partition, after_offset=counted_offset
            )
            recounted += 1
    if recounted:
        logger.info("Recounted %d rollup partitions past their last count", recounted)
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
