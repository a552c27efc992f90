"""Shared test data: the dev stack with known passwords, and helpers to vary it."""

from __future__ import annotations

import email.message
from typing import TYPE_CHECKING, Any

from mailserver import clients
from mailserver.core.settings import ROOT, Secrets, Settings, parse, read_stack_file

if TYPE_CHECKING:
    from mailserver.lab.server import Lab

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


def submit(lab: Lab, port: int, user: str, msg: email.message.EmailMessage) -> None:
    """Send as a logged-in user: 465 with implicit TLS, otherwise STARTTLS first."""
    implicit = port == 465
    with clients.smtp(port, implicit_tls=implicit, ctx=lab.tls()) as conn:
        if not implicit:
            conn.starttls(context=lab.tls())
        conn.login(user, PASSWORDS[user])
        conn.send_message(msg, from_addr=user)


def stored(lab: Lab, address: str, msg_id: str) -> list[bytes]:
    """The copies of a message in a mailbox, once the queue is empty."""
    lab.wait_queue_empty()
    return [p.read_bytes() for p in lab.maildir_files(address) if msg_id.encode() in p.read_bytes()]
