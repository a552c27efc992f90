"""DKIM in the lab: mail our users submit is signed by OpenDKIM, and dkimpy (an independent
verifier) accepts the signature against exactly the TXT content the program publishes."""

from __future__ import annotations

import email

import dkim
import pytest

from mailserver import clients
from mailserver.lab.server import Lab
from tests.lab.support import published_dns, stored, submit

ALICE, BOB = "alice@example.com", "bob@example.net"


def fetch(lab: Lab, rcpt: str, msg_id: str) -> bytes:
    [raw] = stored(lab, rcpt, msg_id)
    return raw


@pytest.mark.parametrize("port,user,rcpt", [(587, ALICE, BOB), (465, BOB, ALICE)])
def test_submitted_mail_is_signed_and_verifies(lab: Lab, port: int, user: str, rcpt: str) -> None:
    msg = clients.message(user, [rcpt], f"signed via {port}")
    submit(lab, port, user, msg)
    raw = fetch(lab, rcpt, msg["Message-ID"])
    sig = email.message_from_bytes(raw)["DKIM-Signature"]
    assert sig is not None
    tags = dict(t.strip().split("=", 1) for t in sig.replace("\r\n", "").replace("\n", "").split(";") if "=" in t)
    assert tags["d"].strip() == user.split("@")[1]
    assert tags["s"].strip() == lab.settings.dkim_selector
    dns = published_dns(lab)
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: dns.get(name, b""))


def test_signature_fails_against_another_domains_key(lab: Lab) -> None:
    msg = clients.message(ALICE, [BOB], "wrong key check")
    submit(lab, 587, ALICE, msg)
    raw = fetch(lab, BOB, msg["Message-ID"])
    dns = published_dns(lab)
    other = dns[f"{lab.settings.dkim_selector}._domainkey.example.net.".encode()]
    assert not dkim.verify(raw, dnsfunc=lambda name, timeout=5: other)


def test_from_domain_without_a_key_is_not_signed(lab: Lab) -> None:
    msg = clients.message("someone@unconfigured.example", [BOB], "no key for this domain")
    submit(lab, 587, ALICE, msg)  # envelope alice (allowed), From header another domain
    raw = fetch(lab, BOB, msg["Message-ID"])
    assert email.message_from_bytes(raw)["DKIM-Signature"] is None


def test_inbound_mail_from_outside_is_not_signed(lab: Lab) -> None:
    msg = clients.message(ALICE, [BOB], "spoofed from outside")
    with clients.smtp(25) as conn:
        conn.ehlo("mx.outside.example")
        conn.send_message(msg, from_addr="someone@outside.example")
    raw = fetch(lab, BOB, msg["Message-ID"])
    assert email.message_from_bytes(raw)["DKIM-Signature"] is None
