"""Rows of ``analytics_events``: how a consumed event record is stored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

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
    return (
        event.event_id,
        event.type,
        event.pod_id,
        getattr(event, "artifact_id", None),
        getattr(event, "artifact_ids", []),
        getattr(event, "order_id", None),
        event.occurred_at,
        consumed.record.received_at,
        consumed.partition,
        consumed.offset,
    )


async def insert_records(
    clickhouse: ClickHouse, records: Sequence[ConsumedRecord]
) -> None:
    """Insert consumed records into ``analytics_events`` in one insert."""
    await clickhouse.insert(TABLE, [to_row(record) for record in records], COLUMNS)
