"""The event contract: what a gateway may send, and what travels on the topic.

Gateways post :class:`EventBatch` bodies. The API resolves each event's
``event_id`` and ``occurred_at`` and publishes it as an :class:`EventRecord`
(several travel in one Kafka record, see ``topic_values``); the sink agent
decodes the same model.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
)

# Times outside this range are almost always a gateway with a broken clock;
# refusing them keeps such events from landing in buckets nobody looks at.
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_OCCURRED_AT = datetime(2100, 1, 1, tzinfo=UTC)


class EventType(StrEnum):
    """The kinds of event a gateway reports."""

    POD_ENTERED = "pod_entered"
    ARTIFACT_VIEWED = "artifact_viewed"
    CHECKOUT_STARTED = "checkout_started"
    SALE_COMPLETED = "sale_completed"


class _Event(BaseModel):
    """Fields every event may carry.

    They come first in an event's JSON, and every type of event declares
    ``pod_id`` last: the API's encoder finds all three by their place.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID | None = Field(
        default=None,
        description="Identity of the event, chosen by the gateway so that a "
        "retried event can be recognised; assigned by the API when absent.",
    )
    occurred_at: AwareDatetime | None = Field(
        default=None,
        description="When the event happened: RFC 3339 with a zone offset, "
        "stored in UTC. Defaults to the time the API received it.",
    )

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _rfc3339_text(cls, value: object) -> object:
        # Lax parsing would take a number as Unix seconds; the contract
        # promises RFC 3339 text, so a number is refused, not guessed at.
        if isinstance(value, int | float):
            raise ValueError("must be an RFC 3339 time such as 2024-05-20T12:00:00Z")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _in_supported_range(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        # Converted first: two UTC times compare without asking the parsed
        # zone for its offset at each step. A time near year 1 or 9999 whose
        # offset takes it past either end cannot be converted at all.
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            utc = None
        if utc is None or not EARLIEST_OCCURRED_AT <= utc < LATEST_OCCURRED_AT:
            raise ValueError("must be between 2000-01-01 and 2100-01-01 (UTC)")
        return utc


class PodEntered(_Event):
    """A visitor entered a pod."""

    type: Literal["pod_entered"]
    pod_id: UUID


class ArtifactViewed(_Event):
    """A visitor viewed an artifact, in a pod or not."""

    type: Literal["artifact_viewed"]
    artifact_id: UUID
    pod_id: UUID | None = None


class CheckoutStarted(_Event):
    """A visitor started a checkout of one or more artifacts."""

    type: Literal["checkout_started"]
    artifact_ids: list[UUID] = Field(min_length=1)
    pod_id: UUID | None = None


class SaleCompleted(_Event):
    """An order for an artifact was paid."""

    type: Literal["sale_completed"]
    order_id: UUID
    artifact_id: UUID
    pod_id: UUID | None = None


Event = Annotated[
    PodEntered | ArtifactViewed | CheckoutStarted | SaleCompleted,
    Field(discriminator="type"),
]

EVENT_MODELS: tuple[type[_Event], ...] = (
    PodEntered,
    ArtifactViewed,
    CheckoutStarted,
    SaleCompleted,
)

event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
event_list_adapter: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


class EventBatch(BaseModel):
    """The body of ``POST /api/analytics/events``."""

    model_config = ConfigDict(extra="forbid")

    events: list[Event] = Field(min_length=1)


class EventRecord(BaseModel):
    """One event as published to Kafka: identity and time already resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    received_at: AwareDatetime = Field(
        description="When the API received the event, in UTC."
    )
    event: Event

    @field_validator("event")
    @classmethod
    def _resolved(cls, event: _Event) -> _Event:
        if event.event_id is None or event.occurred_at is None:
            raise ValueError("a published event carries event_id and occurred_at")
        return event


def resolve_records(
    events: Sequence[Event], *, received_at: datetime
) -> list[EventRecord]:
    """Give every event its identity and time, as it will be stored."""
    return [
        EventRecord(
            received_at=received_at,
            event=event.model_copy(
                update={
                    "event_id": event.event_id or uuid.uuid4(),
                    "occurred_at": event.occurred_at or received_at,
                }
            ),
        )
        for event in events
    ]


def entity_key(record: EventRecord) -> bytes:
    """The Kafka record key: one pod's events share a partition, in order.

    Events without a pod are spread by their own identity.
    """
    event = record.event
    key = event.pod_id if event.pod_id is not None else event.event_id
    return str(key).encode()
