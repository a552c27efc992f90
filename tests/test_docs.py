"""The README's generated sections (config reference, port table) match their sources."""

from __future__ import annotations

import yaml

from mailserver import docs
from mailserver.settings import PROJECT_FILE, schema


def test_readme_sections_match_pulumi_yaml_and_port_table() -> None:
    current = docs.README.read_text()
    assert docs.render_readme(current) == current, "run: python -m mailserver docs"


def test_every_config_key_is_documented_in_the_readme() -> None:
    readme = docs.README.read_text()
    for name in schema():
        assert f"| `{name}` |" in readme


def test_every_schema_key_has_type_description_and_a_default_or_is_required() -> None:
    raw = yaml.safe_load(PROJECT_FILE.read_text())["config"]
    for name, spec in raw.items():
        assert spec.get("type") in {"string", "integer", "boolean", "array"}, name
        assert spec.get("description"), name
        if spec["type"] == "array":
            assert spec.get("items", {}).get("type") == "string", name
