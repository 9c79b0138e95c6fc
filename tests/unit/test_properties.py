"""Property-based tests: whatever arrives, the contract and the parameters
answer with a value or a 4xx, never an unexpected exception."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_analytics.http.body import parse_json
from gateway_analytics.http.count_parameters import (
    PodCountParameters,
    parse_parameters,
)
from gateway_analytics.http.ingest import parse_events, read_events
from gateway_analytics.http.pagination import MAX_PAGE_SIZE
from gateway_analytics.http.problems import RequestError
from gateway_analytics.shared.events import EventRecord, resolve_records

MAX_EVENTS = 50

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
ids = st.uuids().map(str)
instants = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)
).flatmap(
    lambda moment: st.integers(-14 * 60, 14 * 60).map(
        lambda minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    )
)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["pod_entered", "artifact_viewed", "checkout_started", "sale_completed"]
        )
    )
    event: dict[str, Any] = {"type": kind}
    if kind == "pod_entered" or draw(st.booleans()):
        event["pod_id"] = draw(ids)
    if kind in ("artifact_viewed", "sale_completed"):
        event["artifact_id"] = draw(ids)
    if kind == "sale_completed":
        event["order_id"] = draw(ids)
    if kind == "checkout_started":
        event["artifact_ids"] = draw(st.lists(ids, min_size=1, max_size=4))
    if draw(st.booleans()):
        event["occurred_at"] = draw(instants).isoformat()
    if draw(st.booleans()):
        event["event_id"] = str(uuid.uuid4())
    return event


def _refused_with_4xx(call: Any, *args: Any, **kwargs: Any) -> Any:
    """The call's result, or None when it refused its input with a 4xx."""
    try:
        return call(*args, **kwargs)
    except RequestError as error:
        status = error.status
    assert 400 <= status < 500
    return None


@settings(max_examples=1500)
@given(json_values)
def test_any_json_body_is_events_or_a_4xx(payload: Any) -> None:
    """No JSON value makes the contract raise anything but a 4xx."""
    _refused_with_4xx(parse_events, payload, max_events=MAX_EVENTS)


@settings(max_examples=500)
@given(st.lists(json_values, min_size=1, max_size=5))
def test_any_list_of_events_is_accepted_whole_or_refused_whole(
    events: list[Any],
) -> None:
    """A batch is all valid or refused; an accepted one keeps every event."""
    result = _refused_with_4xx(parse_events, {"events": events}, max_events=MAX_EVENTS)

    assert result is None or len(result) == len(events)


@settings(max_examples=1000)
@given(st.lists(valid_events(), min_size=1, max_size=MAX_EVENTS))
def test_valid_events_are_accepted_and_survive_the_topic(
    events: list[dict[str, Any]],
) -> None:
    """Every event the contract allows is accepted and decodes back unchanged."""
    parsed = parse_events({"events": events}, max_events=MAX_EVENTS)
    records = resolve_records(parsed, received_at=datetime.now(UTC))

    decoded = [EventRecord.model_validate_json(r.model_dump_json()) for r in records]

    assert decoded == records
    for sent, record in zip(events, decoded, strict=True):
        occurred_at = record.event.occurred_at
        assert occurred_at is not None
        assert occurred_at.utcoffset() == timedelta(0)
        if "occurred_at" in sent:
            assert occurred_at == datetime.fromisoformat(sent["occurred_at"])


def _read_or_refused(read: Any) -> Any:
    """The events read, or the status and body of the refusal."""
    try:
        return read()
    except RequestError as error:
        return error.status, error.response.body


@settings(max_examples=500)
@given(
    st.lists(valid_events() | json_values, max_size=6),
    st.dictionaries(st.sampled_from(["events", "other"]), json_values, max_size=1),
)
def test_a_body_read_in_one_pass_gives_what_parsing_it_gives(
    events: list[Any], extra: dict[str, Any]
) -> None:
    """Reading a body straight from its bytes accepts and refuses exactly what
    parsing it first and validating the result does."""
    payload = {"events": events, **extra}
    body = json.dumps(payload).encode()

    read = _read_or_refused(lambda: read_events(body, max_events=5))
    parsed = _read_or_refused(lambda: parse_events(payload, max_events=5))

    assert read == parsed


@settings(max_examples=1000)
@given(st.binary(max_size=200))
def test_any_bytes_are_json_or_a_400(body: bytes) -> None:
    """Malformed bodies get a 400, never an exception of the parser's own."""
    _refused_with_4xx(parse_json, body)


@settings(max_examples=1500)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                *("window", "page", "page_size", "from", "to"),
                *("type", "tz", "pod_id", "other"),
            ]
        ),
        st.text(max_size=25),
    )
)
def test_any_query_parameters_give_a_page_or_a_400(query: dict[str, str]) -> None:
    """Count parameters either parse within bounds or are refused with 400."""
    parameters = _refused_with_4xx(
        lambda q: parse_parameters(PodCountParameters, q), query
    )

    if parameters is not None:
        assert parameters.window.value in ("hour", "day", "week")
        page = parameters.as_page()
        assert page.number >= 1
        assert 1 <= page.size <= MAX_PAGE_SIZE
