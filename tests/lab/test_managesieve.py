"""ManageSieve (RFC 5804, port 4190) on real dovecot: users manage their own filters from
their mail client, and a filter they upload decides where the next message is stored.

Clients connect from 127.0.0.2, which dovecot does not trust (see test_e2e.py): a refusal
tested from the server's own address would prove nothing.
"""

from __future__ import annotations

import email
import secrets

from mailserver import clients
from mailserver.lab.server import Lab
from tests.support import PASSWORDS

BOB = "bob@example.net"
SIEVE = 4190


def test_no_login_before_starttls(lab: Lab) -> None:
    with clients.managesieve(SIEVE) as conn:
        assert "STARTTLS" in conn.capabilities
        assert conn.sasl == []  # the greeting lists no mechanism to log in with
        status, text = conn.authenticate(BOB, PASSWORDS[BOB])
    assert status == "NO" and "ENCRYPT-NEEDED" in text, text


def test_after_starttls_login_and_the_vacation_extension_are_offered(lab: Lab) -> None:
    with clients.managesieve(SIEVE) as conn:
        conn.starttls(lab.tls())
        assert "PLAIN" in conn.sasl
        assert {"vacation", "fileinto", "mailbox"} <= set(conn.capabilities["SIEVE"].split())
        assert "STARTTLS" not in conn.capabilities  # RFC 5804 2.2: not offered twice


def test_wrong_password_is_refused(lab: Lab) -> None:
    with clients.managesieve(SIEVE) as conn:
        conn.starttls(lab.tls())
        status, text = conn.authenticate(BOB, "not the password")
    assert status == "NO", text


def ids(raws: list[bytes]) -> set[str]:
    return {str(email.message_from_bytes(raw)["Message-ID"]) for raw in raws}


def test_an_uploaded_filter_files_the_next_matching_message(lab: Lab) -> None:
    tag = f"sieve-test-{secrets.token_hex(6)}"
    # fileinto :create (the mailbox extension): a folder that does not exist yet, so only the
    # filter can have put the message there.
    script = f'require ["fileinto", "mailbox"];\nif header :contains "subject" "{tag}" {{ fileinto :create "Work"; }}\n'
    with clients.managesieve(SIEVE) as conn:
        conn.starttls(lab.tls())
        assert conn.authenticate(BOB, PASSWORDS[BOB])[0] == "OK"
        assert conn.putscript("filters", script) == ("OK", '"PUTSCRIPT completed."')
        assert conn.setactive("filters")[0] == "OK"
    try:
        matching = clients.message("someone@outside.example", [BOB], f"report {tag}")
        other = clients.message("someone@outside.example", [BOB], "an ordinary message")
        with clients.smtp(25) as smtp:
            smtp.ehlo("mx.outside.example")
            smtp.send_message(matching)
            smtp.send_message(other)
        lab.wait_queue_empty()
        work = ids(clients.imap_messages(993, BOB, PASSWORDS[BOB], lab.tls(), True, mailbox="Work"))
        inbox = ids(clients.imap_messages(993, BOB, PASSWORDS[BOB], lab.tls(), True))
        assert matching["Message-ID"] in work and matching["Message-ID"] not in inbox
        assert other["Message-ID"] in inbox and other["Message-ID"] not in work
    finally:
        with clients.managesieve(SIEVE) as conn:  # no active filter for the tests after
            conn.starttls(lab.tls())
            conn.authenticate(BOB, PASSWORDS[BOB])
            conn.setactive("")


def test_an_invalid_script_is_refused_with_the_servers_reason(lab: Lab) -> None:
    with clients.managesieve(SIEVE) as conn:
        conn.starttls(lab.tls())
        assert conn.authenticate(BOB, PASSWORDS[BOB])[0] == "OK"
        status, text = conn.putscript("broken", 'require ["no-such-extension"]; keep;\n')
    assert status == "NO" and "no-such-extension" in text, text
