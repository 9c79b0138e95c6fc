"""Event records on the topic: several per Kafka record, grouped by partition."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from gateway_analytics.shared.events import (
    EventRecord,
    PodEntered,
    SaleCompleted,
    decode_value,
    encode_values,
    entity_key,
    resolve_records,
    topic_values,
)
from gateway_analytics.shared.publisher import partitioned_values

RECEIVED_AT = datetime(2024, 5, 20, 12, tzinfo=UTC)


def _records(count: int, *, pods: int = 8) -> list[EventRecord]:
    pod_ids = [uuid.uuid4() for _ in range(pods)]
    events = [
        PodEntered(type="pod_entered", pod_id=pod_ids[n % pods]) for n in range(count)
    ]
    return resolve_records(events, received_at=RECEIVED_AT)


def test_records_survive_a_round_trip_in_order() -> None:
    """What encode_values writes, decode_value reads back unchanged."""
    records = _records(50)

    decoded = [r for value in encode_values(records) for r in decode_value(value)]

    assert decoded == records


def test_a_value_written_as_one_record_is_still_read() -> None:
    """A bare event record, as earlier versions wrote it, decodes to itself."""
    record = _records(1)[0]

    decoded = decode_value(record.model_dump_json().encode())

    assert decoded == [record]


def test_values_stay_under_the_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records are spread over several values once one would pass the limit."""
    records = _records(40)
    one_record = len(records[0].model_dump_json())
    monkeypatch.setattr(topic_values, "MAX_VALUE_BYTES", one_record * 10)

    values = list(encode_values(records))

    assert len(values) > 1
    assert all(len(value) <= one_record * 10 for value in values)
    assert [r for v in values for r in decode_value(v)] == records


@pytest.mark.parametrize(
    "value", [b"[]", b"{}", b"[{}]", b"not json", b"", b'[{"received_at": 1}]']
)
def test_anything_else_is_refused(value: bytes) -> None:
    """An empty array, a wrong shape or no JSON at all raises ValidationError."""
    with pytest.raises(ValidationError):
        decode_value(value)


def test_each_record_goes_to_its_keys_partition_in_order() -> None:
    """Grouping puts a record where Kafka's default partitioner puts its key,
    and keeps each partition's records in the order they came."""
    records = _records(60, pods=5) + resolve_records(
        [
            SaleCompleted(
                type="sale_completed",
                order_id=uuid.uuid4(),
                artifact_id=uuid.uuid4(),
            )
        ],
        received_at=RECEIVED_AT,
    )
    partitions = [0, 1, 2, 3, 4, 5]

    values = partitioned_values(records, partitions)

    choose = DefaultPartitioner()
    for partition, value in values:
        decoded = decode_value(value)
        assert {choose(entity_key(r), partitions, partitions) for r in decoded} == {
            partition
        }
        assert decoded == [
            r
            for r in records
            if choose(entity_key(r), partitions, partitions) == partition
        ]
    assert sum(len(decode_value(v)) for _, v in values) == len(records)
