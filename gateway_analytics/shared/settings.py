"""Settings of every process, read once from the environment.

Every field is read from an environment variable named ``ANALYTICS_`` plus the
field name in upper case (``kafka_topic`` is ``ANALYTICS_KAFKA_TOPIC``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway_analytics.shared.errors import ConfigurationError

ENV_PREFIX = "ANALYTICS_"


class Settings(BaseSettings):
    """The configuration of the API, the sink agent and the local launcher."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    data_dir: Path = Field(
        default=Path("data"),
        description="Folder for the embedded ClickHouse data, the local Kafka "
        "broker's log and the agent's state.",
    )
    kafka_cache_dir: Path = Field(
        default=Path(".cache"),
        description="Folder the local Kafka broker's jars are fetched into.",
    )
    http_host: str = Field(
        default="127.0.0.1", description="Address the API listens on."
    )
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="Port the API listens on."
    )
    worker_http_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="Port of /healthz, /readyz and /metrics when `worker` runs "
        "alone (the API serves them itself).",
    )
    shutdown_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="On SIGTERM, how long in-flight requests may take to finish.",
    )
    ingest_api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Comma-separated keys for POST /api/analytics/events. Empty: "
        "no key needed.",
    )
    query_api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Comma-separated keys for the count endpoints. Empty: no key "
        "needed.",
    )
    kafka_bootstrap_servers: str = Field(
        default="",
        description="Kafka brokers as host:port[,host:port]. Empty: `run` starts "
        "a local single-node broker and uses it; `api` and `worker` require it.",
    )
    kafka_topic: str = Field(
        default="analytics-events", description="Topic the events are published to."
    )
    kafka_topic_partitions: int = Field(
        default=6,
        ge=1,
        description="Partitions of the events topic when it is created; they bound "
        "the number of sink workers.",
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor of the topic when created."
    )
    kafka_produce_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long a POST waits for Kafka to acknowledge its events "
        "before it answers 503.",
    )
    retry_after_s: int = Field(
        default=5,
        ge=1,
        description="Seconds a client is told to wait (Retry-After) when Kafka or "
        "ClickHouse cannot serve its request (503).",
    )
    dead_letter_topic: str = Field(
        default="analytics-events-dlq",
        description="Topic that receives records the sink cannot decode, with "
        "the reason and their original position in headers.",
    )
    consumer_group: str = Field(
        default="gateway-analytics-sink",
        description="Kafka consumer group of the sink agents.",
    )
    clickhouse_url: str = Field(
        default="",
        description="ClickHouse to use: chdb:///absolute/dir for the embedded "
        "engine, http(s)://user:password@host:8123 for a server. Empty: the "
        "embedded engine under DATA_DIR/clickhouse.",
    )
    clickhouse_database: str = Field(
        default="analytics",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Database holding the tables; created when missing.",
    )
    sink_batch_size: int = Field(
        # Each insert makes a part in the events table and in each rollup;
        # at 10,000 events those parts' fixed cost was half the insert time.
        default=50_000,
        ge=1,
        # Larger batches could be split into several parts by ClickHouse,
        # and a batch must land as one part to be all-or-nothing.
        le=1_000_000,
        description="Most events the agent inserts into ClickHouse in one insert.",
    )
    sink_flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Longest time an event waits in the agent before its batch "
        "is inserted.",
    )
    dedup_window_s: int = Field(
        default=24 * 3600,
        ge=0,
        description="An event whose event_id was already stored within this many "
        "seconds of its own receipt is dropped as a retry; further apart, both "
        "are counted.",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted, after gzip decompression.",
    )
    max_events_per_request: int = Field(
        default=1_000, ge=1, description="Most events accepted in one POST."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Level of the service's own log lines."
    )

    @field_validator("clickhouse_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url and not url.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return url

    @property
    def resolved_clickhouse_url(self) -> str:
        """The ClickHouse URL, with the embedded default filled in."""
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"


def load_settings() -> Settings:
    """Read the settings from the environment.

    Raises:
        ConfigurationError: a variable holds a value that is not allowed; the
            message names the variable and what it accepts.
    """
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{ENV_PREFIX}{str(issue['loc'][0]).upper()}: {issue['msg']}"
            for issue in error.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from error
