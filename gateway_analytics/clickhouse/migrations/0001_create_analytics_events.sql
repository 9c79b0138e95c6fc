-- One row per event, exactly as the sink agent read it from Kafka.
--
-- No PARTITION BY: an insert of one batch then writes exactly one part, and
-- a part becomes visible whole or not at all. With monthly partitions a batch
-- spanning two months would be two parts, and a crash between them would
-- leave half a batch stored, which the sink's resume point could not see.
--
-- ORDER BY (occurred_at, event_id): the count queries bucket by occurred_at,
-- so a query over a time range skips whole granules.
--
-- Two projections live inside every part, so they are exactly as current as
-- the rows and travel with the table when a replay swaps it in:
--   by_event_id     sorted by event_id, so the sink can ask cheaply whether a
--                   retried event is already stored;
--   stored_offsets  the highest Kafka offset per partition, where the sink
--                   resumes after a crash or a rebalance.
--
-- non_replicated_deduplication_window lets a retried insert carry the same
-- deduplication token and be dropped if its first attempt did land.
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
    kafka_offset    UInt64,
    PROJECTION by_event_id
    (
        SELECT event_id, received_at
        ORDER BY event_id
    ),
    PROJECTION stored_offsets
    (
        SELECT kafka_partition, max(kafka_offset)
        GROUP BY kafka_partition
    )
)
ENGINE = MergeTree
ORDER BY (occurred_at, event_id)
SETTINGS non_replicated_deduplication_window = 1000
