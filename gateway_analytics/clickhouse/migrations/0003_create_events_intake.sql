-- The intake: how the sink hands ClickHouse a batch as JSON, one row per
-- Kafka record, and ClickHouse unpacks it into analytics_events.
--
-- Each intake row is a Kafka record's partition and offset with the record's
-- event records, exactly as they travel on the topic (an array of
-- {"received_at", "event"} objects). Parsing them here, in ClickHouse, spares
-- the sink building a row per event in Python, which cost more than reading
-- the topic did.
--
-- ENGINE = Null: the intake stores nothing; the view below is fed every
-- inserted block and writes it to analytics_events, so one insert into the
-- intake is still one part of analytics_events (and one of each rollup, whose
-- views read analytics_events). A retried insert carries the same
-- deduplication token, which the sink applies to these dependent tables
-- (deduplicate_blocks_in_dependent_materialized_views), since a Null table
-- keeps no blocks to compare with.
CREATE TABLE IF NOT EXISTS analytics_events_intake
(
    kafka_partition UInt32,
    kafka_offset    UInt64,
    records Array(Tuple(
        received_at DateTime64(3, 'UTC'),
        event Tuple(
            event_id     UUID,
            type         LowCardinality(String),
            pod_id       Nullable(UUID),
            artifact_id  Nullable(UUID),
            artifact_ids Array(UUID),
            order_id     Nullable(UUID),
            occurred_at  DateTime64(3, 'UTC'))))
)
ENGINE = Null;

-- Fields an event type lacks arrive as the tuple's defaults: NULL, or an
-- empty artifact_ids.
CREATE MATERIALIZED VIEW IF NOT EXISTS analytics_events_intake_feed
TO analytics_events AS
SELECT
    record.event.event_id     AS event_id,
    record.event.type         AS type,
    record.event.pod_id       AS pod_id,
    record.event.artifact_id  AS artifact_id,
    record.event.artifact_ids AS artifact_ids,
    record.event.order_id     AS order_id,
    record.event.occurred_at  AS occurred_at,
    record.received_at        AS received_at,
    kafka_partition,
    kafka_offset
FROM analytics_events_intake
ARRAY JOIN records AS record
