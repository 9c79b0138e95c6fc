"""Rebuilding ``analytics_events`` from the topic, swapped in atomically.

The topic is the source of truth. A rebuild reads every retained record up
to the end offsets seen when it starts, stores them through the same sink
code as the live agent (so duplicates and bad records are judged the same
way) into a fresh table, and exchanges that table with the live one in one
step; queries see the old table or the new one, never a partial one.

A rebuild limited to a time range of ``occurred_at`` first copies the rows
outside the range from the live table, then replays only the range.

The count rollups are then recounted from the new table into fresh tables,
swapped in the same way.

Beside a live sink (against a ClickHouse server), rows the sink stored in the
old table that the new one lacks are copied over right after the exchange:
those at or past the starting end offsets, and, for a range, those outside
it. The sink's inserts that are in flight during the exchange itself land in
the old table after that copy; a second pass one flush interval later takes
them too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.events_table import (
    TABLE,
    create_intake,
    drop_intake,
)
from gateway_analytics.clickhouse.rollups import catch_up_rollups, rebuild_rollups
from gateway_analytics.shared.errors import ConfigurationError
from gateway_analytics.shared.events import EventRecord
from gateway_analytics.shared.kafka import topic_partitions
from gateway_analytics.shared.progress import Progress
from gateway_analytics.streams.dead_letters import DiscardDeadLetters
from gateway_analytics.streams.sink import EventSink

logger = logging.getLogger(__name__)

REBUILD_TABLE = f"{TABLE}_rebuild"


@dataclass(frozen=True)
class TimeRange:
    """Instants of ``occurred_at`` from ``since`` (inclusive) to ``until``."""

    since: datetime | None = None
    until: datetime | None = None

    @property
    def bounded(self) -> bool:
        """Whether the range leaves any time out."""
        return self.since is not None or self.until is not None

    def contains(self, record: EventRecord) -> bool:
        """Whether the record's event happened inside the range."""
        occurred_at = record.event.occurred_at
        assert occurred_at is not None, "EventRecord guarantees occurred_at"
        return (self.since is None or occurred_at >= self.since) and (
            self.until is None or occurred_at < self.until
        )

    def sql(self) -> tuple[str, dict[str, Any]]:
        """The range as a ClickHouse condition on occurred_at, with parameters."""
        conditions, parameters = ["1"], {}
        if self.since is not None:
            conditions.append("occurred_at >= {since:DateTime64(3, 'UTC')}")
            parameters["since"] = self.since
        if self.until is not None:
            conditions.append("occurred_at < {until:DateTime64(3, 'UTC')}")
            parameters["until"] = self.until
        return " AND ".join(conditions), parameters


@dataclass(frozen=True)
class ReplayReport:
    """What a rebuild read and stored."""

    records_read: int
    events_stored: int
    duplicates: int
    undecodable: int
    rows_kept: int
    rows_caught_up: int


async def rebuild(
    *,
    clickhouse: ClickHouse,
    bootstrap_servers: str,
    topic: str,
    time_range: TimeRange,
    batch_size: int,
    dedup_window_s: float,
    catch_up_delay_s: float = 0.0,
) -> ReplayReport:
    """Rebuild the events table (or one time range of it) from the topic."""
    starts, ends = await _offset_bounds(bootstrap_servers, topic)
    if not ends:
        # Swapping in an empty table would wipe the counts over a typo.
        raise ConfigurationError(
            f"topic {topic!r} does not exist on {bootstrap_servers}; "
            "check ANALYTICS_KAFKA_TOPIC"
        )
    await clickhouse.command(f"DROP TABLE IF EXISTS {REBUILD_TABLE}")
    await clickhouse.command(f"CREATE TABLE {REBUILD_TABLE} AS {TABLE}")
    await create_intake(clickhouse, REBUILD_TABLE)
    rows_kept = await _keep_rows_outside(clickhouse, time_range)

    sink = EventSink(
        clickhouse=clickhouse,
        dead_letters=DiscardDeadLetters(),
        dedup_window_s=dedup_window_s,
        batch_size=batch_size,
        table=REBUILD_TABLE,
        keep=time_range.contains if time_range.bounded else None,
    )
    progress = Progress("replay", total=sum(ends.values()) - sum(starts.values()))
    async for batch in _read_until(bootstrap_servers, topic, ends, batch_size):
        await sink.write(batch)
        progress.advance(len(batch))
    progress.finish()

    # Its view names the rebuild table, which the exchange gives the old rows.
    await drop_intake(clickhouse, REBUILD_TABLE)
    await clickhouse.command(f"EXCHANGE TABLES {TABLE} AND {REBUILD_TABLE}")
    caught_up = await _catch_up(clickhouse, ends, time_range)
    if catch_up_delay_s:
        await asyncio.sleep(catch_up_delay_s)
        caught_up += await _catch_up(clickhouse, ends, time_range)
    await clickhouse.command(f"DROP TABLE {REBUILD_TABLE}")
    await rebuild_rollups(clickhouse)
    # A live sink's inserts while the rollups were recounted fed the tables
    # just swapped out; count them into the new ones.
    await catch_up_rollups(clickhouse)
    return ReplayReport(
        records_read=progress.done,
        events_stored=sink.inserted,
        duplicates=sink.duplicates,
        undecodable=sink.dead_letters,
        rows_kept=rows_kept,
        rows_caught_up=caught_up,
    )


async def _keep_rows_outside(clickhouse: ClickHouse, time_range: TimeRange) -> int:
    if not time_range.bounded:
        return 0
    condition, parameters = time_range.sql()
    await clickhouse.command(
        f"INSERT INTO {REBUILD_TABLE} SELECT * FROM {TABLE} WHERE NOT ({condition})",
        parameters,
    )
    rows = await clickhouse.query(f"SELECT count() FROM {REBUILD_TABLE}")
    return int(rows[0][0])


async def _catch_up(
    clickhouse: ClickHouse, ends: dict[int, int], time_range: TimeRange
) -> int:
    """Copy rows a live sink stored in the old table while the rebuild ran."""
    condition, parameters = time_range.sql()
    before = await _count(clickhouse)
    await clickhouse.command(
        f"""
        INSERT INTO {TABLE}
        SELECT * FROM {REBUILD_TABLE}
        WHERE (kafka_partition, kafka_offset) NOT IN
              (SELECT kafka_partition, kafka_offset FROM {TABLE})
          AND (kafka_offset >= arrayElement({{ends:Array(UInt64)}},
                  indexOf({{partitions:Array(UInt32)}}, kafka_partition))
               OR NOT ({condition}))
        """,
        {**parameters, "partitions": list(ends), "ends": list(ends.values())},
    )
    return await _count(clickhouse) - before


async def _count(clickhouse: ClickHouse) -> int:
    rows = await clickhouse.query(f"SELECT count() FROM {TABLE}")
    return int(rows[0][0])


async def _offset_bounds(
    bootstrap_servers: str, topic: str
) -> tuple[dict[int, int], dict[int, int]]:
    """First retained and next unwritten offset of every partition."""
    partitions = [
        TopicPartition(topic, partition)
        for partition in await topic_partitions(
            bootstrap_servers=bootstrap_servers, topic=topic
        )
    ]
    if not partitions:
        return {}, {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers)
    await consumer.start()
    try:
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return (
        {tp.partition: offset for tp, offset in starts.items()},
        {tp.partition: offset for tp, offset in ends.items()},
    )


async def _read_until(
    bootstrap_servers: str, topic: str, ends: dict[int, int], batch_size: int
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Every retained record below ``ends``, in batches, from no consumer group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_size,
    )
    await consumer.start()
    try:
        pending = {TopicPartition(topic, p) for p, end in ends.items() if end > 0}
        if not pending:
            return
        consumer.assign(list(pending))
        await consumer.seek_to_beginning(*pending)
        while pending:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=batch_size)
            batch = [
                record
                for tp, records in fetched.items()
                for record in records
                if record.offset < ends[tp.partition]
            ]
            if batch:
                yield batch
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp.partition]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
