"""The event contract: what a gateway may send and what travels on the topic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from gateway_analytics.shared.events import (
    EVENT_MODELS,
    ArtifactViewed,
    CheckoutStarted,
    Event,
    EventBatch,
    EventRecord,
    EventType,
    PodEntered,
    SaleCompleted,
    entity_key,
    event_list_adapter,
)

POD_ID = "a7fcb4fe-5f07-4e20-9af5-15e617c901c6"
ARTIFACT_ID = "6b7ccf45-2a29-4c78-8b21-2d3f1ad97f77"
ORDER_ID = "a4a70e58-9681-49b3-8a68-395e0ae7b2e5"
EVENT_ID = "0b3d4c1e-8f52-4a7b-9c1d-2e6f7a8b9c0d"

# The request body of the API documentation, event by event.
SEED_EVENTS: list[dict[str, Any]] = [
    {"type": "pod_entered", "pod_id": POD_ID, "occurred_at": "2024-05-20T12:00:00Z"},
    {"type": "artifact_viewed", "artifact_id": ARTIFACT_ID, "pod_id": POD_ID},
    {"type": "checkout_started", "artifact_ids": [ARTIFACT_ID], "pod_id": POD_ID},
    {
        "type": "sale_completed",
        "order_id": ORDER_ID,
        "artifact_id": ARTIFACT_ID,
        "pod_id": POD_ID,
    },
]


def seed_event(event_type: str, **changes: Any) -> dict[str, Any]:
    """The seed event of ``event_type``, with ``changes`` applied."""
    event = next(event for event in SEED_EVENTS if event["type"] == event_type)
    return {**event, **changes}


def validate_one(event: dict[str, Any]) -> Any:
    """The event model that ``event`` validates to."""
    return event_list_adapter.validate_python([event])[0]


def test_seed_batch_is_accepted_with_one_model_per_type() -> None:
    """The documented request body validates, each event to its own model."""
    body = {"events": SEED_EVENTS}

    batch = EventBatch.model_validate(body)

    assert [type(event) for event in batch.events] == [
        PodEntered,
        ArtifactViewed,
        CheckoutStarted,
        SaleCompleted,
    ]


@pytest.mark.parametrize("event", SEED_EVENTS, ids=lambda event: event["type"])
def test_seed_event_keeps_its_fields(event: dict[str, Any]) -> None:
    """Every field of a seed event survives validation with its value."""
    expected = {key: value for key, value in event.items() if key != "occurred_at"}

    dumped = validate_one(event).model_dump(mode="json", exclude_none=True)

    assert {key: dumped[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-20T17:30:00+05:30", datetime(2024, 5, 20, 12, 0, tzinfo=UTC)),
        ("2024-05-20T08:00:00-04:00", datetime(2024, 5, 20, 12, 0, tzinfo=UTC)),
        ("2024-05-20T23:15:00-04:00", datetime(2024, 5, 21, 3, 15, tzinfo=UTC)),
        ("2024-05-20T12:00:00Z", datetime(2024, 5, 20, 12, 0, tzinfo=UTC)),
    ],
)
def test_occurred_at_with_offset_is_stored_in_utc(
    text: str, expected: datetime
) -> None:
    """An occurred_at with a zone offset becomes the same instant in UTC."""
    event = seed_event("pod_entered", occurred_at=text)

    occurred_at = validate_one(event).occurred_at

    assert occurred_at == expected
    assert occurred_at.tzinfo is UTC
    assert occurred_at.hour == expected.hour


def test_naive_occurred_at_is_refused() -> None:
    """An occurred_at without a zone offset is refused, not guessed."""
    event = seed_event("pod_entered", occurred_at="2024-05-20T12:00:00")

    with pytest.raises(ValidationError) as raised:
        validate_one(event)

    assert raised.value.errors()[0]["loc"][-1] == "occurred_at"


@pytest.mark.parametrize(
    "text",
    [
        "1999-12-31T23:59:59Z",
        "2000-01-01T04:00:00+05:30",
        "2100-01-01T00:00:00Z",
        "2099-12-31T20:00:00-04:00",
        "1970-01-01T00:00:00Z",
        # Times whose offset takes them past what a datetime can hold in UTC.
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:30:00-01:00",
    ],
)
def test_occurred_at_outside_supported_range_is_refused(text: str) -> None:
    """Times before 2000-01-01 or from 2100-01-01 (UTC) on are refused."""
    event = seed_event("pod_entered", occurred_at=text)

    with pytest.raises(ValidationError, match="between 2000-01-01 and 2100-01-01"):
        validate_one(event)


@pytest.mark.parametrize("text", ["2000-01-01T00:00:00Z", "2099-12-31T23:59:59.999Z"])
def test_occurred_at_at_range_edges_is_accepted(text: str) -> None:
    """The first and last instants of the supported range are accepted."""
    event = seed_event("pod_entered", occurred_at=text)

    occurred_at = validate_one(event).occurred_at

    assert occurred_at.isoformat().startswith(text[:19])


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        ("pod_entered", "pod_id", "pod-1"),
        ("pod_entered", "event_id", "42"),
        ("artifact_viewed", "artifact_id", "not-a-uuid"),
        ("artifact_viewed", "pod_id", 12345),
        ("checkout_started", "artifact_ids", [ARTIFACT_ID, "x"]),
        ("sale_completed", "order_id", "order-7"),
    ],
)
def test_ids_must_be_uuids(event_type: str, field: str, value: Any) -> None:
    """Every id field refuses a value that is not a UUID."""
    event = seed_event(event_type, **{field: value})

    with pytest.raises(ValidationError) as raised:
        validate_one(event)

    assert field in raised.value.errors()[0]["loc"]


@pytest.mark.parametrize("artifact_ids", [[], None])
def test_checkout_started_needs_an_artifact(artifact_ids: list[str] | None) -> None:
    """A checkout_started without at least one artifact id is refused."""
    event = seed_event("checkout_started", artifact_ids=artifact_ids)

    with pytest.raises(ValidationError) as raised:
        validate_one(event)

    assert raised.value.errors()[0]["loc"][-1] == "artifact_ids"


def test_checkout_started_without_artifact_ids_is_refused() -> None:
    """A checkout_started missing artifact_ids altogether is refused."""
    event = {"type": "checkout_started", "pod_id": POD_ID}

    with pytest.raises(ValidationError) as raised:
        validate_one(event)

    assert raised.value.errors()[0]["type"] == "missing"


@pytest.mark.parametrize("event", SEED_EVENTS, ids=lambda event: event["type"])
def test_unknown_field_is_refused(event: dict[str, Any]) -> None:
    """A field that the event's type does not define is refused."""
    misspelled = {**event, "visitor_id": POD_ID}

    with pytest.raises(ValidationError) as raised:
        validate_one(misspelled)

    assert raised.value.errors()[0]["type"] == "extra_forbidden"


def test_field_of_another_type_is_refused() -> None:
    """A pod_entered carrying an artifact_id is refused rather than ignored."""
    event = seed_event("pod_entered", artifact_id=ARTIFACT_ID)

    with pytest.raises(ValidationError) as raised:
        validate_one(event)

    assert raised.value.errors()[0]["type"] == "extra_forbidden"


def test_unknown_top_level_field_of_batch_is_refused() -> None:
    """An EventBatch refuses fields other than events."""
    body = {"events": SEED_EVENTS, "gateway": "g-1"}

    with pytest.raises(ValidationError) as raised:
        EventBatch.model_validate(body)

    assert raised.value.errors()[0]["type"] == "extra_forbidden"


def test_event_type_values_equal_the_models_type_literals() -> None:
    """EventType names exactly the type literals of the four event models."""
    literals = [
        value
        for model in EVENT_MODELS
        for value in get_args(model.model_fields["type"].annotation)
    ]

    values = [kind.value for kind in EventType]

    assert len(EVENT_MODELS) == 4
    assert sorted(values) == sorted(literals)
    assert len(set(literals)) == len(literals)


RECEIVED_AT = datetime(2024, 5, 20, 12, 0, 1, tzinfo=UTC)


def _resolved(event: Event) -> Event:
    return event.model_copy(update={"occurred_at": RECEIVED_AT})


@pytest.mark.parametrize("event_type", [kind.value for kind in EventType])
def test_entity_key_is_pod_id_when_present(event_type: str) -> None:
    """An event with a pod is keyed by its pod_id, whatever its type."""
    event = validate_one(seed_event(event_type, event_id=EVENT_ID))
    record = EventRecord(received_at=RECEIVED_AT, event=_resolved(event))

    key = entity_key(record)

    assert key == POD_ID.encode()


@pytest.mark.parametrize(
    "event_type", ["artifact_viewed", "checkout_started", "sale_completed"]
)
def test_entity_key_is_event_id_without_pod(event_type: str) -> None:
    """An event without a pod is keyed by its own event_id."""
    event = seed_event(event_type, event_id=EVENT_ID)
    del event["pod_id"]
    model = validate_one(event)
    record = EventRecord(received_at=RECEIVED_AT, event=_resolved(model))

    key = entity_key(record)

    assert key == EVENT_ID.encode()


def test_event_record_accepts_a_resolved_event() -> None:
    """An event with event_id and occurred_at is a valid EventRecord."""
    received_at = datetime(2024, 5, 20, 12, 0, 1, tzinfo=UTC)
    event = seed_event("pod_entered", event_id=EVENT_ID)

    record = EventRecord.model_validate({"received_at": received_at, "event": event})

    assert record.event.event_id == uuid.UUID(EVENT_ID)
    assert record.event.occurred_at == datetime(2024, 5, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("missing", ["event_id", "occurred_at"])
def test_event_record_refuses_unresolved_event(missing: str) -> None:
    """An EventRecord refuses an event without event_id or occurred_at."""
    event = seed_event("pod_entered", event_id=EVENT_ID)
    del event[missing]
    received_at = datetime(2024, 5, 20, 12, 0, 1, tzinfo=UTC)

    with pytest.raises(ValidationError, match="carries event_id and occurred_at"):
        EventRecord.model_validate({"received_at": received_at, "event": event})


def test_event_record_refuses_naive_received_at() -> None:
    """An EventRecord's received_at must carry a zone offset."""
    event = seed_event("pod_entered", event_id=EVENT_ID)
    received_at = datetime(2024, 5, 20, 12, 0, 1)

    with pytest.raises(ValidationError) as raised:
        EventRecord.model_validate({"received_at": received_at, "event": event})

    assert raised.value.errors()[0]["loc"] == ("received_at",)


def test_event_record_round_trips_through_json() -> None:
    """An EventRecord read back from its JSON equals the record published."""
    record = EventRecord.model_validate(
        {
            "received_at": "2024-05-20T12:00:01Z",
            "event": seed_event(
                "checkout_started",
                event_id=EVENT_ID,
                occurred_at="2024-05-20T14:00:00+02:00",
            ),
        }
    )

    decoded = EventRecord.model_validate_json(record.model_dump_json())

    assert decoded == record
    assert decoded.received_at - decoded.event.occurred_at == timedelta(seconds=1)
