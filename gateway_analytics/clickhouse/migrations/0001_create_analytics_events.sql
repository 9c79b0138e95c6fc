-- One row per event, exactly as the sink agent read it from Kafka.
--
-- PARTITION BY month of occurred_at: a year makes twelve partitions, few
-- enough for ClickHouse to manage and coarse enough that merges stay cheap,
-- and a month of events can be dropped or replaced as one unit.
--
-- ORDER BY (occurred_at, event_id): the count queries bucket by occurred_at,
-- so a query over a time range skips whole granules; event_id last makes the
-- sorting key name one event, so looking an event up by time and id is cheap.
--
-- kafka_partition and kafka_offset record where each row came from, so the
-- table can always be traced back to (and checked against) the topic.
CREATE TABLE IF NOT EXISTS analytics_events
(
    event_id        UUID,
    type            LowCardinality(String),
    pod_id          Nullable(UUID),
    artifact_id     Nullable(UUID),
    artifact_ids    Array(UUID),
    order_id        Nullable(UUID),
    occurred_at     DateTime64(3, 'UTC'),
    received_at     DateTime64(3, 'UTC'),
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
