"""Settings read from the environment: defaults and start-up errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from gateway_analytics.shared.errors import ConfigurationError
from gateway_analytics.shared.settings import ENV_PREFIX, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every ANALYTICS_ variable, so the tests see only their own."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    """Without environment variables every setting has its documented default."""
    expected = {
        "data_dir": Path("data"),
        "kafka_cache_dir": Path(".cache"),
        "http_host": "127.0.0.1",
        "http_port": 8080,
        "worker_http_port": 8081,
        "shutdown_timeout_s": 30.0,
        "ingest_api_keys": SecretStr(""),
        "query_api_keys": SecretStr(""),
        "kafka_bootstrap_servers": "",
        "kafka_topic": "analytics-events",
        "kafka_topic_partitions": 6,
        "kafka_replication_factor": 1,
        "kafka_produce_timeout_s": 10.0,
        "retry_after_s": 5,
        "dead_letter_topic": "analytics-events-dlq",
        "consumer_group": "gateway-analytics-sink",
        "clickhouse_url": "",
        "clickhouse_database": "analytics",
        "sink_batch_size": 50_000,
        "sink_flush_interval_s": 1.0,
        "dedup_window_s": 86_400,
        "max_body_bytes": 4 * 1024 * 1024,
        "max_events_per_request": 1_000,
        "log_level": "INFO",
    }

    settings = load_settings()

    assert settings.model_dump() == expected


def test_environment_variable_sets_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """ANALYTICS_ plus the field name in upper case sets that field."""
    monkeypatch.setenv("ANALYTICS_HTTP_PORT", "9090")
    monkeypatch.setenv("ANALYTICS_KAFKA_TOPIC", "events-test")

    settings = load_settings()

    assert settings.http_port == 9090
    assert settings.kafka_topic == "events-test"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ANALYTICS_HTTP_PORT", "abc"),
        ("ANALYTICS_HTTP_PORT", "70000"),
        ("ANALYTICS_CLICKHOUSE_URL", "ftp://x"),
        ("ANALYTICS_CLICKHOUSE_DATABASE", "analytics; DROP"),
        ("ANALYTICS_KAFKA_TOPIC_PARTITIONS", "0"),
        ("ANALYTICS_SINK_FLUSH_INTERVAL_S", "0"),
        ("ANALYTICS_MAX_BODY_BYTES", "10"),
        ("ANALYTICS_LOG_LEVEL", "TRACE"),
    ],
)
def test_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A bad value raises ConfigurationError naming the environment variable."""
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert f"{name}:" in str(raised.value)
    assert isinstance(raised.value.__cause__, ValidationError)


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several bad variables are all named in one ConfigurationError."""
    monkeypatch.setenv("ANALYTICS_HTTP_PORT", "abc")
    monkeypatch.setenv("ANALYTICS_CLICKHOUSE_URL", "ftp://x")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    message = str(raised.value)
    assert "ANALYTICS_HTTP_PORT" in message
    assert "ANALYTICS_CLICKHOUSE_URL" in message


def test_settings_are_frozen() -> None:
    """Settings cannot be changed once read."""
    settings = load_settings()

    with pytest.raises(ValidationError):
        settings.http_port = 1  # type: ignore[misc]

    assert settings.http_port == 8080


def test_clickhouse_url_defaults_to_chdb_under_data_dir(tmp_path: Path) -> None:
    """Without a URL the embedded engine lives in DATA_DIR/clickhouse."""
    settings = Settings(data_dir=tmp_path)

    url = settings.resolved_clickhouse_url

    assert url == f"chdb://{(tmp_path / 'clickhouse').resolve()}"


def test_default_chdb_path_is_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The default relative data_dir resolves to an absolute chdb:// path."""
    monkeypatch.chdir(tmp_path)

    url = load_settings().resolved_clickhouse_url

    assert url == f"chdb://{tmp_path.resolve() / 'data' / 'clickhouse'}"


@pytest.mark.parametrize(
    "url", ["chdb:///srv/analytics", "http://localhost:8123", "https://ch:8443"]
)
def test_given_clickhouse_url_is_kept(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """A ClickHouse URL that is set is used as given."""
    monkeypatch.setenv("ANALYTICS_CLICKHOUSE_URL", url)

    resolved = load_settings().resolved_clickhouse_url

    assert resolved == url
