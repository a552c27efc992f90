"""The network probes of the public ports, as a sender and a mail client see them: each
port's protocol up to TLS, the certificate (name, chain, expiry), TLS 1.0/1.1 refused, no
open relay, no SMTP AUTH before TLS, no plaintext IMAP/POP3/ManageSieve login."""

from __future__ import annotations

import dataclasses
import datetime as dt
import imaplib
import poplib
import smtplib
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from cryptography import x509

from mailserver import clients
from mailserver.core import catalog
from mailserver.doctor.target import Target
from mailserver.doctor.verdicts import Result, expiry_status, relay_status, result, show

# The relay probe's addresses: a reserved TLD (RFC 2606), so nothing is ever delivered.
RELAY_PROBE_SENDER = "doctor@relay-probe.invalid"
RELAY_PROBE_RECIPIENT = "relay-test@relay-probe.invalid"
# The least time given to port 25's banner (see probe_timeout): postscreen's 6 s greet wait
# plus room for a slow network; --timeout below it applies to every other port.
SMTP_BANNER_MIN_TIMEOUT = 10.0


@dataclasses.dataclass
class PortProbe:
    service: catalog.Service
    error: str = ""  # why the port did not answer its protocol; empty when it did
    greeting: str = ""
    cert: bytes = b""
    smtp_auth_before_tls: bool = False
    smtp_auth_after_tls: bool = False

    @property
    def answered(self) -> bool:
        return not self.error


def probe_timeout(t: Target, port: int) -> float:
    """Port 25 is answered by postscreen, which holds the last line of its banner back for
    postscreen_greet_wait (6 s on the VM, postfix's default) from every client it has not
    seen for a day: a shorter read timeout would fail port 25 on a first contact."""
    return max(t.timeout, SMTP_BANNER_MIN_TIMEOUT) if port == catalog.SMTP_PORT else t.timeout


def _noverify() -> ssl.SSLContext:
    return clients.tls_context()


def _imap_class(t: Target, implicit: bool) -> type[imaplib.IMAP4]:
    base: type[imaplib.IMAP4] = clients.IMAPS if implicit else clients.IMAP
    return type("DoctorIMAP", (base,), {"source": t.source})


def _pop3_class(t: Target, implicit: bool) -> type[poplib.POP3]:
    base: type[poplib.POP3] = clients.POP3S if implicit else clients.POP3
    return type("DoctorPOP3", (base,), {"source": t.source})


def _peer_cert(sock: Any) -> bytes:
    return sock.getpeercert(binary_form=True) or b""


def probe_port(t: Target, svc: catalog.Service) -> PortProbe:
    """Speak the port's protocol with the standard library's client, up to TLS."""
    p = PortProbe(svc)
    probe = _PROTOCOL_PROBES.get(svc.protocol)
    try:
        if probe is not None:
            probe(t, p, svc.tls == "implicit")
    except (OSError, smtplib.SMTPException, imaplib.IMAP4.error, poplib.error_proto, EOFError,
            clients.ManageSieveError) as e:
        p.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return p


def _probe_smtp(t: Target, p: PortProbe, implicit: bool) -> None:
    svc = p.service
    with clients.smtp(svc.port, source=t.source, implicit_tls=implicit, ctx=_noverify(), host=t.ip,
                      timeout=probe_timeout(t, svc.port)) as conn:
        code, banner = conn.ehlo("doctor.invalid")
        if code != 250:
            raise smtplib.SMTPException(f"EHLO answered {code}")
        p.greeting = f"{code} {banner.decode(errors='replace').splitlines()[0]}"
        if implicit:
            p.cert = _peer_cert(conn.sock)
            p.smtp_auth_after_tls = conn.has_extn("auth")
        else:
            p.smtp_auth_before_tls = conn.has_extn("auth")
            if not conn.has_extn("starttls"):
                raise smtplib.SMTPException("STARTTLS not offered")
            conn.starttls(context=_noverify())
            p.cert = _peer_cert(conn.sock)
            conn.ehlo("doctor.invalid")
            p.smtp_auth_after_tls = conn.has_extn("auth")


def _probe_imap(t: Target, p: PortProbe, implicit: bool) -> None:
    port = p.service.port
    imap = _imap_class(t, implicit)(t.ip, port, timeout=t.timeout) if not implicit else \
        _imap_class(t, implicit)(t.ip, port, ssl_context=_noverify(), timeout=t.timeout)  # type: ignore[call-arg]
    try:
        p.greeting = imap.welcome.decode(errors="replace")
        if not implicit:
            if "STARTTLS" not in imap.capabilities:
                raise imaplib.IMAP4.error("STARTTLS not offered")
            imap.starttls(ssl_context=_noverify())
        p.cert = _peer_cert(imap.sock)
    finally:
        _quietly(imap.logout)


def _probe_pop3(t: Target, p: PortProbe, implicit: bool) -> None:
    port = p.service.port
    pop = _pop3_class(t, implicit)(t.ip, port, timeout=t.timeout) if not implicit else \
        _pop3_class(t, implicit)(t.ip, port, context=_noverify(), timeout=t.timeout)  # type: ignore[call-arg]
    try:
        p.greeting = pop.getwelcome().decode(errors="replace")
        if not implicit:
            if "STLS" not in pop.capa():
                raise poplib.error_proto("STLS not offered")
            pop.stls(context=_noverify())
        p.cert = _peer_cert(pop.sock)
    finally:
        _quietly(pop.quit)


def _probe_sieve(t: Target, p: PortProbe, implicit: bool) -> None:
    """ManageSieve has no implicit-TLS port (RFC 5804 has STARTTLS only). A login offered
    before TLS is plaintext-login's to judge, so that fault turns that check red, not this one."""
    with clients.managesieve(p.service.port, host=t.ip, source=t.source, timeout=t.timeout) as conn:
        p.greeting = conn.capabilities.get("IMPLEMENTATION") or "ManageSieve"
        if "STARTTLS" not in conn.capabilities:
            raise clients.ManageSieveError("STARTTLS not offered")
        conn.starttls(_noverify())
        p.cert = _peer_cert(conn.sock)
        if not conn.sasl:
            raise clients.ManageSieveError("no SASL mechanism offered after STARTTLS: no one can log in")


# Each protocol's probe fills in the PortProbe (greeting, certificate, AUTH seen) or raises.
_PROTOCOL_PROBES: dict[str, Callable[[Target, PortProbe, bool], None]] = {
    "smtp": _probe_smtp, "imap": _probe_imap, "pop3": _probe_pop3, "sieve": _probe_sieve,
}


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except (OSError, imaplib.IMAP4.error, poplib.error_proto, EOFError, smtplib.SMTPException,
            clients.ManageSieveError):
        pass


def _starttls_protocol(svc: catalog.Service) -> str | None:
    return svc.protocol if svc.tls == "starttls" else None


def check_ports(t: Target) -> tuple[list[Result], dict[int, PortProbe]]:
    out, probes = [], {}
    for svc in t.settings.services:
        if svc.admin_only:
            continue
        p = probe_port(t, svc)
        probes[svc.port] = p
        tls = "STARTTLS" if svc.tls == "starttls" else "implicit TLS"
        expected = f"{svc.protocol.upper()} with {tls}"
        out.append(result("ports", "ok" if p.answered else "error", f"port {svc.port} ({svc.name})", expected,
                          p.greeting[:60] if p.answered else p.error))
    return out, probes


def _skipped(check: str, port: int, expected: str) -> Result:
    return result(check, "skipped", f"port {port}", expected, "port did not answer (see ports)", "")


def check_tls(t: Target, probes: Mapping[int, PortProbe]) -> list[Result]:
    s = t.settings
    out: list[Result] = []
    now = t.now()
    for port, p in probes.items():
        subject = f"port {port}"
        if not p.answered or not p.cert:
            for check, exp in (("tls-name", s.hostname), ("tls-chain", "a trusted chain"),
                               ("tls-expiry", "> a third of its lifetime left"), ("tls-version", "refused")):
                out.append(_skipped(check, port, exp))
            continue
        cert = x509.load_der_x509_certificate(p.cert)
        names = _cert_names(cert)
        out.append(result("tls-name", "ok" if name_matches(s.hostname, names) else "error", subject, s.hostname,
                          show(names) or "no DNS name"))
        out.append(_chain_result(t, p, cert))
        not_before, not_after = validity(cert)
        status, days, lifetime = expiry_status(not_before, not_after, now)
        out.append(result("tls-expiry", status, subject,
                          f"> {lifetime * catalog.CERT_RENEW_KEEP:.0f} days left (a third of {lifetime:.0f})",
                          f"{days:.0f} days left of {lifetime:.0f} ({not_after:%Y-%m-%d})" if days >= 0
                          else f"expired {-days:.0f} days ago ({not_after:%Y-%m-%d})"))
        out.append(tls_version_result(t, p))
    return out


def validity(cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime]:
    """notBefore and notAfter, timezone-aware. cryptography 42 added the *_utc properties; the
    self-check runs this with the host's python3-cryptography, 36 on CentOS Stream 9, whose
    naive not_valid_* are UTC."""
    if hasattr(cert, "not_valid_after_utc"):
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    utc = dt.timezone.utc
    return cert.not_valid_before.replace(tzinfo=utc), cert.not_valid_after.replace(tzinfo=utc)


def tls_version_result(t: Target, p: PortProbe) -> Result:
    """Only a handshake the server itself refused (a TLS alert, a hang-up mid-handshake)
    counts as "refused". A timeout, a STARTTLS the server would not start, or a client that
    cannot offer the old version proves nothing: unknown, so a busy or firewalled port never
    passes for a well-configured one."""
    port = p.service.port
    accepted, unsure = [], []
    for version, name in ((ssl.TLSVersion.TLSv1, "TLS 1.0"), (ssl.TLSVersion.TLSv1_1, "TLS 1.1")):
        try:
            got = clients.tls_handshake(port, _starttls_protocol(p.service), version, source=t.source,
                                        host=t.ip, timeout=probe_timeout(t, port))
        except (OSError, ssl.SSLError) as e:
            unsure.append(f"{name}: {type(e).__name__}: {e}")
            continue
        if got:
            accepted.append(got)
    expected = "TLS 1.0 and 1.1 refused"
    if accepted:
        return result("tls-version", "error", f"port {port}", expected, f"accepted {', '.join(accepted)}")
    if unsure:
        return result("tls-version", "unknown", f"port {port}", expected, show(unsure, 160),
                      "run the doctor again; if it persists, try openssl s_client -tls1 against the port")
    return result("tls-version", "ok", f"port {port}", expected, "refused")


def _cert_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return list(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]


def _chain_result(t: Target, p: PortProbe, cert: x509.Certificate) -> Result:
    subject = f"port {p.service.port}"
    issuer = cert.issuer.rfc4514_string()
    ctx = ssl.create_default_context(cafile=t.cafile) if t.cafile else ssl.create_default_context()
    ctx.check_hostname = False  # the name is tls-name's business
    expected = "chains to a trusted root"
    try:
        clients.tls_peer(p.service.port, _starttls_protocol(p.service), ctx, source=t.source, host=t.ip,
                         timeout=probe_timeout(t, p.service.port), server_name=t.settings.hostname)
    except ssl.SSLCertVerificationError as e:
        # OpenSSL checks the dates after it has built and trusted the chain: an expired or
        # not-yet-valid certificate did chain to a trusted root, and tls-expiry reports it.
        if e.verify_code in (9, 10):
            return result("tls-chain", "ok", subject, expected, f"issued by {issuer} (dates: see tls-expiry)")
        staging = "staging" in issuer.lower() or "fake le" in issuer.lower()
        if staging:
            expected_staging = t.settings.acme_server == "letsencrypt_test"
            return result("tls-chain", "warning" if expected_staging else "error", subject, expected,
                          f"Let's Encrypt staging ({issuer}): clients will not trust it"
                          + (" (acmeServer letsencrypt_test)" if expected_staging else ""))
        if cert.issuer == cert.subject:
            return result("tls-chain", "error", subject, expected, f"self-signed ({issuer})")
        return result("tls-chain", "error", subject, expected, f"{e.verify_message} (issuer {issuer})")
    except (OSError, ConnectionError) as e:
        return result("tls-chain", "unknown", subject, expected, f"handshake failed: {e}")
    return result("tls-chain", "ok", subject, expected, f"issued by {issuer}")


def name_matches(hostname: str, names: Iterable[str]) -> bool:
    """RFC 6125: an exact name, or a wildcard covering exactly one left-most label."""
    host = hostname.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def check_open_relay(t: Target, probes: Mapping[int, PortProbe]) -> list[Result]:
    expected = "RCPT refused as relaying (5xx Relay access denied)"
    if catalog.SMTP_PORT not in probes or not probes[catalog.SMTP_PORT].answered:
        return [_skipped("open-relay", catalog.SMTP_PORT, expected)]
    try:
        code, msg = clients.rcpt_reply(RELAY_PROBE_RECIPIENT, sender=RELAY_PROBE_SENDER, host=t.ip,
                                       source=t.source, timeout=probe_timeout(t, catalog.SMTP_PORT))
    except (OSError, smtplib.SMTPException) as e:
        return [result("open-relay", "unknown", "port 25", expected, f"{type(e).__name__}: {e}")]
    status, found = relay_status(code, msg.decode(errors="replace"))
    fix = None if status != "unknown" else \
        "see why this client was refused (blocklisted or greylisted address?) and run the doctor from another one"
    return [result("open-relay", status, "port 25", expected, found, fix)]


def check_smtp_auth(t: Target, probes: Mapping[int, PortProbe]) -> list[Result]:
    out = []
    p25 = probes.get(catalog.SMTP_PORT)
    if p25 is None or not p25.answered:
        out.append(_skipped("auth-before-tls", catalog.SMTP_PORT, "no AUTH"))
    else:
        offered = p25.smtp_auth_before_tls or p25.smtp_auth_after_tls
        out.append(result("auth-before-tls", "error" if offered else "ok", "port 25", "no AUTH, before or after TLS",
                          "AUTH offered" if offered else "no AUTH"))
    for port, p in probes.items():
        if p.service.protocol != "smtp" or p.service.tls != "starttls" or not p.service.auth:
            continue
        expected = "AUTH only after STARTTLS"
        if not p.answered:
            out.append(_skipped("auth-before-tls", port, expected))
            continue
        # AUTH started in clear, with no credentials: a healthy server refuses the command
        # itself (530 STARTTLS first, 503 not enabled); 334 means it would take a password in
        # clear. The doctor then cancels ("*"): no user name or password is ever sent, so no
        # "authentication failed" line reaches the log that fail2ban's postfix-sasl jail reads.
        try:
            with clients.smtp(port, source=t.source, host=t.ip, timeout=probe_timeout(t, port)) as conn:
                conn.ehlo("doctor.invalid")
                code, msg = conn.docmd("AUTH", "PLAIN")
                if code == 334:
                    conn.docmd("*")
        except (OSError, smtplib.SMTPException) as e:
            out.append(result("auth-before-tls", "unknown", f"port {port}", expected, str(e)))
            continue
        bad = p.smtp_auth_before_tls or code == 334
        found = ("AUTH offered in clear; " if p.smtp_auth_before_tls else "") + \
            f"AUTH in clear answered {code} {msg.decode(errors='replace')}"
        if not bad and not p.smtp_auth_after_tls:
            out.append(result("auth-before-tls", "error", f"port {port}", expected, "no AUTH even after STARTTLS",
                              "submission needs smtpd_sasl_auth_enable=yes (pulumi up)"))
        else:
            out.append(result("auth-before-tls", "error" if bad else "ok", f"port {port}", expected, found))
    return out


def check_plaintext_login(t: Target, probes: Mapping[int, PortProbe]) -> list[Result]:
    """Read from what the server advertises before STARTTLS, never by trying a login: dovecot
    logs a refused plaintext LOGIN or USER as a failed authentication ("auth failed" /
    "tried to use disallowed plaintext auth"), which fail2ban's dovecot filter counts, so a
    few doctor runs would ban the operator. Dovecot advertises exactly what it would accept:
    LOGINDISABLED and no AUTH=PLAIN on IMAP, no USER and no PLAIN/LOGIN in CAPA on POP3, an
    empty SASL capability in ManageSieve's greeting."""
    out = []
    for port, p in probes.items():
        svc = p.service
        read = _PLAINTEXT_READERS.get(svc.protocol)
        if read is None or svc.tls != "starttls":
            continue
        expected = "no login offered before STARTTLS"
        if not p.answered:
            out.append(_skipped("plaintext-login", port, expected))
            continue
        try:
            refused, found = read(t, port)
        except (OSError, EOFError, imaplib.IMAP4.error, poplib.error_proto, clients.ManageSieveError) as e:
            out.append(result("plaintext-login", "unknown", f"port {port}", expected, f"{type(e).__name__}: {e}"))
            continue
        out.append(result("plaintext-login", "ok" if refused else "error", f"port {port}", expected, found))
    return out


PLAINTEXT_MECHANISMS = {"PLAIN", "LOGIN"}  # SASL mechanisms that carry the password itself


def imap_plaintext(capabilities: Iterable[str]) -> tuple[bool, str]:
    """(refused, found) from an IMAP server's capabilities before STARTTLS."""
    caps = {c.upper() for c in capabilities}
    mechs = sorted(c.split("=", 1)[1] for c in caps if c.startswith("AUTH=") and c.split("=", 1)[1] in
                   PLAINTEXT_MECHANISMS)
    problems = ([] if "LOGINDISABLED" in caps else ["LOGIN offered in clear (no LOGINDISABLED)"]) + \
        ([f"AUTH={m} offered in clear" for m in mechs])
    return (not problems), "; ".join(problems) or "LOGINDISABLED, no plaintext AUTH"


def pop3_plaintext(capa: Mapping[str, Sequence[str]]) -> tuple[bool, str]:
    """(refused, found) from a POP3 server's CAPA before STLS."""
    caps = {k.upper(): [v.upper() for v in vs] for k, vs in capa.items()}
    mechs = sorted(set(caps.get("SASL", [])) & PLAINTEXT_MECHANISMS)
    problems = (["USER/PASS offered in clear"] if "USER" in caps else []) + \
        [f"SASL {m} offered in clear" for m in mechs]
    return (not problems), "; ".join(problems) or "no USER, no plaintext SASL"


def _imap_plain(t: Target, port: int) -> tuple[bool, str]:
    conn = _imap_class(t, False)(t.ip, port, timeout=t.timeout)
    try:
        return imap_plaintext(conn.capabilities)
    finally:
        _quietly(conn.logout)


def _pop3_plain(t: Target, port: int) -> tuple[bool, str]:
    conn = _pop3_class(t, False)(t.ip, port, timeout=t.timeout)
    try:
        return pop3_plaintext(conn.capa())
    finally:
        _quietly(conn.quit)


def sieve_plaintext(capabilities: Mapping[str, str]) -> tuple[bool, str]:
    """(refused, found) from a ManageSieve server's greeting, before STARTTLS."""
    mechs = sorted(set(capabilities.get("SASL", "").upper().split()) & PLAINTEXT_MECHANISMS)
    problems = [f"SASL {m} offered in clear" for m in mechs]
    return (not problems), "; ".join(problems) or "no plaintext SASL"


def _sieve_plain(t: Target, port: int) -> tuple[bool, str]:
    with clients.managesieve(port, host=t.ip, source=t.source, timeout=t.timeout) as conn:
        return sieve_plaintext(conn.capabilities)


# How plaintext-login reads each protocol's offer before STARTTLS.
_PLAINTEXT_READERS: dict[str, Callable[[Target, int], tuple[bool, str]]] = {
    "imap": _imap_plain, "pop3": _pop3_plain, "sieve": _sieve_plain,
}
