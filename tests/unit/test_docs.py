"""The documents' generated sections (config reference, port table, doctor checks) match their
sources, and every command line's --help answers without changing anything."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import yaml

from mailserver import docs
from mailserver.core.settings import PROJECT_FILE, ROOT, schema


def test_generated_sections_match_pulumi_yaml_port_table_and_checks() -> None:
    for path in docs.documents():
        current = path.read_text()
        assert docs.render_document(path, current) == current, "run: python -m mailserver docs"


def test_every_config_key_is_documented() -> None:
    text = docs.CONFIGURATION.read_text()
    for name in schema():
        assert f"| `{name}` |" in text


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
    options = yaml.safe_load(PROJECT_FILE.read_text())["runtime"]["options"]
    pinned = {line.split("==")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    if options.get("typechecker"):
        assert options["typechecker"] in pinned
    assert options["toolchain"] == "pip"
    deploy = docs.README.read_text()
    assert f"python3 -m venv {options['virtualenv']} && {options['virtualenv']}/bin/pip install -r requirements.txt" \
        in deploy


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    import re

    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"(?m)^#+ (.*)$", text)}


def test_links_between_documents_resolve() -> None:
    import re

    for doc in (docs.README, *(ROOT / "docs").glob("*.md")):
        for target, anchor in re.findall(r"\]\(((?!https?:)[^)#]*)(?:#([^)]*))?\)", doc.read_text()):
            path = doc.parent / target if target else doc
            assert path.exists(), f"{doc.name} links to missing {target}"
            if anchor:
                assert anchor in _anchors(path.read_text()), \
                    f"{doc.name} links to {target}#{anchor}, which is no heading"


def _tree_digest() -> str:
    files = sorted(p for p in (ROOT / "docs").glob("*.md")) + [docs.README]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.mark.parametrize("argv", [
    ["-m", "mailserver", "--help"],
    ["-m", "mailserver", "lab", "--help"],
    ["-m", "mailserver", "doctor", "--help"],
    ["-m", "mailserver", "docs", "--help"],
    ["-m", "bench", "--help"],
    ["-m", "mailserver.core.catalog", "--help"],
])
def test_every_command_line_help_exits_0_and_changes_nothing(argv: list[str]) -> None:
    before = _tree_digest()
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage" in proc.stdout.lower()
    assert _tree_digest() == before
