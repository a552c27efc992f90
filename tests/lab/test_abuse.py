"""Abuse defences on real daemons in the lab's namespace: fail2ban bans password guessers
(SMTP AUTH, IMAP and ManageSieve) through nftables, postscreen refuses clients that talk before the
greeting, and a bare LF in DATA cannot smuggle a second message.

Each attacker gets an address of its own (127.0.0.x), because a ban or a postscreen verdict
sticks to the address; 127.0.0.3 plays the innocent neighbour that must keep working.
"""

from __future__ import annotations

import email
import imaplib
import os
import re
import socket
import subprocess
from collections.abc import Iterator

import pytest

from mailserver import clients
from mailserver.core.catalog import SERVICES
from mailserver.core.settings import Secrets, Settings
from mailserver.lab import netns
from mailserver.lab.server import Lab
from mailserver.waiting import wait_until
from tests.lab.support import stored
from tests.support import dev_settings

ALICE = "alice@example.com"
MAX_RETRY = 3
NEIGHBOUR = "127.0.0.3"
SUBMISSION, IMAPS, SIEVE = 587, 993, 4190
WRONG_PLAIN = "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAG5vdCB0aGUgcGFzc3dvcmQ="  # alice, a wrong password


def defaults() -> tuple[Settings, Secrets]:
    return dev_settings(fail2banMaxRetry=MAX_RETRY)


def strict_settings() -> tuple[Settings, Secrets]:
    """smtpdForbidBareNewline reject and an AUTH rate limit of 1."""
    return dev_settings(fail2banMaxRetry=MAX_RETRY, smtpdForbidBareNewline="reject", smtpdAuthRateLimit=1)


@pytest.fixture(scope="module")
def running() -> Iterator[Lab]:
    """One lab with fail2ban for the module; `lab` and `strict` apply the settings a test needs."""
    settings, secrets = defaults()
    # The machine's own network namespace, to look at from inside the lab's.
    outside = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        with Lab(settings, secrets) as started:
            started.start_fail2ban()
            started.outside_ns = f"/proc/{os.getpid()}/fd/{outside}"  # type: ignore[attr-defined]
            with netns.entered(started.ns):
                yield started
    finally:
        os.close(outside)


def settled(lab: Lab, settings: Settings, secrets: Secrets) -> Lab:
    """The lab with these settings, applied only if it runs others: tests may come in any
    order, and an apply takes seconds."""
    if lab.settings != settings:
        lab.apply(settings, secrets)
    return lab


@pytest.fixture
def lab(running: Lab) -> Lab:
    return settled(running, *defaults())


@pytest.fixture
def strict(running: Lab) -> Lab:
    return settled(running, *strict_settings())


class Raw:
    """A line-by-line SMTP client, for what smtplib will not send (early talk, bare LF)."""

    def __init__(self, source: str, port: int = 25) -> None:
        self.sock = socket.create_connection((clients.SERVER, port), clients.TIMEOUT, source_address=(source, 0))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, bytes]:
        """The next complete reply (all lines up to "NNN ")."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] == b" ":
                return int(line[:3]), b"\n".join(lines)

    def command(self, line: bytes) -> tuple[int, bytes]:
        self.send(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


IMPLICIT_TLS = {s.port for s in SERVICES if s.tls == "implicit"}


def can_connect(source: str, port: int, timeout: float = 3.0) -> bool:
    """The server answers: a greeting (postscreen, smtpd, dovecot), or a TLS handshake first
    on the implicit-TLS ports."""
    try:
        with socket.create_connection((clients.SERVER, port), timeout, source_address=(source, 0)) as sock:
            sock.settimeout(timeout)
            if port in IMPLICIT_TLS:
                with clients.tls_context().wrap_socket(sock) as tls:
                    return tls.recv(1) != b""
            return sock.recv(1) != b""
    except OSError:
        return False


# -- fail2ban ---------------------------------------------------------------------------


def failed_smtp_auth(source: str) -> None:
    """One wrong password on 587 (STARTTLS, AUTH PLAIN), in a connection of its own."""
    with clients.smtp(SUBMISSION, source=source) as conn:
        conn.starttls(context=clients.tls_context())
        conn.ehlo("guesser.example")
        code, _ = conn.docmd("AUTH", WRONG_PLAIN)
        assert code == 535


def failed_sieve_auth(source: str) -> None:
    """One wrong password on ManageSieve (STARTTLS, AUTHENTICATE PLAIN): dovecot's jail reads
    managesieve-login's "auth failed" as it reads imap-login's."""
    with clients.managesieve(SIEVE, source=source) as conn:
        conn.starttls(clients.tls_context())
        assert conn.authenticate(ALICE, "wrong!")[0] == "NO"


def failures_counted(lab: Lab, jail: str) -> int:
    """The failures the jail has read from its log so far (fail2ban-client status: Total failed)."""
    found = re.search(r"Total failed:\s*(\d+)", lab.fail2ban_client("status", jail))
    assert found, lab.fail2ban_client("status", jail)
    return int(found[1])


def make_imaps(source: str) -> type[clients.IMAPS]:
    return type("BoundIMAPS", (clients.IMAPS,), {"source": source})


@pytest.mark.parametrize("jail,port,attacker", [("postfix-sasl", SUBMISSION, "127.0.0.2"),
                                               ("dovecot", IMAPS, "127.0.0.6"),
                                               ("dovecot", SIEVE, "127.0.0.11")])
def test_fail2ban_bans_after_the_configured_failures(lab: Lab, jail: str, port: int, attacker: str) -> None:
    def fail() -> None:
        if jail == "postfix-sasl":
            failed_smtp_auth(attacker)
        elif port == SIEVE:
            failed_sieve_auth(attacker)
        else:
            with pytest.raises(imaplib.IMAP4.error):
                make_imaps(attacker)(clients.SERVER, IMAPS, ssl_context=clients.tls_context()).login(ALICE, "wrong!")

    def status() -> str:
        return lab.fail2ban_client("status", jail)

    counted = failures_counted(lab, jail)
    for _ in range(MAX_RETRY - 1):
        fail()
    # One failure short of the limit: once fail2ban has read both, still allowed.
    wait_until(lambda: failures_counted(lab, jail) >= counted + MAX_RETRY - 1, 15, 0.2,
               f"the {jail} jail to count {MAX_RETRY - 1} failures", detail=status)
    assert attacker not in lab.banned(jail)
    assert can_connect(attacker, port)
    fail()
    wait_until(lambda: attacker in lab.banned(jail), 15, 0.3, f"the {jail} jail to ban {attacker}", detail=status)
    # The address is listed as banned a moment before the nftables rule exists.
    wait_until(lambda: not can_connect(attacker, port), 5, 0.3, f"nftables to keep {attacker} from port {port}")
    # Banned from every mail port, not only the one it guessed on; the neighbour is not.
    for p in (port, 25, SUBMISSION, IMAPS):
        assert not can_connect(attacker, p), f"{attacker} still reaches port {p}"
        assert can_connect(NEIGHBOUR, p), f"{NEIGHBOUR} lost port {p}"
    # Unbanned, it reaches the server again (the rule is gone, not just the list entry).
    lab.fail2ban_client("set", jail, "unbanip", attacker)
    wait_until(lambda: can_connect(attacker, port), 5, 0.3, f"{attacker} to reach port {port} again")


def test_bans_live_only_in_the_labs_namespace_and_go_with_fail2ban(lab: Lab) -> None:
    # This thread is inside the lab's namespace; the fixture kept a handle on the machine's.
    outside = subprocess.run(["nsenter", f"--net={lab.outside_ns}", "nft", "list", "tables"],  # type: ignore[attr-defined]
                             capture_output=True, text=True, check=True).stdout
    assert "f2b-table" not in outside
    failed_smtp_auth("127.0.0.7")
    lab.fail2ban_client("set", "postfix-sasl", "banip", "127.0.0.7")
    assert "127.0.0.7" in lab.run(["nft", "list", "ruleset"]).stdout
    lab.stop_fail2ban()
    try:
        assert "f2b-table" not in lab.run(["nft", "list", "tables"]).stdout
        assert can_connect("127.0.0.7", SUBMISSION)
    finally:
        lab.start_fail2ban()  # for the tests that come after


# -- postscreen -------------------------------------------------------------------------


def test_postscreen_refuses_a_client_that_talks_before_the_greeting(lab: Lab) -> None:
    bot = Raw("127.0.0.8")
    try:
        # postscreen sends "220-" and waits; a real MTA waits for the final "220 " line.
        bot.send(b"EHLO bot.example\r\n")
        bot.reply()  # the first greeting line and postscreen's EHLO answer
        assert bot.command(b"MAIL FROM:<bot@spam.example>")[0] == 250
        code, text = bot.command(f"RCPT TO:<{ALICE}>".encode())
        assert code == 550, text
    finally:
        bot.close()
    assert "PREGREET" in lab.log() and "[127.0.0.8]" in lab.log()
    assert lab.queue_ids() == []


def test_postscreen_passes_a_patient_client_to_smtpd(lab: Lab) -> None:
    msg = clients.message("someone@outside.example", [ALICE], "patient sender")
    with clients.smtp(25, source="127.0.0.9") as conn:
        conn.ehlo("mx.outside.example")
        conn.send_message(msg)
    assert len(stored(lab, ALICE, msg["Message-ID"])) == 1
    assert "PASS NEW [127.0.0.9]" in lab.log()


# -- bare newlines (SMTP smuggling) --------------------------------------------------------


SMUGGLING = (b"Subject: %s\r\n\r\nfirst message\n.\nMAIL FROM:<ceo@example.com>\r\nRCPT TO:<alice@example.com>\r\n"
             b"DATA\r\nSubject: smuggled\r\n\r\nforged\r\n.\r\n")


def send_data(body: bytes, source: str = "127.0.0.2") -> tuple[int, bytes]:
    conn = Raw(source)
    try:
        conn.reply()
        conn.command(b"EHLO mx.outside.example")
        conn.command(b"MAIL FROM:<someone@outside.example>")
        assert conn.command(f"RCPT TO:<{ALICE}>".encode())[0] == 250
        assert conn.command(b"DATA")[0] == 354
        conn.send(body)
        return conn.reply()
    finally:
        conn.close()


def copies(lab: Lab, needle: bytes) -> list[bytes]:
    """Every stored copy, in INBOX or Junk: these bare test messages (no From, no Date) score as
    spam with rspamd, and where they are filed is not what the smuggling tests are about."""
    lab.wait_queue_empty()
    return [p.read_bytes() for folder in ("INBOX", "Junk") for p in lab.maildir_files(ALICE, folder)
            if needle in p.read_bytes()]


def test_bare_lf_cannot_end_the_message_normalize(lab: Lab) -> None:
    assert lab.settings.smtpd_forbid_bare_newline == "normalize"
    code, _ = send_data(SMUGGLING % b"normalize-check")
    assert code == 250
    # One message: LF.LF did not end it, so the "smuggled" commands are only its text.
    [raw] = copies(lab, b"forged")
    got = email.message_from_bytes(raw)
    assert got["Subject"] == "normalize-check" and "MAIL FROM:<ceo@example.com>" in got.get_payload()


def test_bare_lf_is_refused_with_reject(strict: Lab) -> None:
    code, text = send_data(b"Subject: reject-check\r\n\r\nbare\nnewline\r\n.\r\n")
    assert code == 550, text
    assert copies(strict, b"reject-check") == []
    # Standard CRLF mail still passes.
    code, _ = send_data(b"Subject: crlf-check\r\n\r\nclean\r\n.\r\n")
    assert code == 250 and len(copies(strict, b"crlf-check")) == 1


def test_auth_rate_limit_caps_a_fast_guesser(strict: Lab) -> None:
    """Defence in depth: postfix counts AUTH commands per client (anvil) and refuses the ones
    over smtpdAuthRateLimit per minute, whatever fail2ban does."""
    with clients.smtp(SUBMISSION, source="127.0.0.10") as conn:
        conn.starttls(context=clients.tls_context())
        conn.ehlo("guesser.example")
        assert conn.docmd("AUTH", WRONG_PLAIN)[0] == 535
        code, text = conn.docmd("AUTH", WRONG_PLAIN)
        assert 400 <= code < 500 and b"too many AUTH" in text, (code, text)
