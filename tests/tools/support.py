"""What the tools tests share."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """A tool's result, output as text; a failure is for the test to judge."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def shellcheck(scripts: Mapping[str, str], directory: Path) -> subprocess.CompletedProcess[str]:
    """shellcheck (bash, every severity down to style) on the bundle's scripts, written to `directory`."""
    paths = []
    for name, text in scripts.items():
        path = directory / name
        path.write_text(text)
        paths.append(str(path))
    return run(["shellcheck", "--shell=bash", "--severity=style", *paths])


def standin_host(directory: Path, standins: Mapping[str, str]) -> Path:
    """A stand-in EL host under `directory`: the `standins` (name -> script) as executables in
    bin/, to put first on PATH, and an empty installed/ for the stand-in package manager."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    for name, text in standins.items():
        p = bin_dir / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    (directory / "installed").mkdir()
    return directory
