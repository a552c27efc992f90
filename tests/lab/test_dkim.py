"""DKIM in the lab: mail our users submit is signed by OpenDKIM, and dkimpy (an independent
verifier) accepts the signature against exactly the TXT content the program publishes, and
refuses it once a field a reader sees was changed or added."""

from __future__ import annotations

import email
import re

import dkim
import pytest

from mailserver import clients
from mailserver.core import catalog
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


# -- what the signature covers (issue 13, point 5) -------------------------------------------
#
# A message carrying every field of catalog.DKIM_SIGNED_HEADERS is submitted on 587; its stored
# copy verifies. Then each field in turn is changed, or a second copy is added above every other
# header (where a mail client may show it: verifiers check the last copy) or below the signed
# ones, and dkimpy must refuse the signature every time.

# What a forger would write instead, one value per signed field.
FORGED = {
    "from": "Alice <alice@example.net>",
    "sender": "mallory@example.net",
    "reply-to": "mallory@example.net",
    "to": "finance@example.net",
    "cc": "everyone@example.net",
    "subject": "Urgent: new bank details",
    "date": "Mon, 1 Jan 2024 09:00:00 +0000",
    "message-id": "<forged@example.net>",
    "in-reply-to": "<earlier@example.net>",
    "references": "<earlier@example.net>",
    "mime-version": "1.0 (forged)",
    "content-type": "text/html; charset=utf-8",
    "content-transfer-encoding": "base64",
}
# The fields a freshly written message has none of, until someone adds them.
OPTIONAL = ("Sender", "Reply-To", "Cc", "In-Reply-To", "References")


def split_header(raw: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each with its folded lines and line ends) and the rest (the blank
    line and the body)."""
    eol = b"\r\n" if b"\r\n" in raw.split(b"\n", 1)[0] + b"\n" else b"\n"
    head, sep, body = raw.partition(eol + eol)
    fields: list[bytes] = []
    for line in head.split(eol):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + eol
        else:
            fields.append(line + eol)
    return fields, eol + body if sep else b""


def field_name(field: bytes) -> str:
    return field.split(b":", 1)[0].decode().strip().lower()


def changed(raw: bytes, name: str, value: str) -> bytes:
    fields, rest = split_header(raw)
    eol = b"\r\n" if fields[0].endswith(b"\r\n") else b"\n"
    assert [f for f in fields if field_name(f) == name.lower()], f"{name} is not in the message"
    new = [f"{name}: {value}".encode() + eol if field_name(f) == name.lower() else f for f in fields]
    return b"".join(new) + rest


def added(raw: bytes, name: str, value: str, on_top: bool) -> bytes:
    fields, rest = split_header(raw)
    eol = b"\r\n" if fields[0].endswith(b"\r\n") else b"\n"
    new = f"{name}: {value}".encode() + eol
    return b"".join([new, *fields] if on_top else [*fields, new]) + rest


def signed_fields(raw: bytes) -> list[str]:
    """The h= tag of the (one) DKIM-Signature: the fields it covers, lower-cased, repeats kept."""
    sig = email.message_from_bytes(raw)["DKIM-Signature"]
    tags = dict(t.strip().split("=", 1) for t in re.sub(r"\s+", "", str(sig)).split(";") if "=" in t)
    return [h.lower() for h in tags["h"].split(":")]


def verifies(lab: Lab, raw: bytes) -> bool:
    dns = published_dns(lab)
    return bool(dkim.verify(raw, dnsfunc=lambda name, timeout=5: dns.get(name, b"")))


@pytest.fixture(scope="module")
def full(lab: Lab) -> bytes:
    """The stored copy of a signed message with every signed field present."""
    msg = clients.message(ALICE, [BOB], "every field a forger would change")
    msg["Sender"] = ALICE
    msg["Reply-To"] = ALICE
    msg["Cc"] = "carol@example.org"
    msg["In-Reply-To"] = "<thread-start@example.com>"
    msg["References"] = "<thread-start@example.com>"
    submit(lab, 587, ALICE, msg, to=[BOB])  # Cc stays a header: nothing goes to example.org
    raw = fetch(lab, BOB, msg["Message-ID"])
    assert {n.lower() for n in catalog.DKIM_SIGNED_HEADERS} <= {field_name(f) for f in split_header(raw)[0]}
    return raw


@pytest.fixture(scope="module")
def plain(lab: Lab) -> bytes:
    """The stored copy of a signed message without any of the optional fields."""
    msg = clients.message(ALICE, [BOB], "no reply-to, no cc")
    submit(lab, 587, ALICE, msg)
    raw = fetch(lab, BOB, msg["Message-ID"])
    assert not {n.lower() for n in OPTIONAL} & {field_name(f) for f in split_header(raw)[0]}
    return raw


def test_every_field_is_signed_and_oversigned(lab: Lab, full: bytes, plain: bytes) -> None:
    assert set(FORGED) == {n.lower() for n in catalog.DKIM_SIGNED_HEADERS}
    assert verifies(lab, full) and verifies(lab, plain)
    for raw in (full, plain):
        present = [field_name(f) for f in split_header(raw)[0]]
        covered = signed_fields(raw)
        for name in (n.lower() for n in catalog.DKIM_SIGNED_HEADERS):
            extra = 1 if name in {n.lower() for n in catalog.DKIM_OVERSIGNED_HEADERS} else 0
            assert covered.count(name) == present.count(name) + extra, (name, covered)


@pytest.mark.parametrize("name", catalog.DKIM_SIGNED_HEADERS)
def test_changing_or_adding_a_signed_field_breaks_the_signature(lab: Lab, full: bytes, name: str) -> None:
    forged = FORGED[name.lower()]
    assert not verifies(lab, changed(full, name, forged)), f"{name} changed"
    if name in catalog.DKIM_OVERSIGNED_HEADERS:
        assert not verifies(lab, added(full, name, forged, on_top=True)), f"a second {name} on top"
        assert not verifies(lab, added(full, name, forged, on_top=False)), f"a second {name} below"


@pytest.mark.parametrize("name", OPTIONAL)
def test_adding_a_field_the_message_lacked_breaks_the_signature(lab: Lab, plain: bytes, name: str) -> None:
    forged = FORGED[name.lower()]
    assert not verifies(lab, added(plain, name, forged, on_top=True))
    assert not verifies(lab, added(plain, name, forged, on_top=False))


def test_without_oversigning_a_second_subject_on_top_would_verify(lab: Lab, full: bytes) -> None:
    """Why oversigning: the same message signed (by dkimpy, with the lab's key) over each field
    once still verifies with a forged Subject added on top, the copy a reader may be shown.
    (dkimpy's verifier counts an extra From by itself, but no other field, and not every
    verifier does.)"""
    fields, rest = split_header(full)
    ours = b"".join(f for f in fields if field_name(f) != "dkim-signature") + rest
    signer = dkim.DKIM(ours, linesep=b"\n")
    signer.frozen_sign = set()  # dkimpy's signer oversigns From unless told not to
    sig = signer.sign(lab.settings.dkim_selector.encode(), b"example.com", lab.dkim_keys["example.com"].encode(),
                      include_headers=[n.encode() for n in catalog.DKIM_SIGNED_HEADERS])
    once = sig + ours
    assert signed_fields(once).count("subject") == 1
    assert verifies(lab, once)
    assert verifies(lab, added(once, "Subject", FORGED["subject"], on_top=True))
    assert not verifies(lab, added(full, "Subject", FORGED["subject"], on_top=True))
