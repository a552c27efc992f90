"""A stack's settings file, Pulumi.<stack>.yaml, read without the Pulumi CLI: the lab and the
doctor start from it. Its secrets are encrypted, and only the CLI can decrypt them, so the
mailbox passwords are left out: the lab makes its own (`random_passwords`), and the doctor needs
none."""

from __future__ import annotations

import secrets
from pathlib import Path

from mailserver.core.settings import ROOT, read_stack_file


class StackFileError(RuntimeError):
    """The stack has no settings file."""


def stack_file(stack: str) -> Path:
    return ROOT / f"Pulumi.{stack}.yaml"


def load_stack(stack: str) -> dict[str, object]:
    path = stack_file(stack)
    if not path.exists():
        raise StackFileError(f"no stack file {path}")
    return read_stack_file(path)


def random_passwords(raw: dict[str, object]) -> list[str]:
    """A fresh random password for every mailbox of the raw settings, as mailboxPasswords
    entries: the lab's, printed when it starts."""
    mailboxes = raw.get("mailboxes") or []
    assert isinstance(mailboxes, list)
    return [f"{m}:{secrets.token_urlsafe(12)}" for m in mailboxes]
