"""Prometheus metrics of the API and the sink, served at ``GET /metrics``.

Metrics live in the default registry, so a process that runs both halves
(``run``) reports both on one page.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

_LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)

HTTP_REQUESTS = Counter(
    "analytics_http_requests_total",
    "HTTP requests answered, by route and status.",
    ["route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "analytics_http_request_seconds",
    "Time to answer an HTTP request, by route.",
    ["route"],
    buckets=_LATENCY_BUCKETS_S,
)
EVENTS_ACCEPTED = Counter(
    "analytics_events_accepted_total", "Events acknowledged with 202."
)
EVENTS_REJECTED = Counter(
    "analytics_events_rejected_total",
    "Events in refused requests, by the error code of the refusal.",
    ["reason"],
)
KAFKA_PRODUCE_SECONDS = Histogram(
    "analytics_kafka_produce_seconds",
    "Time for Kafka to acknowledge every record of one request.",
    buckets=_LATENCY_BUCKETS_S,
)
SINK_BATCH_EVENTS = Histogram(
    "analytics_sink_batch_events",
    "Events per insert into ClickHouse.",
    buckets=(1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000),
)
SINK_INSERT_SECONDS = Histogram(
    "analytics_sink_insert_seconds",
    "Time of one batch insert into ClickHouse.",
    buckets=_LATENCY_BUCKETS_S,
)
SINK_EVENTS = Counter(
    "analytics_sink_events_total",
    "Consumed records by outcome: stored, duplicate or dead_letter.",
    ["outcome"],
)
SINK_RETRIES = Counter(
    "analytics_sink_retries_total",
    "Failed attempts of the sink that it retried, by what failed.",
    ["operation"],
)
CONSUMER_LAG = Gauge(
    "analytics_consumer_lag_records",
    "Records on a partition of the events topic not yet consumed by this sink.",
    ["partition"],
)


def render() -> tuple[bytes, str]:
    """The metrics page and its content type."""
    return _generate_latest(), CONTENT_TYPE_LATEST
