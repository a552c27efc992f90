"""End to end: the rendered bundle on real postfix and dovecot, in a private network namespace.

Every client connects from 127.0.0.2: both daemons trust the server's own address (postfix's
mynetworks, dovecot's "local is secure"), so a refusal tested from 127.0.0.1 would prove
nothing. Each test asserts on what a user sees: the stored message, the SMTP code, the
protocol's refusal.
"""

from __future__ import annotations

import email
import grp
import imaplib
import poplib
import smtplib
import socket
import ssl
import stat
from pathlib import Path

import pytest

from mailserver import clients
from mailserver.core import catalog
from mailserver.core.catalog import SERVICES
from mailserver.lab.server import Lab
from tests.lab.support import stored, submit
from tests.support import PASSWORDS

ALICE, BOB = "alice@example.com", "bob@example.net"
TLS_PORTS = [(s.port, s.protocol if s.tls == "starttls" else None) for s in SERVICES if s.tls != "none"]


def inbound(msg: email.message.EmailMessage, sender: str = "someone@outside.example") -> None:
    with clients.smtp(25) as conn:
        conn.ehlo("mx.outside.example")
        conn.send_message(msg, from_addr=sender)


# -- delivery ---------------------------------------------------------------------------


@pytest.mark.parametrize("port", [587, 465])
def test_submission_with_tls_and_auth_reaches_the_mailbox(lab: Lab, port: int) -> None:
    msg = clients.message(ALICE, [BOB], f"submitted on {port}", body=f"body via {port}\n")
    submit(lab, port, ALICE, msg)
    [raw] = stored(lab, BOB, msg["Message-ID"])
    got = email.message_from_bytes(raw)
    assert got["Subject"] == f"submitted on {port}"
    assert f"body via {port}" in got.get_payload()
    # Postfix records that the submission was authenticated and encrypted.
    assert b"ESMTPSA" in raw


@pytest.mark.parametrize("rcpt", [ALICE, BOB])
def test_inbound_mail_on_25_is_stored_for_each_domain(lab: Lab, rcpt: str) -> None:
    msg = clients.message("someone@outside.example", [rcpt], f"inbound to {rcpt}")
    inbound(msg)
    assert len(stored(lab, rcpt, msg["Message-ID"])) == 1


def test_alias_delivers_to_every_target(lab: Lab) -> None:
    msg = clients.message("customer@outside.example", ["sales@example.com"], "to the sales alias")
    inbound(msg)
    assert len(stored(lab, ALICE, msg["Message-ID"])) == 1
    assert len(stored(lab, BOB, msg["Message-ID"])) == 1


def test_default_postmaster_alias_reaches_first_mailbox(lab: Lab) -> None:
    msg = clients.message("someone@outside.example", ["postmaster@example.net"], "postmaster")
    inbound(msg)
    assert len(stored(lab, ALICE, msg["Message-ID"])) == 1


def test_the_hosts_own_mail_to_root_reaches_the_first_mailbox(lab: Lab) -> None:
    msg = clients.message("cron@mail.example.com", ["root"], "cron output")
    # Local submission, as cron does it: postfix's sendmail, then pickup, not SMTP.
    lab.run(["sendmail", "-C", lab.layout.postfix_dir, "-i", "root"], stdin=msg.as_string())
    assert len(stored(lab, ALICE, msg["Message-ID"])) == 1


def test_plus_address_reaches_the_mailbox(lab: Lab) -> None:
    msg = clients.message("someone@outside.example", ["alice+news@example.com"], "tagged")
    inbound(msg)
    assert len(stored(lab, ALICE, msg["Message-ID"])) == 1


# -- retrieval --------------------------------------------------------------------------


@pytest.mark.parametrize("port,protocol,implicit", [
    (993, "imap", True), (143, "imap", False), (995, "pop3", True), (110, "pop3", False)])
def test_retrieval_returns_the_exact_message(lab: Lab, port: int, protocol: str, implicit: bool) -> None:
    body = f"retrieval check over {port}\n"
    msg = clients.message("someone@outside.example", [BOB], f"fetch via {port}", body=body)
    inbound(msg)
    assert stored(lab, BOB, msg["Message-ID"])
    fetch = clients.imap_messages if protocol == "imap" else clients.pop3_messages
    found = [email.message_from_bytes(m) for m in fetch(port, BOB, PASSWORDS[BOB], lab.tls(), implicit)]
    matching = [m for m in found if m["Message-ID"] == msg["Message-ID"]]
    assert len(matching) == 1
    assert matching[0]["Subject"] == f"fetch via {port}"
    assert body.strip() in matching[0].get_payload()


# -- refusals ---------------------------------------------------------------------------


def test_relay_to_outside_without_auth_is_refused_571(lab: Lab) -> None:
    code, text = clients.rcpt_reply("victim@elsewhere.example")
    assert code == 554 and b"5.7.1" in text
    assert lab.queue_ids() == []


def test_relay_is_refused_even_with_starttls_on_25(lab: Lab) -> None:
    code, text = clients.rcpt_reply("victim@elsewhere.example", tls=lab.tls())
    assert code == 554 and b"5.7.1" in text


def test_port_25_never_offers_auth(lab: Lab) -> None:
    with clients.smtp(25) as conn:
        conn.ehlo("mx.outside.example")
        assert not conn.has_extn("auth")
        conn.starttls(context=lab.tls())
        conn.ehlo("mx.outside.example")
        assert not conn.has_extn("auth")


def test_submission_offers_auth_only_after_starttls(lab: Lab) -> None:
    with clients.smtp(587) as conn:
        conn.ehlo("client.example")
        assert not conn.has_extn("auth")
        assert conn.has_extn("starttls")
        conn.starttls(context=lab.tls())
        conn.ehlo("client.example")
        assert "PLAIN" in conn.esmtp_features["auth"].upper()


def test_submission_without_auth_cannot_send(lab: Lab) -> None:
    with clients.smtp(587) as conn:
        conn.starttls(context=lab.tls())
        conn.ehlo("client.example")
        conn.mail(ALICE)
        code, _ = conn.rcpt("victim@elsewhere.example")
    assert code >= 500


def test_imap_plaintext_login_refused_before_starttls(lab: Lab) -> None:
    conn = clients.IMAP(clients.SERVER, 143)
    try:
        assert "LOGINDISABLED" in conn.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="(?i)plaintext|disallowed|disabled"):
            conn.login(ALICE, PASSWORDS[ALICE])
    finally:
        conn.shutdown()


def test_pop3_plaintext_login_refused_before_stls(lab: Lab) -> None:
    conn = clients.POP3(clients.SERVER, 110)
    try:
        with pytest.raises(poplib.error_proto, match="(?i)plaintext|disallowed|disabled"):
            conn.user(ALICE)
            conn.pass_(PASSWORDS[ALICE])
    finally:
        conn.close()


def test_wrong_password_refused_everywhere(lab: Lab) -> None:
    with clients.smtp(465, implicit_tls=True, ctx=lab.tls()) as conn, \
            pytest.raises(smtplib.SMTPAuthenticationError) as smtp_err:
        conn.login(ALICE, "not the password")
    assert smtp_err.value.smtp_code == 535
    with pytest.raises(imaplib.IMAP4.error, match="(?i)authentication failed"):
        clients.imap_messages(993, ALICE, "not the password", lab.tls(), True)
    with pytest.raises(poplib.error_proto, match="(?i)authentication failed"):
        clients.pop3_messages(995, ALICE, "not the password", lab.tls(), True)


@pytest.mark.parametrize("port,starttls", TLS_PORTS)
def test_tls_below_1_2_refused_and_1_2_accepted(lab: Lab, port: int, starttls: str | None) -> None:
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        assert clients.tls_handshake(port, starttls, old) is None, f"{old.name} accepted on {port}"
    assert clients.tls_handshake(port, starttls, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def test_unknown_recipient_rejected_at_rcpt_not_bounced(lab: Lab) -> None:
    code, text = clients.rcpt_reply("nobody@example.com")
    assert code == 550 and b"5.1.1" in text
    assert lab.queue_ids() == []


def test_oversize_message_refused_552(lab: Lab) -> None:
    limit = lab.settings.message_size_limit
    msg = clients.message("someone@outside.example", [ALICE], "too big", size=limit + 1024)
    # With the SIZE extension the refusal comes at MAIL FROM...
    with clients.smtp(25) as conn, pytest.raises(smtplib.SMTPSenderRefused) as err:
        conn.ehlo("mx.outside.example")
        conn.send_message(msg)
    assert err.value.smtp_code == 552
    # ...and a client that does not announce the size is refused at the end of DATA.
    with clients.smtp(25) as conn:
        conn.ehlo("mx.outside.example")
        conn.mail("someone@outside.example")
        conn.rcpt(ALICE)
        code, _ = conn.data(msg.as_bytes())
    assert code == 552
    assert not stored(lab, ALICE, msg["Message-ID"])


def test_authenticated_user_cannot_send_as_someone_else(lab: Lab) -> None:
    msg = clients.message(BOB, [ALICE], "forged sender")
    with clients.smtp(587) as conn, pytest.raises(smtplib.SMTPRecipientsRefused) as err:
        conn.starttls(context=lab.tls())
        conn.login(ALICE, PASSWORDS[ALICE])
        conn.send_message(msg, from_addr=BOB)
    [(code, text)] = err.value.recipients.values()
    assert code == 553 and b"not owned" in text
    # An alias that delivers to alice is hers to send as.
    ok = clients.message("sales@example.com", [BOB], "as the alias")
    with clients.smtp(587) as conn:
        conn.starttls(context=lab.tls())
        conn.login(ALICE, PASSWORDS[ALICE])
        conn.send_message(ok, from_addr="sales@example.com")
    assert stored(lab, BOB, ok["Message-ID"])


def test_auth_socket_is_not_world_accessible(lab: Lab) -> None:
    private = Path(lab.layout.queue_dir) / "private"
    for name in ("auth", "dovecot-lmtp"):
        mode = (private / name).stat().st_mode & 0o777
        assert mode & 0o007 == 0, f"{name} is {oct(mode)}"


def test_only_the_catalog_ports_listen_publicly(lab: Lab) -> None:
    listening = lab.run(["ss", "-Hltn"]).stdout
    public: set[int] = set()
    private: set[int] = set()
    for line in listening.splitlines():
        address, port = line.split()[3].rsplit(":", 1)
        (private if address in ("127.0.0.1", "[::1]") else public).add(int(port))
    assert public == {s.port for s in lab.settings.services if not s.admin_only}
    # On loopback only: rspamd's web UI (the operator's SSH tunnel) and its key-value store.
    # The milter listens on a unix socket (test_milter_socket_is_postfix_s_alone), no port.
    assert private == {catalog.RSPAMD_CONTROLLER[1], catalog.KV_ADDRESS[1]}


def test_milter_socket_is_postfix_s_alone(lab: Lab) -> None:
    """Whoever can open the milter's socket can have mail signed with our keys: only the
    milter's user and group (postfix joined it) may."""
    sock = Path(lab.layout.milter_socket)
    st = sock.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert st.st_mode & 0o007 == 0, oct(st.st_mode)
    assert grp.getgrgid(st.st_gid).gr_name == catalog.MILTER_GROUP
    assert catalog.MILTER_GROUP in lab.run(["id", "-nG", "postfix"]).stdout.split()
    # The mail user is no member: only dovecot's IMAP processes take the group (for learning).
    assert catalog.MILTER_GROUP not in lab.run(["id", "-nG", catalog.VMAIL_USER]).stdout.split()
    # The web UI's password is rspamd's alone, not its group's.
    pw = Path(lab.layout.rspamd_local_dir) / "local.d" / catalog.RSPAMD_PASSWORD_FILE
    assert pw.stat().st_mode & 0o077 == 0 and pw.owner() == catalog.RSPAMD_USER


def test_certificate_names_the_host(lab: Lab) -> None:
    with socket.create_connection((clients.SERVER, 993), 10, source_address=(clients.OUTSIDE, 0)) as sock, \
            lab.tls().wrap_socket(sock, server_hostname=lab.settings.hostname) as tls:
        cert = tls.getpeercert()
    assert cert is not None
    assert ("DNS", lab.settings.hostname) in cert["subjectAltName"]
