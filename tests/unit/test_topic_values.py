"""Event records on the topic: several per Kafka record, grouped by partition."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from gateway_analytics.shared.events import (
    ArtifactViewed,
    CheckoutStarted,
    EventRecord,
    PodEntered,
    SaleCompleted,
    decode_value,
    encode_events,
    encode_values,
    entity_key,
    fresh_events,
    join_values,
    resolve_records,
    topic_values,
    written_event_ids,
)
from gateway_analytics.shared.events.topic_values import ValueBuilder
from gateway_analytics.shared.publisher import group_by_partition

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


def _mixed_events() -> list[Any]:
    pod, artifact = uuid.uuid4(), uuid.uuid4()
    return [
        PodEntered(type="pod_entered", pod_id=pod),
        PodEntered(
            type="pod_entered",
            pod_id=pod,
            event_id=uuid.uuid4(),
            occurred_at=datetime(2024, 5, 19, 23, 59, 59, 999000, tzinfo=UTC),
        ),
        ArtifactViewed(type="artifact_viewed", artifact_id=artifact),
        CheckoutStarted(
            type="checkout_started", artifact_ids=[artifact, artifact], pod_id=pod
        ),
        SaleCompleted(
            type="sale_completed", order_id=uuid.uuid4(), artifact_id=artifact
        ),
    ]


def test_encoded_events_decode_to_the_records_they_resolve_to() -> None:
    """encode_events writes what resolve_records would, with the same ids,
    keys and times, and events keep their given ids and times."""
    events = _mixed_events()

    encoded = encode_events(events, received_at=RECEIVED_AT)

    decoded = [
        r
        for value in join_values([e.json for e in encoded])
        for r in decode_value(value)
    ]
    assert [str(r.event.event_id) for r in decoded] == [e.event_id for e in encoded]
    assert [entity_key(r) for r in decoded] == [e.key for e in encoded]
    resolved = resolve_records(
        [
            event.model_copy(update={"event_id": record.event.event_id})
            for event, record in zip(events, decoded, strict=True)
        ],
        received_at=RECEIVED_AT,
    )
    assert decoded == resolved
    assert decoded[1].event.event_id == events[1].event_id


def test_the_ids_of_a_written_value_are_found_without_decoding_it() -> None:
    """written_event_ids reads back every id encode_events wrote, in order."""
    encoded = encode_events(_mixed_events(), received_at=RECEIVED_AT)

    (value,) = join_values([e.json for e in encoded])

    assert written_event_ids(value) == [e.event_id for e in encoded]


def test_encoded_events_get_distinct_fresh_ids() -> None:
    """Events without an event_id each get a new random UUID, written as
    Python writes one."""
    events = [PodEntered(type="pod_entered", pod_id=uuid.uuid4()) for _ in range(500)]

    ids = [e.event_id for e in encode_events(events, received_at=RECEIVED_AT)]

    assert len(set(ids)) == 500
    assert {uuid.UUID(i).version for i in ids} == {4}
    assert {uuid.UUID(i).variant for i in ids} == {uuid.RFC_4122}
    assert [str(uuid.UUID(i)) for i in ids] == ids


def test_each_event_goes_to_its_keys_partition_in_order() -> None:
    """Grouping puts an event where Kafka's default partitioner puts its key,
    and keeps each partition's events in the order they came."""
    pods = [uuid.uuid4() for _ in range(5)]
    events = [
        PodEntered(type="pod_entered", pod_id=pods[n % 5]) for n in range(60)
    ] + _mixed_events()
    encoded = encode_events(events, received_at=RECEIVED_AT)
    partitions = [0, 1, 2, 3, 4, 5]

    groups = group_by_partition(encoded, partitions)

    choose = DefaultPartitioner()
    for partition, group in groups.items():
        assert group == [
            e for e in encoded if choose(e.key, partitions, partitions) == partition
        ]
    assert sum(len(group) for group in groups.values()) == len(encoded)


def test_encoded_events_tell_minted_ids_from_sent_ones() -> None:
    """Only an event that came without an event_id has a minted one."""
    events = _mixed_events()

    encoded = encode_events(events, received_at=RECEIVED_AT)

    assert [e.minted_id for e in encoded] == [e.event_id is None for e in events]
    assert any(e.minted_id for e in encoded)
    assert not all(e.minted_id for e in encoded)


def _filled(encoded: list[Any]) -> ValueBuilder:
    builder = ValueBuilder()
    for event in encoded:
        builder.add(event.json, minted_id=event.minted_id)
    return builder


def test_a_value_of_minted_ids_announces_its_fresh_events() -> None:
    """The header counts the events of a value whose ids were all minted."""
    events = [PodEntered(type="pod_entered", pod_id=uuid.uuid4()) for _ in range(7)]
    builder = _filled(encode_events(events, received_at=RECEIVED_AT))

    assert fresh_events(builder.headers) == 7
    assert len(decode_value(builder.value)) == 7


def test_a_value_with_a_sent_id_announces_nothing() -> None:
    """One event with the client's own id takes the header away."""
    builder = _filled(encode_events(_mixed_events(), received_at=RECEIVED_AT))

    assert builder.headers == []
    assert fresh_events(builder.headers) is None


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("other", b"3")],
        [("fresh-events", b"")],
        [("fresh-events", b"0")],
        [("fresh-events", b"-2")],
        [("fresh-events", b"many")],
        [("fresh-events", b"\xff")],
    ],
)
def test_headers_without_a_positive_count_announce_nothing(
    headers: list[tuple[str, bytes]] | None,
) -> None:
    """Anything but a positive count leaves the value to be decoded."""
    assert fresh_events(headers) is None
