"""What the tools tests share."""

from __future__ import annotations

import subprocess


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """A tool's result, output as text; a failure is for the test to judge."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
