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
    EncodedEvent,
    decode_value,
    encode_events,
    encode_values,
    join_values,
)

__all__ = [
    "EVENT_MODELS",
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
    "join_values",
    "resolve_records",
]
