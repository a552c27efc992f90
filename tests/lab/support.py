"""What the lab tests share: sending as a user, finding what was stored, and the DKIM records
a resolver would answer."""

from __future__ import annotations

import email.message

from mailserver import clients
from mailserver.core import records
from mailserver.lab.server import Lab, public_key_pem
from tests.support import PASSWORDS


def submit(lab: Lab, port: int, user: str, msg: email.message.EmailMessage, to: list[str] | None = None) -> None:
    """Send as a logged-in user: 465 with implicit TLS, otherwise STARTTLS first. The envelope's
    recipients are `to`, or else the message's To, Cc and Bcc."""
    implicit = port == 465
    with clients.smtp(port, implicit_tls=implicit, ctx=lab.tls()) as conn:
        if not implicit:
            conn.starttls(context=lab.tls())
        conn.login(user, PASSWORDS[user])
        conn.send_message(msg, from_addr=user, to_addrs=to)


def stored(lab: Lab, address: str, msg_id: str) -> list[bytes]:
    """The copies of a message in a mailbox, once the queue is empty."""
    lab.wait_queue_empty()
    return [p.read_bytes() for p in lab.maildir_files(address) if msg_id.encode() in p.read_bytes()]


def published_dns(lab: Lab) -> dict[bytes, bytes]:
    """What a resolver would answer for each DKIM name: the record content the program
    creates in Cloudflare (quoted, split), joined back as a resolver does."""
    out = {}
    for domain, key in lab.dkim_keys.items():
        content = records.txt(records.dkim(public_key_pem(key)))
        out[f"{records.dkim_name(lab.settings.dkim_selector, domain)}.".encode()] = records.untxt(content).encode()
    return out
