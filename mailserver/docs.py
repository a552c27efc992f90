"""Document sections generated from the sources of truth: Pulumi.yaml's config schema (in
docs/configuration.md), the port table and the checks' faults (README.md) and the doctor's checks
(docs/doctor.md).
`python -m mailserver docs` rewrites them; `--check` only says whether they drifted, and a test
fails when they do."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from mailserver.core import catalog
from mailserver.core.settings import ROOT, schema

README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
DOCTOR = ROOT / "docs" / "doctor.md"
USAGE = """usage: python -m mailserver docs [--check]

Regenerates the generated tables of README.md (ports, checks), docs/configuration.md (settings) and
docs/doctor.md (checks) from their sources. --check changes nothing and exits 1 on drift."""


def config_table() -> str:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for key in schema().values():
        if key.secret:
            default = "secret, required"
        elif not key.has_default:
            default = "required"
        else:
            default = f"`{json.dumps(key.default)}`" if key.type == "array" else f"`{key.default}`"
            if default == "``":
                default = "(empty)"
        desc = key.description.replace("|", "\\|")
        rows.append(f"| `{key.name}` | {key.type} | {default} | {desc} |")
    return "\n".join(rows)


def port_table() -> str:
    rows = ["| port | service | daemon | TLS | login | open to |", "|---|---|---|---|---|---|"]
    for s in catalog.SERVICES:
        tls = {"starttls": "STARTTLS", "implicit": "implicit TLS", "none": "(SSH)"}[s.tls]
        login = "yes" if s.auth else "no"
        who = "adminCidrs only" if s.admin_only else "anyone (IPv4 and IPv6)"
        if s.optional_setting:
            who += f"; off with `{s.optional_setting}: false`"
        rows.append(f"| {s.port} | {s.name} | {s.daemon} | {tls} | {login} | {who} |")
    return "\n".join(rows)


def doctor_table() -> str:
    from mailserver.doctor import check_table

    return check_table()


def fault_table() -> str:
    from mailserver.doctor import CHECKS

    rows = ["| check | what it looks at | it fails on |", "|---|---|---|"]
    rows += [f"| `{c.id}` | {c.title} | {c.fault} |" for c in CHECKS]
    return "\n".join(rows)


# Which generated section lives in which document.
SECTIONS: dict[str, tuple[Path, Callable[[], str]]] = {
    "config": (CONFIGURATION, config_table),
    "ports": (README, port_table),
    "doctor": (DOCTOR, doctor_table),
    "checks": (README, fault_table),
}


def render_document(path: Path, text: str) -> str:
    """`text` (the document at `path`) with each of its generated sections brought up to date."""
    for name, (where, make) in SECTIONS.items():
        if where != path:
            continue
        pattern = re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"{path.name} has no <!-- {name}:begin --> ... <!-- {name}:end --> section")
        text = _replace(pattern, text, make())
    return text


def documents() -> list[Path]:
    return list(dict.fromkeys(where for where, _ in SECTIONS.values()))


def _replace(pattern: re.Pattern[str], text: str, body: str) -> str:
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    stale = [p for p in documents() if render_document(p, p.read_text()) != p.read_text()]
    if "--check" in argv:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run python -m mailserver docs", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(render_document(p, p.read_text()))
        print(f"{p.relative_to(ROOT)} updated")
    return 0
