"""Rows of ``analytics_events``: how consumed event records are stored.

Records go in as JSON through the table's intake, which ClickHouse unpacks
into rows (see the migration that creates it). The table answers the sink's
two questions cheaply through projections kept inside every part: where to
resume each Kafka partition, and which event ids are already stored.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import groupby
from typing import NamedTuple
from uuid import UUID

from pydantic import TypeAdapter

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.shared.errors import StorageError
from gateway_analytics.shared.events import EventRecord

logger = logging.getLogger(__name__)

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
_INTAKE_FEED = f"{TABLE}_intake_feed"
# The intake as the feeding view's stored query names it: bare, or qualified
# with its database, either part possibly in backquotes.
_INTAKE_SOURCE = re.compile(rf"\bFROM\s+(?:`?\w+`?\.)?`?{TABLE}_intake`?(?=\s)")
_INTAKE_ROW = b'{"kafka_partition":%d,"kafka_offset":%d,"records":%s}\n'
_INTAKE_SETTINGS = {
    # pydantic writes RFC 3339 times, which the basic parser refuses.
    "date_time_input_format": "best_effort",
    # The intake keeps no blocks; the tables its views feed compare tokens.
    "deduplicate_blocks_in_dependent_materialized_views": 1,
}
_record_list: TypeAdapter[list[EventRecord]] = TypeAdapter(list[EventRecord])


class TopicValue(NamedTuple):
    """A Kafka record's value as it was consumed, and how many events it holds."""

    data: bytes
    events: int


class ConsumedRecord(NamedTuple):
    """An event record and the place in the topic it was read from.

    ``value``, when given, is the whole Kafka record the event came in,
    shared by every event decoded from it.
    """

    record: EventRecord
    partition: int
    offset: int
    value: TopicValue | None = None


class ConsumedValue(NamedTuple):
    """A whole Kafka record to be stored as it was consumed, its events not
    decoded: a value whose events the API validated and gave fresh ids."""

    value: TopicValue
    partition: int
    offset: int


Consumed = ConsumedRecord | ConsumedValue


def stored_events(items: Iterable[Consumed]) -> int:
    """How many events ``items`` hold."""
    return sum(
        item.value.events if isinstance(item, ConsumedValue) else 1 for item in items
    )


def intake_rows(items: Sequence[Consumed], *, reuse_values: bool) -> bytes:
    """The intake's JSONEachRow text for ``items``: one row per Kafka record.

    Consecutive records from one Kafka record share a row, and a
    :class:`ConsumedValue` is a row of its own bytes. With ``reuse_values``,
    a Kafka record whose events are all here goes in as the bytes it was
    consumed as, which spares writing it again; otherwise, and for a record
    of which the sink dropped some events, pydantic writes the JSON anew, in
    the one form ClickHouse is sure to read.
    """
    rows = []
    for (partition, offset), grouped in groupby(
        items, key=lambda item: (item.partition, item.offset)
    ):
        group = list(grouped)
        first = group[0]
        value = first.value
        whole = value is not None and value.events == len(group)
        if value is not None and (
            isinstance(first, ConsumedValue) or (reuse_values and whole)
        ):
            events = value.data
        else:
            records = [i.record for i in group if isinstance(i, ConsumedRecord)]
            events = _record_list.dump_json(records)
        rows.append(_INTAKE_ROW % (partition, offset, events))
    return b"".join(rows)


def batch_token(items: Iterable[Consumed]) -> str:
    """A deduplication token naming exactly the Kafka positions of a batch.

    Each position counts once however many of its events the batch holds,
    so a batch and the same batch with its values decoded share a token. The
    positions are hashed: the token travels with the insert statement, and
    listed out the positions of a large batch of small records passed
    ClickHouse's limit on a statement's size.
    """
    positions = dict.fromkeys((item.partition, item.offset) for item in items)
    listed = ",".join(f"{partition}:{offset}" for partition, offset in positions)
    return hashlib.sha256(listed.encode()).hexdigest()


def intake_table(table: str = TABLE) -> str:
    """The Null table whose view feeds ``table``."""
    return f"{table}_intake"


async def insert_records(
    clickhouse: ClickHouse,
    records: Sequence[Consumed],
    *,
    table: str = TABLE,
) -> None:
    """Insert consumed records in one insert, which ClickHouse stores as one part.

    The records go in through the table's intake (see the migration creating
    it). The insert carries a token built from the records' Kafka positions,
    so retrying it after an unclear failure cannot store the batch twice.

    Topic values are passed on as they came where possible. The API writes
    them in the form ClickHouse reads, but a topic may hold values another
    producer wrote in other forms the contract accepts (a UUID in braces, a
    lower-case ``t`` in a time), which ClickHouse refuses; such an insert,
    which stores nothing, is made again from JSON pydantic writes. A batch
    holding a :class:`ConsumedValue` is not made again here: its error is
    raised, for the caller to decode that value and insert anew.
    """
    token = batch_token(records)
    try:
        await _insert_intake(
            clickhouse, table, intake_rows(records, reuse_values=True), token
        )
    except StorageError as error:
        if any(isinstance(item, ConsumedValue) for item in records) or not any(
            item.value is not None for item in records
        ):
            raise
        logger.info("Writing a batch's records anew after: %s", error)
        await _insert_intake(
            clickhouse, table, intake_rows(records, reuse_values=False), token
        )


async def _insert_intake(
    clickhouse: ClickHouse, table: str, rows: bytes, token: str
) -> None:
    await clickhouse.insert_raw(
        intake_table(table),
        rows,
        data_format="JSONEachRow",
        settings=_INTAKE_SETTINGS,
        deduplication_token=token,
    )


async def create_intake(clickhouse: ClickHouse, table: str) -> None:
    """Give ``table``, a copy of the events table, an intake of its own."""
    rows = await clickhouse.query(
        "SELECT as_select FROM system.tables "
        "WHERE database = currentDatabase() AND name = {name:String}",
        {"name": _INTAKE_FEED},
    )
    if not rows:
        raise StorageError(f"the view {_INTAKE_FEED} does not exist; run migrate")
    select, replaced = _INTAKE_SOURCE.subn(
        f"FROM {intake_table(table)}", str(rows[0][0])
    )
    if replaced != 1:
        raise StorageError(f"the view {_INTAKE_FEED} does not read its intake once")
    await drop_intake(clickhouse, table)
    await clickhouse.command(f"CREATE TABLE {intake_table(table)} AS {intake_table()}")
    await clickhouse.command(
        f"CREATE MATERIALIZED VIEW {intake_table(table)}_feed TO {table} AS {select}"
    )


async def drop_intake(clickhouse: ClickHouse, table: str) -> None:
    """Remove what :func:`create_intake` made for ``table``, if anything."""
    await clickhouse.command(f"DROP VIEW IF EXISTS {intake_table(table)}_feed")
    await clickhouse.command(f"DROP TABLE IF EXISTS {intake_table(table)}")


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
