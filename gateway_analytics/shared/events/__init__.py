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

__all__ = [
    "EVENT_MODELS",
    "ArtifactViewed",
    "CheckoutStarted",
    "Event",
    "EventBatch",
    "EventRecord",
    "EventType",
    "PodEntered",
    "SaleCompleted",
    "entity_key",
    "event_adapter",
    "event_list_adapter",
    "resolve_records",
]
