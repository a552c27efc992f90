"""Shared test data for every layer: the dev stack with known passwords, and helpers to vary it."""

from __future__ import annotations

import re
from typing import Any

import yaml

from mailserver.core import hostkey
from mailserver.core.settings import ROOT, Secrets, Settings, SettingsError, parse, read_stack_file

DEV_STACK = ROOT / "Pulumi.dev.yaml"
PASSWORDS = {
    "alice@example.com": "correct horse battery",
    "bob@example.net": "another long password",
}

# The stacks every rendered bundle is checked for: the dev stack and two that take other branches.
STACK_VARIANTS: dict[str, dict[str, Any]] = {
    "dev": {},
    "stream10-x86-no587": {"os": "centos-stream-10", "instanceType": "t3.small", "submission": False},
    # The dev stack relays through SES; this one delivers directly (relay: none).
    "direct": {"relay": "none"},
}


def dev_raw(**overrides: Any) -> dict[str, Any]:
    raw = read_stack_file(DEV_STACK)
    raw["mailboxPasswords"] = [f"{m}:{p}" for m, p in PASSWORDS.items()]
    raw.update(overrides)
    return raw


def dev_settings(**overrides: Any) -> tuple[Settings, Secrets]:
    return parse(dev_raw(**overrides))


def settings_problems(**overrides: Any) -> dict[str, str]:
    """What parse says about the dev stack with `overrides`: key -> "message. Fix: fix". The
    settings must be refused."""
    try:
        dev_settings(**overrides)
    except SettingsError as e:
        return {p.key: f"{p.message}. Fix: {p.fix}" for p in e.problems}
    raise AssertionError(f"settings accepted: {overrides}")


def main_cf_value(main_cf: str, name: str) -> str | None:
    """A parameter's value in main.cf's text as rendered ("name = value" lines), or None."""
    found = re.search(rf"^{name} = (.*)$", main_cf, re.MULTILINE)
    return found.group(1) if found else None


def host_key_fetch_script(user_data: str) -> str:
    """The host-key fetch exactly as user-data ships it: the heredoc of its bootcmd step
    (`python3 - <<'MARKER'`, the script, `MARKER`)."""
    step = next(c for c in yaml.safe_load(user_data)["bootcmd"] if isinstance(c, str) and hostkey.FETCH_MARKER in c)
    first, *body, last = step.rstrip("\n").split("\n")
    assert first == f"python3 - <<'{hostkey.FETCH_MARKER}'" and last == hostkey.FETCH_MARKER, (first, last)
    return "\n".join(body) + "\n"
