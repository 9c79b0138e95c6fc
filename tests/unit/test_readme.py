"""The README's configuration table is the settings class, rendered."""

from __future__ import annotations

from pydantic import SecretStr

from gateway_analytics.shared.settings import ENV_PREFIX, Settings
from tests.conftest import REPO_ROOT

START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _rendered_table() -> str:
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        shown = "(empty)" if default == "" else f"`{default}`"
        lines.append(
            f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {field.description} |"
        )
    return "\n".join(lines)


def test_readme_lists_every_setting_with_its_default() -> None:
    """Adding, renaming or re-defaulting a setting fails until the README follows."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")

    documented = readme.split(START)[1].split(END)[0].strip()

    assert documented == _rendered_table(), (
        "README.md's settings table is stale: paste the table this test renders"
    )
