"""README sections generated from the sources of truth: Pulumi.yaml's config schema, the
port table and the doctor's checks. `python -m mailserver docs` rewrites them; a test fails when they drift."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from mailserver.core import catalog
from mailserver.core.settings import ROOT, schema

README = ROOT / "README.md"


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


SECTIONS = {"config": config_table, "ports": port_table, "doctor": doctor_table}


def render_readme(text: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"README has no <!-- {name}:begin --> ... <!-- {name}:end --> section")
        text = _replace(pattern, text, make())
    return text


def _replace(pattern: re.Pattern[str], text: str, body: str) -> str:
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main(argv: list[str]) -> int:
    current = README.read_text()
    wanted = render_readme(current)
    if "--check" in argv:
        if current != wanted:
            print("README.md is out of date: run python -m mailserver docs", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        Path(README).write_text(wanted)
        print("README.md updated")
    return 0
