"""relay: ses on real postfix: outbound mail leaves through a relay that wants AUTH over TLS.

A stand-in for Amazon SES's SMTP endpoint (tests/lab/relay_standin.py) listens on loopback inside
the lab's network namespace, where the lab layout points postfix's relayhost. Its certificate
is signed by a test CA that the lab's postfix trusts for the relay (the layout's relay CA file,
where the VM has the OS's bundle) and names the stand-in as the layout says. Its login is
written with the same set-relay-credentials.sh that pulumi-command runs on the VM. The tests
check what leaves (and with which protection), what stays local, that a relay with the wrong
certificate never gets the password, and that every failure of the relay keeps the mail in the
queue instead of bouncing it.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest

from mailserver import clients
from mailserver.core import catalog, render
from mailserver.lab import netns
from mailserver.lab.server import Lab, LabError
from mailserver.waiting import wait_until
from tests.lab.doctor_support import TestCa, self_signed
from tests.lab.relay_standin import Received, RelayStandIn
from tests.lab.support import published_dns
from tests.support import PASSWORDS, dev_settings

ALICE, BOB = "alice@example.com", "bob@example.net"
# Shaped like SES credentials: an access key id, and a base64 password with + / =.
USERNAME = "AKIASTANDIN0EXAMPLE1"
PASSWORD = "BLab+Stand/In0Relay9Password8xYz7WvU6tS5rQ4p="


@dataclasses.dataclass(frozen=True)
class RelayLab:
    lab: Lab
    relay: RelayStandIn
    ca: TestCa  # the CA the lab trusts for the relay
    certificate: tuple[str, str]  # the stand-in's right certificate (chain, key)


@pytest.fixture(scope="module")
def relay_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayLab]:
    settings, secrets = dev_settings(relay="ses")
    certdir = tmp_path_factory.mktemp("standin")
    ca = TestCa("Relay Test Root CA")
    certificate = ca.issue(catalog.RELAY_STANDIN_NAME)
    with Lab(settings, secrets) as running, netns.entered(running.ns), \
            RelayStandIn(clients.RELAY_STANDIN, clients.RELAY_STANDIN_PORT, USERNAME, PASSWORD, certdir,
                         certificate) as standin:
        trust_relay_ca(running, ca.pem)
        set_credentials(running, f"{USERNAME}\t{PASSWORD}\n")
        yield RelayLab(running, standin, ca, certificate)


@pytest.fixture
def lab(relay_lab: RelayLab) -> Lab:
    return relay_lab.lab


@pytest.fixture
def relay(relay_lab: RelayLab) -> Iterator[RelayStandIn]:
    standin = relay_lab.relay
    standin.mode = "accept"
    yield standin
    # Leave nothing behind for the next test: relay back to normal, queue delivered.
    standin.mode = "accept"
    standin.use_certificate(*relay_lab.certificate)
    flush(relay_lab.lab)
    relay_lab.lab.wait_queue_empty()


def trust_relay_ca(lab: Lab, ca_pem: str) -> None:
    """Write the CA the lab's postfix trusts for the relay (what the OS's bundle is on the VM);
    postfix's SMTP client reads it when it starts, so the reload makes new ones read it."""
    cafile = Path(lab.layout.relay_ca_file)
    cafile.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    cafile.write_text(ca_pem)
    cafile.chmod(0o644)
    lab.reload_postfix()


def set_credentials(lab: Lab, stdin: str) -> str:
    script = str(Path(lab.layout.state_dir) / "scripts/set-relay-credentials.sh")
    return lab.run(["bash", script], stdin=stdin).stdout


def flush(lab: Lab) -> None:
    lab.run(["postqueue", "-c", lab.layout.postfix_dir, "-f"])


def submit(lab: Lab, to: list[str], subject: str) -> str:
    msg = clients.message(ALICE, to, subject)
    with clients.smtp(587) as conn:
        conn.starttls(context=lab.tls())
        conn.login(ALICE, PASSWORDS[ALICE])
        conn.send_message(msg)
    return str(msg["Message-ID"])


def queue_id(lab: Lab, msg_id: str, timeout: float = 10.0) -> str:
    """The message's queue id, once the cleanup daemon has logged it."""
    found = wait_until(lambda: re.search(rf"([0-9A-F]+): message-id={re.escape(msg_id)}", lab.log()), timeout, 0.1,
                       f"the cleanup daemon to log {msg_id}")
    return found.group(1)


def deferred(lab: Lab, qid: str, timeout: float = 20.0) -> list[str]:
    """Wait until the message sits in the deferred queue; return its recipients' delay reasons."""
    def reasons() -> list[str] | None:
        for line in lab.queue_ids():
            entry = json.loads(line)
            if entry["queue_id"] == qid and entry["queue_name"] == "deferred":
                return [r.get("delay_reason", "") for r in entry["recipients"]]
        return None

    return wait_until(reasons, timeout, 0.2, f"{qid} in the deferred queue",
                      detail=lambda: f"{lab.queue_ids()}\n{lab.log()[-3000:]}")


def relayed(lab: Lab, relay: RelayStandIn, msg_id: str, timeout: float = 30.0) -> list[Received]:
    """The copies of a message the relay received, once there is one."""
    return wait_until(lambda: relay.messages_with(msg_id), timeout, 0.05, f"the relay to receive {msg_id}",
                      detail=lambda: lab.log()[-3000:])


def assert_not_bounced(lab: Lab, qid: str, msg_id: str) -> None:
    log = lab.log()
    assert f"{qid}: to=" in log
    assert not re.search(rf"{qid}: .*status=bounced", log), log[-3000:]
    assert f"{qid}: sender non-delivery notification" not in log
    # and no bounce notice reached the sender's mailbox
    assert not [p for p in lab.maildir_files(ALICE) if msg_id.encode() in p.read_bytes()]


# -- what leaves, and how ------------------------------------------------------------------


def test_outbound_mail_reaches_the_relay_with_auth_over_tls(lab: Lab, relay: RelayStandIn) -> None:
    msg_id = submit(lab, ["someone@elsewhere.example"], "to the outside world")
    relayed(lab, relay, msg_id)
    [got] = relay.messages_with(msg_id)
    assert got.tls in ("TLSv1.2", "TLSv1.3")
    assert got.auth_user == USERNAME and got.auth_mechanism in ("PLAIN", "LOGIN")
    assert got.mail_from == ALICE and got.rcpt_to == ("someone@elsewhere.example",)
    assert email.message_from_bytes(got.data)["Subject"] == "to the outside world"
    lab.wait_queue_empty()
    qid = queue_id(lab, msg_id)
    relayhost = f"{clients.RELAY_STANDIN}[{clients.RELAY_STANDIN}]:{clients.RELAY_STANDIN_PORT}"
    assert re.search(rf"{qid}: to=<someone@elsewhere.example>, relay={re.escape(relayhost)},.*status=sent", lab.log())


def test_relayed_mail_carries_our_dkim_signature(lab: Lab, relay: RelayStandIn) -> None:
    """OpenDKIM (issue 4) signs before the relay, and the signature still verifies on the
    bytes the relay receives. SES adds its own Easy DKIM signature on top; both have d= the
    From domain, so DKIM aligns either way."""
    msg_id = submit(lab, ["someone@elsewhere.example"], "signed before it leaves")
    relayed(lab, relay, msg_id)
    [got] = relay.messages_with(msg_id)
    signature = email.message_from_bytes(got.data)["DKIM-Signature"]
    assert signature is not None, got.data[:500]
    tags = dict(t.strip().split("=", 1) for t in re.sub(r"\s+", "", str(signature)).split(";") if "=" in t)
    assert tags["d"] == "example.com"
    assert "from" in tags["h"].lower().split(":")
    dns = published_dns(lab)
    assert dkim.verify(got.data, dnsfunc=lambda name, timeout=5: dns.get(name, b""))


def test_local_mail_never_reaches_the_relay(lab: Lab, relay: RelayStandIn) -> None:
    submitted = submit(lab, [BOB], "alice to bob, both local")
    inbound = clients.message("someone@outside.example", [BOB], "inbound on 25")
    with clients.smtp(25) as conn:
        conn.ehlo("mx.outside.example")
        conn.send_message(inbound)
    lab.wait_queue_empty()
    for msg_id in (submitted, str(inbound["Message-ID"])):
        assert [p for p in lab.maildir_files(BOB) if msg_id.encode() in p.read_bytes()], msg_id
        assert not relay.messages_with(msg_id)
        assert re.search(rf"{queue_id(lab, msg_id)}: to=<{BOB}>, relay=.*lmtp.*status=sent", lab.log())


# -- failures of the relay keep mail queued ------------------------------------------------


def test_relay_tempfail_keeps_mail_queued_until_a_flush(lab: Lab, relay: RelayStandIn) -> None:
    relay.mode = "tempfail"
    msg_id = submit(lab, ["later@elsewhere.example"], "relay says try later")
    qid = queue_id(lab, msg_id)
    reasons = deferred(lab, qid)
    assert any("451" in r for r in reasons), reasons
    assert [a for a in relay.attempts_from(ALICE) if a.mode == "tempfail" and a.authenticated]
    assert not relay.messages_with(msg_id)
    assert_not_bounced(lab, qid, msg_id)

    relay.mode = "accept"
    flush(lab)
    relayed(lab, relay, msg_id)
    lab.wait_queue_empty()
    assert_not_bounced(lab, qid, msg_id)


def test_relay_without_starttls_never_gets_the_login(lab: Lab, relay: RelayStandIn) -> None:
    relay.mode = "notls"
    before = len(relay.attempts)
    msg_id = submit(lab, ["plaintext@elsewhere.example"], "no TLS, no password")
    qid = queue_id(lab, msg_id)
    reasons = deferred(lab, qid)
    assert any("TLS is required" in r for r in reasons), reasons
    assert len(relay.attempts) == before  # postfix gave up after EHLO: no AUTH, no MAIL
    assert_not_bounced(lab, qid, msg_id)
    relay.mode = "accept"
    flush(lab)
    relayed(lab, relay, msg_id)


# What the stand-in may present instead of its certificate, none of which postfix may trust.
WRONG_CERTIFICATES: dict[str, Callable[[RelayLab], tuple[str, str]]] = {
    # the right name, from a CA the lab does not trust (anyone can have one made)
    "another CA": lambda rl: TestCa("Someone Else's CA").issue(catalog.RELAY_STANDIN_NAME),
    # the lab's own CA, for another host: a certificate of some other relay, or of the attacker's
    "another name": lambda rl: rl.ca.issue("smtp.elsewhere.invalid"),
    # the right name, signed by itself: what encrypt, the previous level, let through
    "self-signed": lambda rl: self_signed(catalog.RELAY_STANDIN_NAME),
}


def secrets_in(lines: list[str]) -> list[str]:
    """The lines that carry the relay password, plainly or as AUTH PLAIN and LOGIN send it."""
    forms = [PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
             base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode()]
    return [line for line in lines if any(f in line for f in forms)]


@pytest.mark.parametrize("wrong", list(WRONG_CERTIFICATES))
def test_relay_with_a_wrong_certificate_gets_no_password_and_the_mail_waits(
        relay_lab: RelayLab, lab: Lab, relay: RelayStandIn, wrong: str) -> None:
    relay.use_certificate(*WRONG_CERTIFICATES[wrong](relay_lab))
    lines_before, auths_before = (len(x) for x in relay.transcript())
    mails_before = len(relay.attempts)
    msg_id = submit(lab, ["verified@elsewhere.example"], f"relay with {wrong}'s certificate")
    qid = queue_id(lab, msg_id)
    reasons = deferred(lab, qid)
    assert any("certificate" in r.lower() for r in reasons), reasons
    lines, auths = relay.transcript()
    said = lines[lines_before:]
    assert [line for line in said if line.upper().startswith("STARTTLS")], said  # postfix got as far as TLS
    assert not auths[auths_before:] and not [line for line in said if line.upper().startswith("AUTH")], said
    assert not secrets_in(said)
    assert len(relay.attempts) == mails_before and not relay.messages_with(msg_id)
    assert_not_bounced(lab, qid, msg_id)

    # The right certificate back: the mail that waited leaves, with the login.
    relay.use_certificate(*relay_lab.certificate)
    flush(lab)
    [got] = relayed(lab, relay, msg_id)
    assert got.auth_user == USERNAME
    lab.wait_queue_empty()
    assert_not_bounced(lab, qid, msg_id)


def test_postfix_verifies_the_relay_against_the_layouts_ca_and_name(lab: Lab, relay: RelayStandIn) -> None:
    pf = lab.layout.postfix_dir
    values = lab.run(["postconf", "-c", pf, "-h", "smtp_tls_security_level", "smtp_tls_CAfile",
                      "smtp_tls_secure_cert_match"]).stdout.split("\n")[:3]
    assert values == ["secure", lab.layout.relay_ca_file, catalog.RELAY_STANDIN_NAME]
    assert lab.layout.relay_ca_file.startswith(str(lab.root))  # the lab's own CA, not the machine's bundle
    # and the log shows a verified session with the stand-in
    msg_id = submit(lab, ["trusted@elsewhere.example"], "relay verified")
    relayed(lab, relay, msg_id)
    lab.wait_queue_empty()
    assert re.search(rf"Verified TLS connection established to {re.escape(clients.RELAY_STANDIN)}", lab.log())


def test_wrong_password_defers_and_new_credentials_send_the_queue(lab: Lab, relay: RelayStandIn) -> None:
    failures = relay.auth_failures
    set_credentials(lab, f"{USERNAME}\tnot-the-password\n")
    try:
        msg_id = submit(lab, ["wrongpw@elsewhere.example"], "login refused")
        qid = queue_id(lab, msg_id)
        reasons = deferred(lab, qid)
        assert relay.auth_failures > failures
        assert any("authentication failed" in r.lower() or "535" in r for r in reasons), reasons
        assert_not_bounced(lab, qid, msg_id)
    finally:
        # The script flushes the queue itself: mail that waited for the login leaves now.
        set_credentials(lab, f"{USERNAME}\t{PASSWORD}\n")
    relayed(lab, relay, msg_id)


# -- the credentials file --------------------------------------------------------------------


def test_credentials_are_root_only_and_keyed_by_the_relayhost(lab: Lab, relay: RelayStandIn) -> None:
    pf = lab.layout.postfix_dir
    relayhost = lab.run(["postconf", "-c", pf, "-h", "relayhost"]).stdout.strip()
    assert relayhost == f"[{clients.RELAY_STANDIN}]:{clients.RELAY_STANDIN_PORT}"
    for name in ("sasl_passwd", "sasl_passwd.lmdb"):
        st = (Path(pf) / name).stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, 0, 0), name
    # postfix finds the login under exactly the relayhost string of main.cf
    found = lab.run(["postmap", "-c", pf, "-q", relayhost, f"lmdb:{pf}/sasl_passwd"]).stdout.strip()
    assert found == f"{USERNAME}:{PASSWORD}"
    assert (Path(pf) / "sasl_passwd").read_text() == f"{relayhost} {USERNAME}:{PASSWORD}\n"


@pytest.mark.parametrize("stdin", [
    "", "no-tab-here\n", f"{USERNAME}\t\n", f"\t{PASSWORD}\n", f"{USERNAME}\t{PASSWORD}\nsecond\tline\n",
    f"AKIA:COLON\t{PASSWORD}\n", f"{USERNAME}\tpass word\n",
])
def test_set_relay_credentials_refuses_bad_input_and_keeps_the_login(lab: Lab, relay: RelayStandIn,
                                                                     stdin: str) -> None:
    current = Path(lab.layout.postfix_dir) / "sasl_passwd"
    before = current.read_text()
    with pytest.raises(LabError) as err:
        set_credentials(lab, stdin)
    assert current.read_text() == before
    assert PASSWORD not in str(err.value) and "not-the-password" not in str(err.value)
    # and no temporary file is left behind
    assert {p.name for p in Path(lab.layout.postfix_dir).glob("sasl_passwd*")} == {"sasl_passwd", "sasl_passwd.lmdb"}


def test_script_output_never_shows_the_password(lab: Lab, relay: RelayStandIn) -> None:
    out = set_credentials(lab, f"{USERNAME}\t{PASSWORD}\n")
    assert "login for" in out and PASSWORD not in out and USERNAME not in out


def test_apply_drops_a_login_that_no_longer_applies(lab: Lab, relay: RelayStandIn) -> None:
    """A login for another relayhost would make postfix try the new relay without AUTH (a
    permanent 530 from SES, so a bounce); with relay none it is just a leftover secret."""
    pf = Path(lab.layout.postfix_dir)
    original = lab.layout
    try:
        lab.layout = dataclasses.replace(original, relayhost=f"[{clients.RELAY_STANDIN}]:2465")
        lab.apply(lab.settings, lab.secrets)
        assert not (pf / "sasl_passwd").exists() and not (pf / "sasl_passwd.lmdb").exists()
        lab.layout = original
        lab.apply(lab.settings, lab.secrets)
        set_credentials(lab, f"{USERNAME}\t{PASSWORD}\n")
        assert (pf / "sasl_passwd").exists()

        none, _ = dev_settings(relay="none")
        lab.apply(none, lab.secrets)
        assert not (pf / "sasl_passwd").exists() and not (pf / "sasl_passwd.lmdb").exists()
        assert lab.run(["postconf", "-c", str(pf), "-h", "relayhost"]).stdout.strip() == ""
        script = render.render(none, lab.layout).scripts["set-relay-credentials.sh"]
        assert "relay is none" in script
    finally:
        lab.layout = original
        ses, _ = dev_settings(relay="ses")
        lab.apply(ses, lab.secrets)
        set_credentials(lab, f"{USERNAME}\t{PASSWORD}\n")
    # Back to relaying: the next message leaves through the stand-in again.
    msg_id = submit(lab, ["again@elsewhere.example"], "relay restored")
    relayed(lab, relay, msg_id)
