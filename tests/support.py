"""Shared test data: the dev stack with known passwords, and helpers to vary it."""

from __future__ import annotations

from typing import Any

from mailserver.settings import ROOT, Secrets, Settings, parse, read_stack_file

DEV_STACK = ROOT / "Pulumi.dev.yaml"
PASSWORDS = {
    "alice@example.com": "correct horse battery",
    "bob@example.net": "another long password",
}


def dev_raw(**overrides: Any) -> dict[str, Any]:
    raw = read_stack_file(DEV_STACK)
    raw["mailboxPasswords"] = [f"{m}:{p}" for m, p in PASSWORDS.items()]
    raw.update(overrides)
    return raw


def dev_settings(**overrides: Any) -> tuple[Settings, Secrets]:
    return parse(dev_raw(**overrides))
