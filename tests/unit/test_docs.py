"""The README's generated sections (config reference, port table) match their sources."""

from __future__ import annotations

import yaml

from mailserver import docs
from mailserver.core.settings import PROJECT_FILE, schema


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


def test_what_pulumi_yaml_asks_of_the_runtime_is_in_the_deploy_requirements() -> None:
    """Pulumi runs the named typechecker from the project's virtualenv before every preview and
    up; the README's deploy step installs requirements.txt alone, so it must be pinned there."""
    from mailserver.core.settings import ROOT

    options = yaml.safe_load(PROJECT_FILE.read_text())["runtime"]["options"]
    pinned = {line.split("==")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    if options.get("typechecker"):
        assert options["typechecker"] in pinned
    assert options["toolchain"] == "pip"
    deploy = docs.README.read_text()
    assert f"python3 -m venv {options['virtualenv']} && {options['virtualenv']}/bin/pip install -r requirements.txt" \
        in deploy
