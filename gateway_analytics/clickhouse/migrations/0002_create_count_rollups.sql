-- Rollups: events counted per quarter hour, per entity, per event type. The
-- count endpoints read only these tables; materialized views keep them fed
-- from every insert into analytics_events.
--
-- Why a quarter hour: every time zone in use since 2000 is offset from UTC by
-- a whole number of quarter hours (+05:30, +05:45, -03:30, ...), so a local
-- hour, day or week is always a union of UTC quarter hours and can be summed
-- from these rows exactly, for any zone a query names.
--
-- ORDER BY (bucket, <entity>, type, kafka_partition) serves the unfiltered
-- question, "the newest buckets of every entity": a time range reads only its
-- own granules. The by_<entity> projection re-sorts each part by entity, so a
-- query for a few pods or artifacts reads their rows and nothing else.
--
-- No PARTITION BY, for the same reason as analytics_events: the rows one
-- insert produces land as one part, visible whole or not at all.
--
-- Each row also keeps the Kafka partition its events came from and the
-- lowest and highest offset among them; the stored_offsets projection turns
-- those into "where this rollup started counting, and how far it got". The
-- sink compares them with analytics_events whenever it is assigned
-- partitions and counts what a rollup lacks: rows stored before the views
-- existed (below the first offset counted, even when a live insert was
-- counted before the catch-up ran), or a batch whose rollup part a crash cut
-- off (past the last). Pods cost nothing for it, because every event of a pod
-- lands on the same partition.
--
-- AggregatingMergeTree sums totals and keeps the lowest and highest offset as
-- parts merge; projections are rebuilt on those merges so they stay exact.
CREATE TABLE IF NOT EXISTS pod_counts
(
    bucket          DateTime('UTC'),
    pod_id          UUID,
    type            LowCardinality(String),
    kafka_partition UInt32,
    total           SimpleAggregateFunction(sum, UInt64),
    first_offset    SimpleAggregateFunction(min, UInt64),
    last_offset     SimpleAggregateFunction(max, UInt64),
    PROJECTION by_pod_id
    (
        SELECT *
        ORDER BY pod_id, bucket
    ),
    PROJECTION stored_offsets
    (
        SELECT kafka_partition, min(first_offset), max(last_offset)
        GROUP BY kafka_partition
    )
)
ENGINE = AggregatingMergeTree
ORDER BY (bucket, pod_id, type, kafka_partition)
SETTINGS deduplicate_merge_projection_mode = 'rebuild',
         non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS artifact_counts
(
    bucket          DateTime('UTC'),
    artifact_id     UUID,
    type            LowCardinality(String),
    kafka_partition UInt32,
    total           SimpleAggregateFunction(sum, UInt64),
    first_offset    SimpleAggregateFunction(min, UInt64),
    last_offset     SimpleAggregateFunction(max, UInt64),
    PROJECTION by_artifact_id
    (
        SELECT *
        ORDER BY artifact_id, bucket
    ),
    PROJECTION stored_offsets
    (
        SELECT kafka_partition, min(first_offset), max(last_offset)
        GROUP BY kafka_partition
    )
)
ENGINE = AggregatingMergeTree
ORDER BY (bucket, artifact_id, type, kafka_partition)
SETTINGS deduplicate_merge_projection_mode = 'rebuild',
         non_replicated_deduplication_window = 1000;

-- An event names a pod through pod_id. (An alias named like a column would
-- shadow it in WHERE, so pod_id goes out as it is; the target's cast drops
-- the Nullable.)
CREATE MATERIALIZED VIEW IF NOT EXISTS pod_counts_feed TO pod_counts AS
SELECT
    toDateTime(toStartOfFifteenMinutes(occurred_at), 'UTC') AS bucket,
    pod_id,
    type,
    kafka_partition,
    count() AS total,
    min(kafka_offset) AS first_offset,
    max(kafka_offset) AS last_offset
FROM analytics_events
WHERE pod_id IS NOT NULL
GROUP BY bucket, pod_id, type, kafka_partition;

-- An event names artifacts through artifact_id and the entries of
-- artifact_ids; each distinct artifact it names is counted once.
CREATE MATERIALIZED VIEW IF NOT EXISTS artifact_counts_feed TO artifact_counts AS
SELECT
    toDateTime(toStartOfFifteenMinutes(occurred_at), 'UTC') AS bucket,
    artifact AS artifact_id,
    type,
    kafka_partition,
    count() AS total,
    min(kafka_offset) AS first_offset,
    max(kafka_offset) AS last_offset
FROM analytics_events
ARRAY JOIN arrayDistinct(if(artifact_id IS NULL, artifact_ids,
    arrayPushFront(artifact_ids, assumeNotNull(artifact_id)))) AS artifact
GROUP BY bucket, artifact_id, type, kafka_partition;
