"""Validation of ``POST /api/analytics/events`` bodies, before anything is sent."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway_analytics.http.body import parse_json
from gateway_analytics.http.ingest import read_events
from gateway_analytics.http.problems import RequestError
from gateway_analytics.shared.events import Event, EventType, resolve_records

POD_ID = "a7fcb4fe-5f07-4e20-9af5-15e617c901c6"
ARTIFACT_ID = "6b7ccf45-2a29-4c78-8b21-2d3f1ad97f77"
EVENT_ID = "0b3d4c1e-8f52-4a7b-9c1d-2e6f7a8b9c0d"
RECEIVED_AT = datetime(2024, 5, 20, 12, 0, 0, 123000, tzinfo=UTC)
MAX_EVENTS = 10


def pod_entered(**changes: Any) -> dict[str, Any]:
    """A valid pod_entered event, with ``changes`` applied."""
    return {"type": "pod_entered", "pod_id": POD_ID, **changes}


def accepted(payload: Any) -> list[Event]:
    """The events read from ``payload`` sent as a JSON body."""
    return read_events(json.dumps(payload).encode(), max_events=MAX_EVENTS)


def response_body(error: RequestError) -> dict[str, Any]:
    """The decoded JSON body of the error's response."""
    body = error.response.body
    assert isinstance(body, bytes)
    decoded: dict[str, Any] = json.loads(body)
    return decoded


def refusal(payload: Any, *, max_events: int = MAX_EVENTS) -> RequestError:
    """The RequestError that reading ``payload`` as a JSON body raises."""
    return refusal_of_body(json.dumps(payload).encode(), max_events=max_events)


def refusal_of_body(body: bytes, *, max_events: int = MAX_EVENTS) -> RequestError:
    """The RequestError that reading ``body`` raises."""
    with pytest.raises(RequestError) as raised:
        read_events(body, max_events=max_events)
    return raised.value


def problems_of(payload: Any) -> list[dict[str, Any]]:
    """The problems listed in the 400 answer to ``payload``."""
    error = refusal(payload)
    assert error.response.status == 400
    problems: list[dict[str, Any]] = response_body(error)["problems"]
    return problems


@pytest.mark.parametrize(
    "payload",
    [
        [pod_entered()],
        "events",
        42,
        None,
        {"events": [pod_entered()], "gateway_id": "g-1"},
        {},
        {"event": [pod_entered()]},
        {"events": None},
        {"events": pod_entered()},
        {"events": "[]"},
        {"events": []},
    ],
    ids=[
        "list-body",
        "string-body",
        "number-body",
        "null-body",
        "unknown-top-level-field",
        "empty-object",
        "missing-events",
        "null-events",
        "object-events",
        "string-events",
        "empty-events",
    ],
)
def test_malformed_body_is_refused_with_400(payload: Any) -> None:
    """A body that is not {"events": [one or more]} is answered with 400."""
    error = refusal(payload)

    assert error.response.status == 400
    assert response_body(error)["error"] == "invalid_body"


def test_unknown_top_level_field_is_named() -> None:
    """The 400 for an unknown top-level field names that field."""
    payload = {"events": [pod_entered()], "gateway_id": "g-1"}

    message = response_body(refusal(payload))["message"]

    assert "gateway_id" in message


def test_more_events_than_max_is_refused_with_413() -> None:
    """A batch above max_events is refused with 413, before validation."""
    payload = {"events": [{"type": "nonsense"}] * (MAX_EVENTS + 1)}

    error = refusal(payload)

    assert error.response.status == 413
    assert response_body(error)["error"] == "too_many_events"


def test_more_valid_events_than_max_are_refused_with_413() -> None:
    """A batch above max_events is refused with 413 even when every event is
    valid."""
    payload = {"events": [pod_entered() for _ in range(MAX_EVENTS + 1)]}

    error = refusal(payload)

    assert error.response.status == 413
    assert response_body(error)["error"] == "too_many_events"


def test_exactly_max_events_is_accepted() -> None:
    """A batch of exactly max_events events is accepted."""
    payload = {"events": [pod_entered() for _ in range(MAX_EVENTS)]}

    events = accepted(payload)

    assert len(events) == MAX_EVENTS


def test_valid_batch_keeps_event_order() -> None:
    """A valid batch's events are read in their order."""
    payload = {
        "events": [
            pod_entered(),
            {"type": "artifact_viewed", "artifact_id": ARTIFACT_ID},
        ]
    }

    events = accepted(payload)

    assert [event.type for event in events] == ["pod_entered", "artifact_viewed"]


def test_invalid_events_answer_has_error_code_and_problems() -> None:
    """Invalid events are answered with 400 invalid_events and a problem list."""
    payload = {"events": [{"type": "pod_entered"}]}

    error = refusal(payload)

    body = response_body(error)
    assert error.response.status == 400
    assert body["error"] == "invalid_events"
    assert body["problems"] == [
        {"index": 0, "path": "pod_id", "message": "Field required"}
    ]


def test_invalid_artifact_ids_entry_is_located_by_index() -> None:
    """An invalid entry of artifact_ids has the path artifact_ids.<position>."""
    event = {"type": "checkout_started", "artifact_ids": [ARTIFACT_ID, "nope"]}

    problems = problems_of({"events": [event]})

    assert [(p["index"], p["path"]) for p in problems] == [(0, "artifact_ids.1")]


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ({"pod_id": POD_ID}, "type is required"),
        (pod_entered(type="pod_exited"), "unknown type"),
        (pod_entered(type=None), "type"),
    ],
    ids=["missing", "unknown", "null"],
)
def test_missing_or_unknown_type_has_path_type(
    event: dict[str, Any], words: str
) -> None:
    """A missing or unknown type is reported at the path "type"."""
    payload = {"events": [event]}

    problems = problems_of(payload)

    assert [(p["index"], p["path"]) for p in problems] == [(0, "type")]
    assert words in problems[0]["message"]


def test_unknown_type_message_lists_the_known_types() -> None:
    """The problem for an unknown type names every type the contract knows."""
    payload = {"events": [pod_entered(type="pod_exited")]}

    message = problems_of(payload)[0]["message"]

    assert all(kind.value in message for kind in EventType)


def test_unknown_field_of_an_event_is_reported_at_its_path() -> None:
    """An unknown field of an event is reported at that field's name."""
    payload = {"events": [pod_entered(visitor="v-1")]}

    problems = problems_of(payload)

    assert [(p["index"], p["path"]) for p in problems] == [(0, "visitor")]
    assert "unknown field" in problems[0]["message"]


def test_every_problem_of_every_event_is_listed() -> None:
    """All problems of all events are listed at once, each with its index."""
    payload = {
        "events": [
            pod_entered(),
            {"type": "pod_entered"},
            pod_entered(occurred_at="2024-05-20T12:00:00", pod_id="p-1"),
            {"type": "checkout_started", "artifact_ids": ["x", ARTIFACT_ID, "y"]},
        ]
    }

    problems = problems_of(payload)

    assert sorted((p["index"], p["path"]) for p in problems) == [
        (1, "pod_id"),
        (2, "occurred_at"),
        (2, "pod_id"),
        (3, "artifact_ids.0"),
        (3, "artifact_ids.2"),
    ]
    assert all(set(p) == {"index", "path", "message"} for p in problems)


def test_repeated_event_id_in_one_batch_is_refused() -> None:
    """A batch in which two events share an event_id is refused."""
    payload = {"events": [pod_entered(event_id=EVENT_ID)] * 2}

    problems = problems_of(payload)

    assert [(p["index"], p["path"]) for p in problems] == [(1, "event_id")]
    assert "event 0" in problems[0]["message"]


def test_event_id_repeated_in_another_spelling_is_refused() -> None:
    """The same UUID written in capitals and without hyphens still repeats."""
    other_spelling = EVENT_ID.upper().replace("-", "")
    payload = {
        "events": [
            pod_entered(event_id=EVENT_ID),
            pod_entered(),
            pod_entered(event_id=other_spelling),
        ]
    }

    problems = problems_of(payload)

    assert [(p["index"], p["path"]) for p in problems] == [(2, "event_id")]


def test_events_without_event_id_are_not_repeats() -> None:
    """Several events without event_id in one batch are accepted."""
    payload = {"events": [pod_entered(), pod_entered()]}

    events = accepted(payload)

    assert [event.event_id for event in events] == [None, None]


def test_resolve_records_assigns_distinct_event_ids() -> None:
    """Events without an event_id are each given a new, different UUID."""
    events = accepted({"events": [pod_entered()] * 3})

    records = resolve_records(events, received_at=RECEIVED_AT)

    ids = [record.event.event_id for record in records]
    assert all(isinstance(event_id, uuid.UUID) for event_id in ids)
    assert len(set(ids)) == 3


def test_resolve_records_keeps_given_event_id() -> None:
    """An event_id chosen by the gateway is kept."""
    events = accepted({"events": [pod_entered(event_id=EVENT_ID)]})

    (record,) = resolve_records(events, received_at=RECEIVED_AT)

    assert record.event.event_id == uuid.UUID(EVENT_ID)


def test_resolve_records_uses_received_at_when_occurred_at_is_absent() -> None:
    """An event without occurred_at is dated by the time it was received."""
    events = accepted({"events": [pod_entered()]})

    (record,) = resolve_records(events, received_at=RECEIVED_AT)

    assert record.event.occurred_at == RECEIVED_AT
    assert record.received_at == RECEIVED_AT


def test_resolve_records_keeps_given_occurred_at() -> None:
    """An occurred_at sent by the gateway is kept, in UTC."""
    payload = {"events": [pod_entered(occurred_at="2024-05-20T17:30:00+05:30")]}
    events = accepted(payload)

    (record,) = resolve_records(events, received_at=RECEIVED_AT)

    assert record.event.occurred_at == datetime(2024, 5, 20, 12, 0, tzinfo=UTC)
    assert record.received_at == RECEIVED_AT


def test_resolve_records_keeps_order_and_fields() -> None:
    """Resolved records follow the events' order and keep their fields."""
    payload = {
        "events": [
            {"type": "artifact_viewed", "artifact_id": ARTIFACT_ID},
            pod_entered(),
        ]
    }
    events = accepted(payload)

    records = resolve_records(events, received_at=RECEIVED_AT)

    assert [record.event.type for record in records] == [
        "artifact_viewed",
        "pod_entered",
    ]
    assert records[0].event.model_dump(mode="json")["artifact_id"] == ARTIFACT_ID


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"events": [', "line 1 column 13"),
        (b'{"events": [1,]}', "line 1 column 15"),
        (b'{\n  "events": [\n    1,\n  ]\n}', "line 4 column 3"),
        (b"", "line 1 column 1"),
    ],
    ids=["truncated", "trailing-comma", "multi-line", "empty"],
)
def test_malformed_json_is_refused_with_its_position(body: bytes, where: str) -> None:
    """Malformed JSON is answered with 400 naming the line and column."""
    with pytest.raises(RequestError) as raised:
        parse_json(body)

    error = raised.value
    assert error.response.status == 400
    assert response_body(error)["error"] == "malformed_json"
    assert where in response_body(error)["message"]


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"events": ' + b"[" * 100_000],
    ids=["nested-array", "nested-events"],
)
def test_too_deeply_nested_json_is_refused_with_400(body: bytes) -> None:
    """JSON nested deeper than the parser can follow is answered with 400,
    not an error of the parser's own."""
    error = refusal_of_body(body)

    assert error.response.status == 400
    assert response_body(error)["error"] == "malformed_json"
    assert "too deeply" in response_body(error)["message"]


@pytest.mark.parametrize(
    "body",
    [b'{"events": "\xff"}', '{"events": "é"}'.encode("latin-1")],
    ids=["invalid-start-byte", "latin-1"],
)
def test_non_utf8_body_is_refused_with_400(body: bytes) -> None:
    """A body that is not UTF-8 text is answered with 400 malformed_json."""
    with pytest.raises(RequestError) as raised:
        parse_json(body)

    error = raised.value
    assert error.response.status == 400
    assert response_body(error)["error"] == "malformed_json"
    assert "not UTF-8" in response_body(error)["message"]


def test_well_formed_json_is_decoded() -> None:
    """A well-formed UTF-8 body decodes to its JSON value."""
    body = json.dumps({"events": [pod_entered()]}).encode()

    value = parse_json(body)

    assert value == {"events": [pod_entered()]}
