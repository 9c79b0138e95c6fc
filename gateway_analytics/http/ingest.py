"""``POST /api/analytics/events``: validate a batch, publish it, answer 202.

A batch is accepted or refused as a whole: the events reach Kafka only after
every one of them passed the contract, and the 202 is sent only after the
broker acknowledged every record.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import ErrorDetails

from gateway_analytics.http.body import parse_json, read_body
from gateway_analytics.http.problems import Handler, RequestError
from gateway_analytics.shared.errors import PublishError
from gateway_analytics.shared.events import (
    EncodedEvent,
    Event,
    EventBatch,
    EventType,
    encode_events,
    event_list_adapter,
)
from gateway_analytics.shared.metrics import EVENTS_ACCEPTED, EVENTS_REJECTED
from gateway_analytics.shared.publisher import EventPublisher

logger = logging.getLogger(__name__)

_TYPES = ", ".join(kind.value for kind in EventType)
_TAG_MESSAGES = {
    "union_tag_not_found": f"type is required: one of {_TYPES}",
    "union_tag_invalid": f"unknown type; use one of {_TYPES}",
    "extra_forbidden": "unknown field for this type of event; check its spelling",
}


class Accepted(BaseModel):
    """The body of a 202: every event of the batch is on the topic."""

    accepted: int = Field(ge=1, description="How many events were accepted.")
    event_ids: list[uuid.UUID] = Field(
        description="The id of each event, in the order sent: the event_id the "
        "gateway gave, or the one the API assigned."
    )


def read_events(body: bytes, *, max_events: int) -> list[Event]:
    """The events of a request body, validated against the contract.

    A valid body is validated straight from its bytes, in one pass that
    builds no intermediate Python objects; only a refused one is parsed
    again, by :func:`parse_json` and :func:`parse_events`, to say what is
    wrong with it.

    Raises:
        RequestError: 400 listing every problem, or 413 above ``max_events``.
    """
    try:
        events = EventBatch.model_validate_json(body).events
    except ValidationError:
        return parse_events(parse_json(body), max_events=max_events)
    if len(events) > max_events:
        raise _too_many_events(len(events), max_events)
    _refuse_repeated_ids(events)
    return events


def parse_events(payload: Any, *, max_events: int) -> list[Event]:
    """The events of a decoded request body, validated against the contract.

    Raises:
        RequestError: 400 listing every problem, or 413 above ``max_events``.
    """
    if not isinstance(payload, dict):
        raise _invalid_body('The body must be a JSON object: {"events": [...]}.')
    unknown = sorted(set(payload) - {"events"})
    if unknown:
        raise _invalid_body(
            f"Unknown top-level fields {unknown}; the body holds only 'events'."
        )
    raw_events = payload.get("events")
    if not isinstance(raw_events, list):
        raise _invalid_body("'events' is required and must be a list of events.")
    if not raw_events:
        raise _invalid_body("'events' is empty; send at least one event.")
    if len(raw_events) > max_events:
        raise _too_many_events(len(raw_events), max_events)
    try:
        events = event_list_adapter.validate_python(raw_events)
    except ValidationError as error:
        raise _invalid_events([_problem(detail) for detail in error.errors()]) from None
    _refuse_repeated_ids(events)
    return events


def ingest_handler(
    *,
    publisher: EventPublisher,
    max_body_bytes: int,
    max_events: int,
    retry_after_s: int,
) -> Handler:
    """The request handler, bound to its publisher and limits."""

    async def post_events(request: web.Request) -> web.Response:
        received_at = _now_ms()
        body = b""
        try:
            body = await read_body(request, max_body_bytes=max_body_bytes)
            events = read_events(body, max_events=max_events)
            encoded = encode_events(events, received_at=received_at)
            await _publish(publisher, encoded, retry_after_s=retry_after_s)
        except RequestError as error:
            EVENTS_REJECTED.labels(error.code).inc(_event_count(body))
            raise
        EVENTS_ACCEPTED.inc(len(encoded))
        # The ids are the encoder's own UUID text; validating them again
        # would only parse what was just written.
        answer = Accepted.model_construct(
            accepted=len(encoded), event_ids=[event.event_id for event in encoded]
        )
        return web.Response(
            body=answer.model_dump_json(warnings=False),
            status=202,
            content_type="application/json",
        )

    return post_events


async def _publish(
    publisher: EventPublisher, events: list[EncodedEvent], *, retry_after_s: int
) -> None:
    try:
        await publisher.publish(events)
    except PublishError as error:
        logger.warning("Refused %d events with 503: %s", len(events), error)
        raise RequestError(
            503,
            "kafka_unavailable",
            "Kafka did not confirm the events as durable; send the batch "
            f"again after {retry_after_s} s, with event_id values so a "
            "retry can be told from a new event.",
            headers={"Retry-After": str(retry_after_s)},
        ) from error


def _event_count(body: bytes) -> int:
    """Events in a refused body; one when its events could not be read."""
    try:
        payload = parse_json(body)
    except RequestError:
        return 1
    if isinstance(payload, dict) and isinstance(payload.get("events"), list):
        return max(len(payload["events"]), 1)
    return 1


def _problem(detail: ErrorDetails) -> dict[str, Any]:
    index, *rest = detail["loc"]
    message = _TAG_MESSAGES.get(detail["type"], detail["msg"])
    if detail["type"] in _TAG_MESSAGES and not rest:
        field_path = ["type"]
    else:
        # A discriminated union puts the event's type name into the location;
        # the client's path starts after it. An empty path is the event itself.
        field_path = [str(part) for part in rest[1:]]
    return {"index": index, "path": ".".join(field_path), "message": message}


def _refuse_repeated_ids(events: Sequence[Event]) -> None:
    first_index: dict[uuid.UUID, int] = {}
    problems = []
    for index, event in enumerate(events):
        if event.event_id is None:
            continue
        earlier = first_index.setdefault(event.event_id, index)
        if earlier != index:
            problems.append(
                {
                    "index": index,
                    "path": "event_id",
                    "message": f"repeats the event_id of event {earlier}; "
                    "each event needs its own",
                }
            )
    if problems:
        raise _invalid_events(problems)


def _invalid_events(problems: list[dict[str, Any]]) -> RequestError:
    return RequestError(
        400,
        "invalid_events",
        f"{len(problems)} problem(s) in the events; nothing was accepted. "
        "Fix them and send the batch again.",
        problems=problems,
    )


def _too_many_events(count: int, max_events: int) -> RequestError:
    return RequestError(
        413,
        "too_many_events",
        f"{count} events in one request; send at most {max_events}.",
    )


def _invalid_body(message: str) -> RequestError:
    return RequestError(400, "invalid_body", message)


def _now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
