"""Deliverability and client-setup records: SPF, DMARC, DKIM, MTA-STS, TLS-RPT, CAA and
RFC 6186/8314 and 5804 (ManageSieve) SRV.

Pure functions from settings to `Record`s, with the A and MX records of the mail host. Large
receivers (Gmail, Outlook) demand SPF or
DKIM alignment plus DMARC since 2024; SRV records let mail clients find the right ports by
themselves. TXT contents are quoted RFC 1035 strings, split at 255 bytes, because that is what
Cloudflare's API stores without warnings or drift.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re

from mailserver.core import catalog, web
from mailserver.core.catalog import SERVICES
from mailserver.core.settings import Settings

DNS_TTL = 300  # short enough to fix a mistake quickly, long enough to cache



@dataclasses.dataclass(frozen=True)
class Record:
    name: str  # resource name suffix
    zone_id: str
    fqdn: str  # full name, never "@" (Cloudflare returns FQDNs; relative names drift)
    type: str
    content: str
    priority: int | None = None
    ttl: int = DNS_TTL
    proxied: bool = False  # Cloudflare cannot proxy SMTP/IMAP: mail records are DNS-only
    # Structured value for the types Cloudflare takes only that way (SRV, CAA); content
    # then stays the zone-file form, for outputs and for comparing with what DNS serves.
    data: tuple[tuple[str, str | int], ...] = ()
    # The doctor's check that verifies this record in DNS (an id of mailserver.doctor's
    # CHECKS), named where the record is planned. Never sent to Cloudflare.
    # Required, but given by keyword after the defaults: kw_only would say so, yet it needs
    # python 3.10 and the self-check imports this on the host's 3.9; __post_init__ enforces it.
    check: str = ""

    def __post_init__(self) -> None:
        if not self.check:
            raise TypeError(f"Record {self.name} needs check=, the doctor's check that verifies it")


def dns_records(s: Settings, public_ip: str, secondary_ip: str = "") -> tuple[Record, ...]:
    """The A record of the mail host and one MX per mail domain, each in its own zone; with
    secondaryMx, the backup MX's A record (at `secondary_ip`) and a second MX per domain, at a
    larger preference number, so senders try it only when the primary does not answer."""
    records = [Record("a-host", s.zone_id(s.hostname_zone), s.hostname, "A", public_ip, check="dns-a")]
    for d in s.domains:
        records.append(Record(f"mx-{d}", s.zone_id(d), d, "MX", s.hostname, priority=catalog.MX_PREFERENCE,
                              check="dns-mx"))
    if s.secondary_mx:
        name = s.secondary_hostname
        records.append(Record("a-secondary", s.zone_id(s.host_zone(name)), name, "A", secondary_ip, check="dns-a"))
        for d in s.domains:
            records.append(Record(f"mx2-{d}", s.zone_id(d), d, "MX", name, priority=catalog.SECONDARY_MX_PREFERENCE,
                                  check="dns-mx"))
    return tuple(records)


TXT_CHUNK = 255
# Only Let's Encrypt may issue for the mail host: acme.sh uses it, and nothing else should.
CAA_ISSUER = "letsencrypt.org"


def txt(value: str) -> str:
    """A TXT value as Cloudflare wants it: quoted strings of at most 255 bytes."""
    if '"' in value or "\\" in value:
        raise ValueError(f"TXT value must not contain quotes or backslashes: {value!r}")
    chunks = [value[i:i + TXT_CHUNK] for i in range(0, len(value), TXT_CHUNK)] or [""]
    return " ".join(f'"{c}"' for c in chunks)


def untxt_strings(content: str) -> list[str]:
    """The character-strings of a quoted TXT value."""
    return re.findall(r'"([^"]*)"', content)


def untxt(content: str) -> str:
    """What a resolver hands a verifier: the quoted strings joined."""
    return "".join(untxt_strings(content))


def spf(s: Settings) -> str:
    """Only the MX hosts (our one mail host) may send for the domain; everything else fails.
    Extra mechanisms (a relay, a newsletter service) go before the final -all."""
    return " ".join(["v=spf1", "mx", *s.spf_extra, "-all"])


def dmarc(s: Settings) -> str:
    return f"v=DMARC1; p={s.dmarc_policy}; pct={s.dmarc_pct}; rua=mailto:{s.dmarc_report_address}; adkim=r; aspf=r"


def dkim_public_key_b64(public_key_pem: str) -> str:
    """The p= value: base64 SubjectPublicKeyInfo, as in a PEM "PUBLIC KEY" block."""
    body = re.sub(r"-----[A-Z ]+-----", "", public_key_pem)
    key = "".join(body.split())
    base64.b64decode(key, validate=True)  # refuse anything that is not base64
    return key


def dkim(public_key_pem: str) -> str:
    return f"v=DKIM1; k=rsa; p={dkim_public_key_b64(public_key_pem)}"


def dkim_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def deliverability_records(s: Settings) -> tuple[Record, ...]:
    """SPF and DMARC per domain, CAA on the mail host, and the report authorisation a
    receiver checks when a domain's DMARC reports go to another domain (RFC 7489 §7.1)."""
    out: list[Record] = []
    report_domain = s.dmarc_report_address.rsplit("@", 1)[1]
    sts = txt(f"v=STSv1; id={policy_id(web.mta_sts_policy(s))}")
    tlsrpt = txt(f"v=TLSRPTv1; rua=mailto:{s.tls_rpt_address}")
    for d in s.domains:
        zone = s.zone_id(d)
        # MTA-STS: senders that support it insist on TLS with a valid certificate for our MX
        # (policy served by the Worker); TLS-RPT: where they report failures.
        out.append(Record(f"mta-sts-{d}", zone, f"_mta-sts.{d}", "TXT", sts, check="dns-mta-sts"))
        out.append(Record(f"tlsrpt-{d}", zone, f"_smtp._tls.{d}", "TXT", tlsrpt, check="dns-tls-rpt"))
        out.append(Record(f"spf-{d}", zone, d, "TXT", txt(spf(s)), check="dns-spf"))
        out.append(Record(f"dmarc-{d}", zone, f"_dmarc.{d}", "TXT", txt(dmarc(s)), check="dns-dmarc"))
        if report_domain != d and report_domain in s.domains:
            out.append(Record(f"dmarc-auth-{d}", s.zone_id(report_domain), f"{d}._report._dmarc.{report_domain}",
                              "TXT", txt("v=DMARC1"), check="dns-dmarc"))
    for host, label in zip(s.mx_hosts, ("host", "secondary"), strict=False):
        for tag, value in (("issue", CAA_ISSUER), ("issuewild", ";")):
            out.append(Record(f"caa-{label}-{tag}", s.zone_id(s.host_zone(host)), host, "CAA", f'0 {tag} "{value}"',
                              data=(("flags", 0), ("tag", tag), ("value", value)), check="dns-caa"))
    return tuple(out)


def srv_records(s: Settings) -> tuple[Record, ...]:
    """RFC 6186 service records from the port table, implicit TLS preferred (RFC 8314), and
    ManageSieve's (RFC 5804 1.8): one per port users log in on, named by the service's name,
    which is each RFC's label. A disabled service is published with target "." ("not offered
    here")."""
    out = []
    enabled = {svc.name for svc in s.services}
    for svc in SERVICES:
        if not svc.auth or svc.admin_only:
            continue
        priority = 0 if svc.tls == "implicit" else 10
        for d in s.domains:
            name = f"_{svc.name}._tcp.{d}"
            if svc.name in enabled:
                prio, weight, port, target = priority, 1, svc.port, s.hostname
            else:
                prio, weight, port, target = 0, 0, 0, "."
            out.append(Record(f"srv-{svc.name}-{d}", s.zone_id(d), name, "SRV", f"{prio} {weight} {port} {target}",
                              priority=prio,
                              data=(("priority", prio), ("weight", weight), ("port", port), ("target", target)),
                              check="dns-srv"))
    return tuple(out)


def planned_records(s: Settings, public_ip: str, secondary_ip: str = "") -> tuple[Record, ...]:
    """Every record the stack creates whose content the settings decide (DKIM needs the keys:
    see dkim_record). MailDns creates exactly these; the doctor compares DNS against them."""
    return (*dns_records(s, public_ip, secondary_ip), *deliverability_records(s), *srv_records(s))


def dkim_record(s: Settings, domain: str, selector: str, public_key_pem: str) -> Record:
    return dkim_txt_record(s, domain, selector, txt(dkim(public_key_pem)))


def dkim_txt_record(s: Settings, domain: str, selector: str, content: str) -> Record:
    """A selector's DKIM record with the TXT content given as is (the doctor's, read from
    the stack's outputs: it has no key to derive it from)."""
    return Record(f"dkim-{selector}-{domain}", s.zone_id(domain), dkim_name(selector, domain), "TXT", content,
                  check="dns-dkim")


def policy_id(text: str) -> str:
    """An id that changes whenever the text changes (MTA-STS requires a new id per policy)."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]
