"""Consumed records into analytics_events through its intake, as the sink does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.events_table import (
    ConsumedRecord,
    ConsumedValue,
    TopicValue,
    batch_token,
    insert_records,
)
from gateway_analytics.shared.errors import StorageError
from gateway_analytics.shared.events import (
    ArtifactViewed,
    CheckoutStarted,
    PodEntered,
    SaleCompleted,
    decode_value,
    encode_events,
    join_values,
    resolve_records,
)

POD = uuid.UUID("6f1c2a44-0b7e-4d5a-9c1e-2f8b3d4a5e60")
ARTIFACT = uuid.UUID("0d4e5f60-7a8b-4c9d-8e0f-1a2b3c4d5e6f")
OTHER_ARTIFACT = uuid.UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
ORDER = uuid.UUID("3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a9f")
# A microsecond before midnight: stored to the millisecond, it must stay in
# the day it happened rather than round up into the next one.
LAST_MOMENT = datetime(2024, 3, 10, 23, 59, 59, 999999, tzinfo=UTC)


def _consumed() -> list[ConsumedRecord]:
    """One event of every type; the first two share a Kafka record."""
    events = [
        PodEntered(type="pod_entered", pod_id=POD, occurred_at=LAST_MOMENT),
        ArtifactViewed(type="artifact_viewed", artifact_id=ARTIFACT),
        CheckoutStarted(
            type="checkout_started",
            artifact_ids=[ARTIFACT, OTHER_ARTIFACT],
            pod_id=POD,
        ),
        SaleCompleted(
            type="sale_completed", order_id=ORDER, artifact_id=ARTIFACT, pod_id=POD
        ),
    ]
    records = resolve_records(events, received_at=datetime.now(UTC))
    positions = [(0, 7), (0, 7), (0, 8), (2, 3)]
    return [
        ConsumedRecord(record, partition, offset)
        for record, (partition, offset) in zip(records, positions, strict=True)
    ]


async def _stored_rows(clickhouse: ClickHouse) -> list[tuple[object, ...]]:
    return await clickhouse.query(
        "SELECT type, pod_id, artifact_id, artifact_ids, order_id, occurred_at, "
        "kafka_partition, kafka_offset FROM analytics_events "
        "ORDER BY kafka_partition DESC, kafka_offset, type"
    )


async def test_every_field_of_every_type_is_stored(clickhouse: ClickHouse) -> None:
    consumed = _consumed()

    await insert_records(clickhouse, consumed)

    rows = await _stored_rows(clickhouse)
    assert [row[:5] for row in rows] == [
        ("sale_completed", POD, ARTIFACT, [], ORDER),
        ("artifact_viewed", None, ARTIFACT, [], None),
        ("pod_entered", POD, None, [], None),
        ("checkout_started", POD, None, [ARTIFACT, OTHER_ARTIFACT], None),
    ]
    assert [row[6:] for row in rows] == [(2, 3), (0, 7), (0, 7), (0, 8)]
    # The client reads DateTime64 columns back as naive UTC times.
    assert rows[2][5] == LAST_MOMENT.replace(microsecond=999000, tzinfo=None)
    ids = await clickhouse.query("SELECT event_id FROM analytics_events")
    assert {row[0] for row in ids} == {c.record.event.event_id for c in consumed}


async def test_a_retried_insert_is_stored_once_in_one_part(
    clickhouse: ClickHouse,
) -> None:
    """The same batch again, as after an unclear failure, adds nothing anywhere."""
    consumed = _consumed()

    await insert_records(clickhouse, consumed)
    await insert_records(clickhouse, consumed)

    for table, expected in (
        ("analytics_events", 4),
        ("pod_counts", 3),
        ("artifact_counts", 4),
    ):
        column = "count()" if table == "analytics_events" else "sum(total)"
        totals = await clickhouse.query(f"SELECT {column} FROM {table}")
        assert totals == [(expected,)], table
        parts = await clickhouse.query(
            "SELECT count() FROM system.parts WHERE active "
            "AND database = currentDatabase() AND table = {table:String}",
            {"table": table},
        )
        assert parts == [(1,)], table
    day = await clickhouse.query(
        "SELECT bucket FROM pod_counts WHERE type = 'pod_entered'"
    )
    assert day[0][0].date() == LAST_MOMENT.date()


def _as_consumed(value: bytes, partition: int, offset: int) -> list[ConsumedRecord]:
    """The records of one topic value, as the sink hands them on."""
    records = decode_value(value)
    topic_value = TopicValue(value, len(records))
    return [ConsumedRecord(r, partition, offset, topic_value) for r in records]


async def test_a_value_in_a_form_clickhouse_refuses_is_written_anew(
    clickhouse: ClickHouse,
) -> None:
    """The contract takes a UUID in braces and a lower-case t; ClickHouse does
    not, and the insert falls back to pydantic's JSON."""
    value = (
        b'[{"received_at":"2024-03-10t12:00:00z","event":{"type":"pod_entered",'
        b'"pod_id":"{%s}","event_id":"%s","occurred_at":"2024-03-10T17:30:00+05:30"}}]'
        % (str(POD).encode(), str(uuid.uuid4()).encode())
    )

    await insert_records(clickhouse, _as_consumed(value, 1, 4))

    rows = await clickhouse.query("SELECT pod_id, occurred_at FROM analytics_events")
    assert rows == [(POD, datetime(2024, 3, 10, 12, 0))]


async def test_a_value_the_sink_kept_only_part_of_stores_only_that_part(
    clickhouse: ClickHouse,
) -> None:
    events = [PodEntered(type="pod_entered", pod_id=uuid.uuid4()) for _ in range(3)]
    value = next(
        join_values(
            [e.json for e in encode_events(events, received_at=datetime.now(UTC))]
        )
    )
    consumed = _as_consumed(value, 0, 0)

    await insert_records(clickhouse, [consumed[0], consumed[2]])

    rows = await clickhouse.query("SELECT pod_id FROM analytics_events")
    assert {row[0] for row in rows} == {events[0].pod_id, events[2].pod_id}


def _fresh_value(count: int) -> bytes:
    events = [PodEntered(type="pod_entered", pod_id=uuid.uuid4()) for _ in range(count)]
    encoded = encode_events(events, received_at=datetime.now(UTC))
    return next(join_values([e.json for e in encoded]))


async def test_whole_values_and_decoded_records_share_one_insert(
    clickhouse: ClickHouse,
) -> None:
    """A value stored undecoded sits beside decoded records in one part, and
    the batch's token is the one its fully decoded form would have."""
    value = _fresh_value(5)
    decoded = _consumed()
    batch = [ConsumedValue(TopicValue(value, 5), 1, 9), *decoded]

    await insert_records(clickhouse, batch)
    await insert_records(clickhouse, [*_as_consumed(value, 1, 9), *decoded])

    stored = await clickhouse.query(
        "SELECT kafka_partition, kafka_offset, count() FROM analytics_events "
        "GROUP BY kafka_partition, kafka_offset ORDER BY kafka_partition, kafka_offset"
    )
    assert stored == [(0, 7, 2), (0, 8, 1), (1, 9, 5), (2, 3, 1)]
    ids = await clickhouse.query("SELECT toString(event_id) FROM analytics_events")
    assert {row[0] for row in ids} >= {
        str(r.event.event_id) for r in decode_value(value)
    }
    assert batch_token(batch) == batch_token([*_as_consumed(value, 1, 9), *decoded])


async def test_a_large_batch_of_one_event_records_goes_in_one_insert(
    clickhouse: ClickHouse,
) -> None:
    """Each row its own Kafka record, far into a long-lived topic: the
    insert's token stays short whatever the batch holds."""
    events = [PodEntered(type="pod_entered", pod_id=POD) for _ in range(30_000)]
    records = resolve_records(events, received_at=datetime.now(UTC))
    first_offset = 10**12
    batch = [
        ConsumedRecord(record, number % 6, first_offset + number)
        for number, record in enumerate(records)
    ]

    await insert_records(clickhouse, batch)
    await insert_records(clickhouse, batch)

    assert await clickhouse.query("SELECT count() FROM analytics_events") == [
        (len(batch),)
    ]
    assert len(batch_token(batch)) == 64


async def test_a_refused_value_is_left_for_the_sink_to_decode(
    clickhouse: ClickHouse,
) -> None:
    """ClickHouse refusing an undecoded value raises; nothing is stored."""
    batch = [
        ConsumedValue(TopicValue(_fresh_value(3), 3), 0, 0),
        ConsumedValue(TopicValue(b"not json", 1), 0, 1),
    ]

    with pytest.raises(StorageError):
        await insert_records(clickhouse, batch)

    assert await clickhouse.query("SELECT count() FROM analytics_events") == [(0,)]
