"""Versioned SQL migrations: reading the files and splitting their statements."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_analytics.clickhouse.migrations import (
    MIGRATIONS_DIR,
    load_migrations,
    split_statements,
)


def test_split_statements_splits_at_semicolons() -> None:
    """Statements separated by semicolons come back one by one, stripped."""
    sql = "CREATE TABLE a (x UInt8) ENGINE = Memory;\n\nDROP TABLE b ;\n"

    statements = split_statements(sql)

    assert statements == ("CREATE TABLE a (x UInt8) ENGINE = Memory", "DROP TABLE b")


def test_split_statements_drops_comment_lines() -> None:
    """Lines starting with --, indented or not, are left out."""
    sql = (
        "-- the table; with a semicolon in the comment\n"
        "CREATE TABLE a\n"
        "    -- why x is small\n"
        "(x UInt8)\n"
        "ENGINE = Memory;\n"
        "-- trailing comment\n"
    )

    statements = split_statements(sql)

    assert statements == ("CREATE TABLE a\n(x UInt8)\nENGINE = Memory",)


@pytest.mark.parametrize("sql", ["", "   \n", ";;\n;", "-- only a comment\n"])
def test_split_statements_without_code_is_empty(sql: str) -> None:
    """Text holding no statement gives no statements."""
    statements = split_statements(sql)

    assert statements == ()


def test_last_statement_needs_no_semicolon() -> None:
    """A final statement without a semicolon is kept."""
    sql = "SELECT 1;\nSELECT 2"

    statements = split_statements(sql)

    assert statements == ("SELECT 1", "SELECT 2")


def test_shipped_migrations_are_numbered_from_1_without_gaps() -> None:
    """The shipped migrations have versions 1, 2, ... in ascending order."""
    migrations = load_migrations()

    versions = [migration.version for migration in migrations]

    assert versions == list(range(1, len(migrations) + 1))
    assert versions


def test_shipped_migrations_all_have_statements() -> None:
    """Every shipped migration holds at least one statement and no comment."""
    migrations = load_migrations()

    statements = [migration.statements for migration in migrations]

    assert all(statements)
    assert not any("--" in s for group in statements for s in group)


def test_shipped_statements_are_idempotent() -> None:
    """Every shipped statement uses IF NOT EXISTS, so a rerun does no harm."""
    migrations = load_migrations()

    statements = [s for migration in migrations for s in migration.statements]

    assert all("IF NOT EXISTS" in statement.upper() for statement in statements)


def test_first_migration_creates_the_events_table() -> None:
    """Version 1 creates analytics_events."""
    first = load_migrations(MIGRATIONS_DIR)[0]

    statement = first.statements[0]

    assert first.name == "create_analytics_events"
    assert statement.startswith("CREATE TABLE IF NOT EXISTS analytics_events")


def test_load_migrations_orders_by_version(tmp_path: Path) -> None:
    """Migrations are returned in version order, whatever the listing order."""
    for name in ("0010_ten.sql", "0002_two.sql", "0001_one.sql"):
        (tmp_path / name).write_text("SELECT 1;", encoding="utf-8")

    migrations = load_migrations(tmp_path)

    assert [(m.version, m.name) for m in migrations] == [
        (1, "one"),
        (2, "two"),
        (10, "ten"),
    ]


@pytest.mark.parametrize(
    "name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "0001_.sql"]
)
def test_badly_named_migration_is_refused(tmp_path: Path, name: str) -> None:
    """A .sql file not named NNNN_name.sql raises ValueError naming it."""
    (tmp_path / name).write_text("SELECT 1;", encoding="utf-8")

    with pytest.raises(ValueError, match=r"is not NNNN_name\.sql") as raised:
        load_migrations(tmp_path)

    assert name in str(raised.value)
