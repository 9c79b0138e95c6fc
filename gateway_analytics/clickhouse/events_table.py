"""Rows of ``analytics_events``: how consumed event records are stored.

The table answers the sink's two questions cheaply through projections kept
inside every part: where to resume each Kafka partition, and which event ids
are already stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.shared.events import EventRecord

TABLE = "analytics_events"
COLUMNS = (
    "event_id",
    "type",
    "pod_id",
    "artifact_id",
    "artifact_ids",
    "order_id",
    "occurred_at",
    "received_at",
    "kafka_partition",
    "kafka_offset",
)


class ConsumedRecord(NamedTuple):
    """An event record and the place in the topic it was read from."""

    record: EventRecord
    partition: int
    offset: int


def to_row(consumed: ConsumedRecord) -> tuple[Any, ...]:
    """The table row of one consumed record, in :data:`COLUMNS` order."""
    event = consumed.record.event
    # Read the fields a type lacks from __dict__: getattr with a default goes
    # through pydantic's __getattr__ and an exception per missing field.
    fields = event.__dict__
    return (
        event.event_id,
        event.type,
        event.pod_id,
        fields.get("artifact_id"),
        fields.get("artifact_ids", []),
        fields.get("order_id"),
        event.occurred_at,
        consumed.record.received_at,
        consumed.partition,
        consumed.offset,
    )


def batch_token(records: Iterable[ConsumedRecord]) -> str:
    """A deduplication token naming exactly the Kafka positions of a batch."""
    return ",".join(f"{r.partition}:{r.offset}" for r in records)


async def insert_records(
    clickhouse: ClickHouse,
    records: Sequence[ConsumedRecord],
    *,
    table: str = TABLE,
) -> None:
    """Insert consumed records in one insert, which ClickHouse stores as one part.

    The insert carries a token built from the records' Kafka positions, so
    retrying it after an unclear failure cannot store the batch twice.
    """
    await clickhouse.insert(
        table,
        [to_row(record) for record in records],
        COLUMNS,
        deduplication_token=batch_token(records),
    )


async def stored_offsets(
    clickhouse: ClickHouse, *, table: str = TABLE
) -> dict[int, int]:
    """The highest stored Kafka offset of every partition that has rows."""
    rows = await clickhouse.query(
        f"SELECT kafka_partition, max(kafka_offset) FROM {table} "
        "GROUP BY kafka_partition"
    )
    return {int(partition): int(offset) for partition, offset in rows}


async def stored_event_ids(
    clickhouse: ClickHouse,
    event_ids: Sequence[UUID],
    *,
    received_since: datetime,
    table: str = TABLE,
) -> dict[UUID, datetime]:
    """Which of ``event_ids`` are stored, received at or after ``received_since``.

    Returns each stored id with the latest time it was received.
    """
    if not event_ids:
        return {}
    rows = await clickhouse.query(
        f"SELECT event_id, max(received_at) FROM {table} "
        "WHERE event_id IN {ids:Array(UUID)} "
        "AND received_at >= {since:DateTime64(3, 'UTC')} "
        "GROUP BY event_id",
        {"ids": list(event_ids), "since": received_since},
    )
    return {event_id: received_at for event_id, received_at in rows}
