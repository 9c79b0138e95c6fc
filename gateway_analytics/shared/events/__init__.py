"""The event contract shared by the API, the sink agent and the gateways."""

from gateway_analytics.shared.events.models import (
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
    event_adapter,
    event_list_adapter,
    resolve_records,
)
from gateway_analytics.shared.events.topic_values import (
    FRESH_EVENTS_HEADER,
    EncodedEvent,
    decode_value,
    encode_events,
    encode_values,
    fresh_events,
    join_values,
)

__all__ = [
    "EVENT_MODELS",
    "FRESH_EVENTS_HEADER",
    "ArtifactViewed",
    "CheckoutStarted",
    "EncodedEvent",
    "Event",
    "EventBatch",
    "EventRecord",
    "EventType",
    "PodEntered",
    "SaleCompleted",
    "decode_value",
    "encode_events",
    "encode_values",
    "entity_key",
    "event_adapter",
    "event_list_adapter",
    "fresh_events",
    "join_values",
    "resolve_records",
]
