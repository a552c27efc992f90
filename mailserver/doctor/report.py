"""How results are shown: the table (condensed unless --verbose), JSON, and the README's
table of checks."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from mailserver.doctor.checks import CHECK_IDS, CHECKS
from mailserver.doctor.verdicts import STATUSES, Result, exit_code, show, summary

STYLE = {"ok": "green", "warning": "yellow", "error": "bold red", "unknown": "magenta", "skipped": "dim"}


def condensed(results: Sequence[Result]) -> list[Result]:
    """One row for a check whose results are all ok; every row of the others."""
    out: list[Result] = []
    by_check: dict[str, list[Result]] = {}
    for r in results:
        by_check.setdefault(r.check, []).append(r)
    for check, rows in by_check.items():
        if len(rows) > 1 and all(r.status == "ok" for r in rows):
            subjects = ", ".join(r.subject for r in rows)
            out.append(Result(check, "ok", show([subjects], 60), CHECK_IDS[check].title, f"{len(rows)} ok"))
        else:
            out.extend(rows)
    return out


def render_table(results: Sequence[Result], file: Any = None, verbose: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mail server doctor", show_lines=False)
    for col in ("status", "check", "subject", "expected", "found", "fix"):
        table.add_column(col, overflow="fold")
    for r in (results if verbose else condensed(results)):
        table.add_row(f"[{STYLE[r.status]}]{r.status}[/]", r.check, r.subject, r.expected, r.found, r.fix)
    console = Console(file=file or sys.stdout, width=200 if not (file or sys.stdout).isatty() else None)
    console.print(table)
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n))


def as_json(results: Sequence[Result]) -> str:
    return json.dumps({"ok": exit_code(results) == 0, "exit_code": exit_code(results), "summary": summary(results),
                       "results": [r.as_dict() for r in results]}, indent=2)


def check_table() -> str:
    """The README's table of checks."""
    rows = ["| check | category | what it verifies | fix when it fails |", "|---|---|---|---|"]
    for c in CHECKS:
        rows.append(f"| `{c.id}` | {c.category} | {c.verifies} | {c.fix} |".replace("\n", " "))
    return "\n".join(rows)
