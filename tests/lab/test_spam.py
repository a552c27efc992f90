"""The spam filter (rspamd) on real daemons, with a real DNS server (unbound) in the lab's
namespace on the address rspamd asks (catalog.RESOLVER:53): the SPF, DMARC and DKIM records of
our own domains as the program plans them, and those of a few outside domains.

Outside mail comes as another mail server sends it: on port 25, STARTTLS, from an address
outside 127.0.0.0/8 (rspamd counts every loopback address as local and skips SPF, DKIM and
DMARC for it), with the Received header of the sender's own submission server above the
message. That keeps rspamd's "sent straight from a dial-up host" rule (VIOLATED_DIRECT_SPF)
out of the score, so a failing message scores below spamJunkScore on its own and the
decision under test (GTUBE, a DMARC policy, our own composite) is what files or refuses it;
each such test has a control that the same message without that cause is treated otherwise.

One lab and one DNS server for the module; tests that need other settings apply them (an
apply costs seconds) and later tests apply the defaults back if they need them.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import email.utils
import imaplib
import os
import re
import signal
import smtplib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest

from mailserver import clients
from mailserver.core import catalog
from mailserver.lab import netns
from mailserver.lab.server import Lab
from mailserver.waiting import wait_until
from tests.lab.doctor_support import LabDns, own_records
from tests.lab.support import published_dns, submit
from tests.support import PASSWORDS, dev_settings

ALICE, BOB = "alice@example.com", "bob@example.net"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
IMAPS = 993

# Outside mail servers, on the namespace's loopback interface but outside 127.0.0.0/8 (TEST-NET-2,
# RFC 5737): mx.good.example is the one host good.example's SPF lists; the forger's host is
# listed by no SPF record.
GOOD_MX, GOOD_MX_NAME = "198.51.100.25", "mx.good.example"
FORGER, FORGER_NAME = "198.51.100.26", "mx.forger.example"
# Outside domains by their DMARC policy. good.example publishes p=reject, like a bank would:
# its own mail passes anyway. The others list only an address nobody here sends from.
DMARC_POLICIES = {"good.example": "reject", "reject.example": "reject",
                  "quarantine.example": "quarantine", "none.example": "none"}


def outside_records() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {
        GOOD_MX_NAME: [("A", GOOD_MX)],
        FORGER_NAME: [("A", FORGER)],
    }
    for ip, name in ((GOOD_MX, GOOD_MX_NAME), (FORGER, FORGER_NAME)):
        out[".".join(reversed(ip.split("."))) + ".in-addr.arpa"] = [("PTR", name + ".")]
    for domain, policy in DMARC_POLICIES.items():
        listed = GOOD_MX if domain == "good.example" else "192.0.2.99"
        out[domain] = [("TXT", f'"v=spf1 ip4:{listed} -all"'), ("MX", f"10 {GOOD_MX_NAME}.")]
        out[f"_dmarc.{domain}"] = [("TXT", f'"v=DMARC1; p={policy}"')]
    return out


@dataclasses.dataclass
class Env:
    lab: Lab
    dns: LabDns


@pytest.fixture(scope="module")
def running() -> Iterator[Env]:
    settings, secrets = dev_settings()
    with Lab(settings, secrets) as lab, netns.entered(lab.ns):
        for address in (GOOD_MX, FORGER):
            subprocess.run(["ip", "-n", lab.ns, "addr", "add", f"{address}/32", "dev", "lo"], check=True)
        zones = [*settings.domains, *DMARC_POLICIES, "forger.example", "100.51.198.in-addr.arpa"]
        served = {**own_records(settings, lab.dkim_keys), **outside_records()}
        lab_dns = LabDns(lab.ns, lab.root / "dns", zones, served, address=catalog.RESOLVER)
        lab_dns.start()
        try:
            yield Env(lab, lab_dns)
        finally:
            lab_dns.stop()


def settled(env: Env, **overrides: Any) -> Lab:
    """The lab with the dev stack's settings plus `overrides`, applied only if it runs others
    (tests come in any order, and an apply takes seconds), and DNS serving what the program
    would publish for them."""
    settings, secrets = dev_settings(**overrides)
    lab = env.lab
    if lab.settings != settings:
        lab.apply(settings, secrets)
    for name, rrs in own_records(settings, lab.dkim_keys).items():
        if env.dns.records.get(name) != rrs:
            env.dns.set(name, rrs)
    return lab


@pytest.fixture
def lab(running: Env) -> Lab:
    return settled(running)


# -- sending and finding -------------------------------------------------------------------


def outside_message(header_from: str, subject: str, body: str = "", relayed_by: str | None = GOOD_MX_NAME) -> bytes:
    """A message as another organisation's mail server hands it on: the Received header of its
    submission server on top (none with `relayed_by` None: sent straight from the connecting
    host, as spam from hijacked PCs is). Words enough for rspamd's Bayes (it learns nothing from
    fewer than 11 tokens), and a token of its own, so no two messages are the same to the learner."""
    msg = clients.message(header_from, [ALICE], subject,
                          body or f"Hello Alice,\n\nthe minutes of Thursday's meeting about the garden "
                                  f"fence, the budget and the summer party are attached below. Reference "
                                  f"{uuid.uuid4().hex}.\n\nKind regards\n")
    received = (f"Received: from laptop.internal ([10.1.2.3]) by {relayed_by} with ESMTPSA;\r\n"
                f"\t{email.utils.formatdate()}\r\n") if relayed_by else ""
    return received.encode() + msg.as_bytes(policy=email.policy.SMTP)


def send_outside(raw: bytes, mail_from: str, source: str = GOOD_MX, helo: str = GOOD_MX_NAME,
                 rcpt: str = ALICE) -> tuple[int, str]:
    """Deliver on port 25 as an outside server: STARTTLS, then the transaction. The reply that
    decides: the first refusal (at MAIL, RCPT or after the data), or the final 250."""
    with clients.smtp(catalog.SMTP_PORT, source=source) as conn:
        conn.ehlo(helo)
        try:
            conn.starttls(context=clients.tls_context())
        except smtplib.SMTPResponseException as e:  # a server refusing everything refuses this too
            return e.smtp_code, reply_text(e.smtp_error)
        conn.ehlo(helo)
        for code, text in (conn.mail(mail_from), conn.rcpt(rcpt)):
            if code >= 400:
                return code, text.decode()
        try:
            code, text = conn.data(raw)
        except smtplib.SMTPDataError as e:  # refused at DATA itself
            return e.smtp_code, reply_text(e.smtp_error)
        return code, text.decode()


def reply_text(text: bytes | str) -> str:
    return text.decode() if isinstance(text, bytes) else text


def message_id(raw: bytes) -> str:
    found = email.message_from_bytes(raw)["Message-ID"]
    assert found
    return str(found)


def folder_files(lab: Lab, address: str, folder: str) -> list[Path]:
    local, domain = address.split("@")
    base = Path(lab.layout.vmail_dir) / domain / local / "Maildir"
    if folder != "INBOX":
        base /= f".{folder}"
    return [p for sub in ("new", "cur") for p in (base / sub).glob("*") if p.is_file()]


def where(lab: Lab, msg_id: str, address: str = ALICE) -> dict[str, list[bytes]]:
    """Once the queue is empty: the folders holding the message, with each copy."""
    lab.wait_queue_empty()
    found: dict[str, list[bytes]] = {}
    for folder in ("INBOX", "Junk", "Trash"):
        copies = [p.read_bytes() for p in folder_files(lab, address, folder)]
        if copies := [c for c in copies if msg_id.encode() in c]:
            found[folder] = copies
    return found


def auth_results(raw: bytes) -> str:
    """The Authentication-Results header rspamd wrote, unfolded."""
    headers = email.message_from_bytes(raw).get_all("Authentication-Results") or []
    assert len(headers) == 1, headers
    return " ".join(str(headers[0]).split())


# -- GTUBE, DMARC policies -------------------------------------------------------------------


def test_gtube_is_refused_at_smtp_and_not_stored(lab: Lab) -> None:
    raw = outside_message("someone@good.example", "GTUBE", f"{GTUBE}\n")
    code, text = send_outside(raw, "someone@good.example")
    assert code == 554, text
    assert where(lab, message_id(raw)) == {}
    # The control: the same sender's message without the pattern is taken.
    ordinary = outside_message("someone@good.example", "no pattern")
    assert send_outside(ordinary, "someone@good.example")[0] == 250
    assert list(where(lab, message_id(ordinary))) == ["INBOX"]


def test_ordinary_mail_reaches_inbox_with_spf_and_dmarc_pass(lab: Lab) -> None:
    raw = outside_message("Carol <carol@good.example>", "ordinary mail")
    code, text = send_outside(raw, "carol@good.example")
    assert code == 250, text
    found = where(lab, message_id(raw))
    assert list(found) == ["INBOX"]
    [stored] = found["INBOX"]
    results = auth_results(stored)
    assert results.startswith(f"{lab.settings.hostname};"), results
    assert re.search(rf"\bspf=pass \(.*designates {re.escape(GOOD_MX)} as permitted sender\) "
                     r"smtp\.mailfrom=carol@good\.example", results), results
    assert re.search(r"\bdmarc=pass \(policy=reject\) header\.from=good\.example", results), results
    assert email.message_from_bytes(stored)["X-Spam"] is None


def test_dmarc_reject_domain_failing_mail_is_refused(lab: Lab) -> None:
    """reject.example's SPF lists another host and the message is unsigned: DMARC fails, and
    p=reject refuses it at SMTP, though its score is far below spamRejectScore. The same
    message from a p=none domain is taken: the policy, not the score, refused it."""
    raw = outside_message("billing@reject.example", "invoice", relayed_by=FORGER_NAME)
    code, text = send_outside(raw, "billing@reject.example", source=FORGER, helo=FORGER_NAME)
    assert code // 100 == 5, (code, text)
    assert where(lab, message_id(raw)) == {}
    control = outside_message("billing@none.example", "invoice", relayed_by=FORGER_NAME)
    code, text = send_outside(control, "billing@none.example", source=FORGER, helo=FORGER_NAME)
    assert code == 250, text
    assert where(lab, message_id(control))


def test_dmarc_quarantine_domain_failing_mail_is_filed_into_junk(lab: Lab) -> None:
    raw = outside_message("news@quarantine.example", "newsletter", relayed_by=FORGER_NAME)
    code, text = send_outside(raw, "news@quarantine.example", source=FORGER, helo=FORGER_NAME)
    assert code == 250, text
    found = where(lab, message_id(raw))
    assert list(found) == ["Junk"]
    assert "dmarc=fail" in auth_results(found["Junk"][0])
    # The control: the same failing message from a p=none domain stays in INBOX. Failing DMARC
    # scores little (the first scored below spamJunkScore too): the policy's action filed it.
    control = outside_message("news@none.example", "newsletter", relayed_by=FORGER_NAME)
    assert send_outside(control, "news@none.example", source=FORGER, helo=FORGER_NAME)[0] == 250
    assert list(where(lab, message_id(control))) == ["INBOX"]


# -- learning from what users move -----------------------------------------------------------


def learned(lab: Lab) -> dict[str, int]:
    """How many messages rspamd has learned as spam and as ham: the counters its Bayes
    classifier keeps in the key-value store and reads before each scan (it uses Bayes from 200
    of each on). `rspamc stat` shows the same numbers, but from a copy it refreshes on a timer:
    seconds after a learning it still showed the old count."""
    host, port = catalog.KV_ADDRESS
    out = lab.run(["redis-cli", "-h", host, "-p", str(port), "HMGET", "RS", "learns_spam", "learns_ham"]).stdout
    spam, ham = (int(n or 0) for n in out.split("\n")[:2])
    return {"spam": spam, "ham": ham}


class Mailbox:
    """Alice's mailbox over IMAPS, as a mail client moves and copies messages."""

    def __init__(self, lab: Lab) -> None:
        self.conn = clients.IMAPS(clients.SERVER, IMAPS, ssl_context=lab.tls())
        self.conn.login(ALICE, PASSWORDS[ALICE])

    def _uid(self, msg_id: str, folder: str) -> str:
        self.conn.select(folder)
        _, data = self.conn.uid("SEARCH", "HEADER", "Message-ID", f'"{msg_id}"')
        [uid] = bytes(data[0]).split()
        return uid.decode()

    def move(self, msg_id: str, source: str, target: str, command: str = "MOVE") -> None:
        typ, data = self.conn.uid(command, self._uid(msg_id, source), target)
        assert typ == "OK", data

    def close(self) -> None:
        try:
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def delivered(lab: Lab, subject: str) -> str:
    raw = outside_message("Carol <carol@good.example>", subject)
    assert send_outside(raw, "carol@good.example")[0] == 250
    assert list(where(lab, message_id(raw))) == ["INBOX"]
    return message_id(raw)


def test_moving_into_and_out_of_junk_teaches_rspamd(lab: Lab) -> None:
    """Counts are read right after each IMAP command, without waiting: IMAPSieve pipes the
    message to rspamc while the command runs, and dovecot answers the command once rspamc has
    exited, which is after rspamd confirmed the learning. So a count that did not move when the
    command returned never will."""
    moved, copied = delivered(lab, "cheap watches"), delivered(lab, "more cheap watches")
    box = Mailbox(lab)
    try:
        before = learned(lab)
        box.move(moved, "INBOX", "Junk")
        assert learned(lab) == {"spam": before["spam"] + 1, "ham": before["ham"]}
        # Out of Junk into INBOX: "not spam". rspamd learns it as ham and takes back the spam
        # learning of the same message.
        box.move(moved, "Junk", "INBOX")
        assert learned(lab) == {"spam": before["spam"], "ham": before["ham"] + 1}

        box.move(copied, "INBOX", "Junk", command="COPY")
        assert learned(lab) == {"spam": before["spam"] + 1, "ham": before["ham"] + 1}
        box.move(copied, "Junk", "Trash")  # emptying Junk says nothing about the message
        assert learned(lab) == {"spam": before["spam"] + 1, "ham": before["ham"] + 1}
    finally:
        box.close()
    assert list(where(lab, moved)) == ["INBOX"]
    assert sorted(where(lab, copied)) == ["INBOX", "Trash"]


# -- rspamd down: delay, never loss --------------------------------------------------------


def test_rspamd_down_tempfails_and_the_retry_is_stored(lab: Lab) -> None:
    """milter_default_action = tempfail: while rspamd is down a sender is told 4xx and keeps the
    message, and mail the host itself sends waits in postfix's queue. Once rspamd runs again
    (apply.sh starts it) the sender's retry is taken and the waiting mail delivered."""
    workers = lab.serving_processes(("rspamd",))
    main = lab.rspamd_pid()
    assert main is not None and workers
    os.kill(main, signal.SIGTERM)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in [main, *(p for p, _, _ in workers)]),
               30, 0.1, "rspamd to stop")

    raw = outside_message("Carol <carol@good.example>", "sent while rspamd is down")
    code, text = send_outside(raw, "carol@good.example")
    assert code // 100 == 4, (code, text)
    local = clients.message("root@example.com", [ALICE], "from the host while rspamd is down")
    lab.run(["sendmail", "-C", lab.layout.postfix_dir, "-f", "root@example.com", ALICE], stdin=local.as_string())
    assert len(lab.queue_ids()) == 1  # waiting, not bounced
    assert where_now(lab, message_id(raw)) == {} and where_now(lab, str(local["Message-ID"])) == {}

    lab.apply(lab.settings, lab.secrets)
    code, text = send_outside(raw, "carol@good.example")  # the sender's retry
    assert code == 250, text
    assert {folder: len(copies) for folder, copies in where(lab, message_id(raw)).items()} == {"INBOX": 1}
    assert {folder: len(copies) for folder, copies in where(lab, str(local["Message-ID"])).items()} == {"INBOX": 1}


def where_now(lab: Lab, msg_id: str) -> dict[str, int]:
    """The folders holding the message at this moment (the queue may hold mail that waits)."""
    found = {f: sum(msg_id.encode() in p.read_bytes() for p in folder_files(lab, ALICE, f))
             for f in ("INBOX", "Junk", "Trash")}
    return {f: n for f, n in found.items() if n}


# -- forgeries of our own domains ----------------------------------------------------------


@pytest.mark.parametrize("header_from", ["IT desk <it@example.com>", "it@Example.COM"])
# pytest varies the upper parameter fastest: the policy changes once, one apply.
@pytest.mark.parametrize("policy", ["quarantine", "none"])
def test_forgery_of_our_own_domain_never_reaches_inbox(running: Env, policy: str, header_from: str) -> None:
    """The forger's usual trick: the envelope sender is a domain whose SPF passes for the
    sending host (its own; here good.example's), the From is one of ours, which that host may
    neither sign nor send for: DMARC fails. Under our dmarcPolicy (the dev stack's quarantine,
    and none, where the policy asks for nothing and only the OWN_DOMAIN_FORGED composite files
    it) the forgery is refused or in Junk, and the user can see why: DMARC failed. Domain names
    are case-insensitive, to DMARC and to mail clients alike, so a capital letter changes
    nothing."""
    lab = settled(running, dmarcPolicy=policy)
    raw = outside_message(header_from, "your mailbox is full")
    code, text = send_outside(raw, "bounce@good.example")
    found = where(lab, message_id(raw))
    assert "INBOX" not in found
    if code == 250:
        assert list(found) == ["Junk"]
        assert re.search(rf"\bdmarc=fail .*header\.from=example\.com \(policy={policy}\)",
                         auth_results(found["Junk"][0]), re.IGNORECASE)
    else:
        assert code // 100 == 5 and found == {}, (code, text)
    # The control: From good.example instead of ours, the same message passes (SPF and DMARC
    # pass for good.example) and lands in INBOX.
    control = outside_message("IT desk <it@good.example>", "your mailbox is full")
    assert send_outside(control, "bounce@good.example")[0] == 250
    assert list(where(lab, message_id(control))) == ["INBOX"]


# -- other settings --------------------------------------------------------------------------


def test_greylisting_defers_a_new_senders_suspect_mail(running: Env) -> None:
    """greylisting: true. A first message scoring above rspamd's greylisting threshold (4)
    from a sender it has not seen is deferred (4xx); ordinary mail (below it) is not."""
    lab = settled(running, greylisting=True)
    # Straight from a host none.example's SPF does not list: above 4, below the reject score.
    suspect = outside_message("sales@none.example", "offer", relayed_by=None)
    code, text = send_outside(suspect, "sales@none.example", source=FORGER, helo=FORGER_NAME)
    assert code == 451, text
    assert where(lab, message_id(suspect)) == {}
    ordinary = outside_message("Carol <carol@good.example>", "ordinary while greylisting")
    assert send_outside(ordinary, "carol@good.example")[0] == 250


def test_spam_filter_off_refuses_and_files_nothing_and_still_signs(running: Env) -> None:
    """spamFilter: false: mail the filter would refuse (a p=reject domain's failing mail) is
    delivered to INBOX unmarked, and what our users send is still signed. (GTUBE is refused
    all the same by Debian's rspamd 3.4: see options.inc.)"""
    lab = settled(running, spamFilter=False)
    raw = outside_message("billing@reject.example", "invoice, filter off", relayed_by=FORGER_NAME)
    code, text = send_outside(raw, "billing@reject.example", source=FORGER, helo=FORGER_NAME)
    assert code == 250, text
    found = where(lab, message_id(raw))
    assert list(found) == ["INBOX"]
    assert email.message_from_bytes(found["INBOX"][0])["X-Spam"] is None

    msg = clients.message(ALICE, [BOB], "signed with the filter off")
    submit(lab, 587, ALICE, msg)
    [signed] = where(lab, str(msg["Message-ID"]), address=BOB)["INBOX"]
    dns = published_dns(lab)
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: dns.get(name, b""))


# The backup MX's public address, as this host's postfix would see it connect (outside
# 127.0.0.0/8, which rspamd counts as local and checks nothing for).
BACKUP_MX = "198.51.100.20"


def scan_as_relayed_by(lab: Lab, relay_name: str, raw: bytes, mail_from: str) -> str:
    """rspamd's verdict on `raw` handed over by a host of verified name `relay_name` (its
    learning socket scans like the milter: the same checks, with the client postfix would pass)."""
    proc = lab.run(["rspamc", "-h", lab.layout.learn_socket, "-i", BACKUP_MX, "--hostname", relay_name,
                    "--helo", relay_name, "--from", mail_from, "--rcpt", ALICE], stdin=raw.decode())
    return proc.stdout


def test_mail_relayed_by_our_backup_mx_is_judged_by_its_real_sender(running: Env) -> None:
    """With secondaryMx, mail the backup MX took while this host was down comes from the backup
    MX's address. rspamd takes the sender from the Received header the backup MX wrote
    (external_relay), so good.example's SPF passes and its p=reject policy is not applied to its
    own mail. Without the rule (no backup MX configured) the same hand-over fails SPF and DMARC,
    and the message would be refused: that is what the rule prevents."""
    msg = outside_message("News <news@good.example>", "relayed by the backup MX", relayed_by=GOOD_MX_NAME)
    backup = dev_settings(secondaryMx=True, acmeServer="letsencrypt")[0].secondary_hostname
    received = (f"Received: from {GOOD_MX_NAME} ({GOOD_MX_NAME} [{GOOD_MX}])\r\n\tby {backup} (Postfix) with ESMTPS "
                f"id 4ABC123 for <{ALICE}>; {email.utils.formatdate()}\r\n").encode()
    raw = received + msg
    without = scan_as_relayed_by(settled(running), backup, raw, "bounce@good.example")
    assert "R_SPF_FAIL" in without and "DMARC_POLICY_REJECT" in without, without
    lab = settled(running, secondaryMx=True, acmeServer="letsencrypt")
    relayed = scan_as_relayed_by(lab, backup, raw, "bounce@good.example")
    assert "RELAYED_BY_BACKUP_MX" in relayed and "R_SPF_ALLOW" in relayed and "DMARC_POLICY_ALLOW" in relayed, relayed
    assert "Action: no action" in relayed, relayed
    # Another name at the same address is not trusted: its Received headers are the sender's.
    other = scan_as_relayed_by(lab, "mx3.example.com", raw, "bounce@good.example")
    assert "RELAYED_BY_BACKUP_MX" not in other and "R_SPF_FAIL" in other, other


def test_what_the_backup_mx_relays_is_filed_not_refused(running: Env) -> None:
    """The backup MX has accepted it already: a refusal here would make it bounce the message to
    the (for spam, forged) envelope sender. A p=reject forgery that comes straight in is refused;
    the same through the backup MX is filed into Junk (add header) instead."""
    lab = settled(running, secondaryMx=True, acmeServer="letsencrypt")
    backup = lab.settings.secondary_hostname
    msg = outside_message("Billing <billing@reject.example>", "forged via the backup MX")
    received = (f"Received: from {FORGER_NAME} ({FORGER_NAME} [{FORGER}])\r\n\tby {backup} (Postfix) with ESMTPS "
                f"id 4ABC124 for <{ALICE}>; {email.utils.formatdate()}\r\n").encode()
    direct = scan_as_relayed_by(lab, FORGER_NAME, msg, "billing@reject.example")
    assert "Action: reject" in direct and "DMARC_POLICY_REJECT" in direct, direct
    relayed = scan_as_relayed_by(lab, backup, received + msg, "billing@reject.example")
    assert "RELAYED_BY_BACKUP_MX" in relayed and "DMARC_POLICY_REJECT" in relayed, relayed
    assert "Action: add header" in relayed, relayed
