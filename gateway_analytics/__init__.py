"""Gateway analytics: HTTP ingest, Kafka, ClickHouse and windowed counts."""
