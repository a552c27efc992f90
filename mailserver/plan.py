"""Pure plans the Pulumi components turn into resources: firewall rules, DNS records, names,
client settings. No Pulumi here, so each plan has plain unit tests; the components only wire.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

from . import catalog
from .settings import Settings

WORLD_V4 = "0.0.0.0/0"
WORLD_V6 = "::/0"
DNS_TTL = 300  # short enough to fix a mistake quickly, long enough to cache


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str  # stable resource name suffix
    direction: Literal["ingress", "egress"]
    protocol: str  # tcp | udp
    from_port: int
    to_port: int
    cidr: str
    description: str

    @property
    def is_ipv6(self) -> bool:
        return ipaddress.ip_network(self.cidr).version == 6


def firewall_rules(s: Settings) -> tuple[Rule, ...]:
    """Security-group rules: every enabled public mail port from anywhere (IPv4 and IPv6),
    SSH only from adminCidrs, and the egress the host needs. Nothing else."""
    rules: list[Rule] = []
    for svc in s.services:
        cidrs = s.admin_cidrs if svc.admin_only else (WORLD_V4, WORLD_V6)
        for cidr in cidrs:
            fam = "v6" if ipaddress.ip_network(cidr).version == 6 else "v4"
            suffix = "" if not svc.admin_only else f"-{_slug(cidr)}"
            rules.append(Rule(f"in-{svc.name}-{svc.port}-{fam}{suffix}", "ingress", "tcp", svc.port, svc.port,
                              cidr, svc.description))
    for proto, lo, hi in catalog.EGRESS:
        for cidr in (WORLD_V4, WORLD_V6):
            fam = "v6" if ":" in cidr else "v4"
            rules.append(Rule(f"out-{proto}-{lo}-{fam}", "egress", proto, lo, hi, cidr, f"outbound {proto}/{lo}"))
    return tuple(rules)


def _slug(cidr: str) -> str:
    return cidr.replace(":", "-").replace(".", "-").replace("/", "-")


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


def dns_records(s: Settings, public_ip: str) -> tuple[Record, ...]:
    """The A record of the mail host and one MX per mail domain, each in its own zone."""
    records = [Record("a-host", s.zone_id(s.hostname_zone), s.hostname, "A", public_ip)]
    for d in s.domains:
        records.append(Record(f"mx-{d}", s.zone_id(d), d, "MX", s.hostname, priority=10))
    return tuple(records)


def client_settings(s: Settings) -> dict[str, dict[str, object]]:
    """What a mail client needs, per protocol, from the port table."""
    out: dict[str, dict[str, object]] = {}
    for svc in s.services:
        if svc.admin_only or not svc.auth:
            continue
        security = "SSL/TLS" if svc.tls == "implicit" else "STARTTLS"
        out[svc.name] = {"host": s.hostname, "port": svc.port, "security": security,
                         "username": "your full e-mail address", "auth": "normal password"}
    return out


def ssh_command(s: Settings, ip: str) -> str:
    return f"ssh {s.ssh_user}@{ip}"


PORT25_WARNING = (
    "AWS blocks outbound port 25 on new accounts: this server receives mail but cannot deliver "
    "to other servers until AWS approves the 'Request to remove email sending limitations' form "
    "(it also sets the reverse DNS). Until then outgoing mail waits in the queue."
)
PORT25_SES_NOTE = (
    "AWS blocks outbound port 25 on new accounts; with relay ses that does not stop sending: "
    "outgoing mail leaves through Amazon SES on port 587. Port 25 serves incoming mail only."
)


def port25_warning(s: Settings) -> str:
    return PORT25_SES_NOTE if s.relay == "ses" else PORT25_WARNING


# --- Amazon SES relay (setting relay: ses) ----------------------------------------------


def ses_endpoint(s: Settings) -> str:
    return catalog.SES_SMTP_HOST.format(region=s.ses_region)


def ses_relayhost(s: Settings) -> str:
    """postfix's relayhost for SES. The brackets skip the MX lookup (the endpoint is a host,
    not a mail domain), and the credentials file must use this exact string as its key."""
    return f"[{ses_endpoint(s)}]:{catalog.SES_SMTP_PORT}"


def ses_mail_from_domain(domain: str) -> str:
    return f"{catalog.SES_MAIL_FROM_LABEL}.{domain}"


def dkim_token_placeholder(domain: str, index: int) -> str:
    """Stands for an Easy DKIM token until SES has generated it (see components/ses.py)."""
    return f"{{dkim-token-{index}:{domain}}}"


def ses_records(s: Settings, tokens: dict[str, list[str]] | None = None) -> tuple[Record, ...]:
    """Per mail domain: the three Easy DKIM CNAMEs SES signs with (d=<domain>, so DKIM aligns
    with the From domain), and the MX + SPF of the custom MAIL FROM subdomain (SES's bounce
    address, so SPF passes for a name that aligns with the From domain). `tokens` are the
    tokens SES generated per domain; without them, placeholders stand in."""
    out: list[Record] = []
    for d in s.domains:
        zone = s.zone_id(d)
        found = (tokens or {}).get(d) or [dkim_token_placeholder(d, i) for i in range(catalog.SES_DKIM_TOKENS)]
        for i, token in enumerate(found):
            out.append(Record(f"ses-dkim-{d}-{i}", zone, f"{token}._domainkey.{d}", "CNAME",
                              catalog.SES_DKIM_TARGET.format(token=token)))
        mail_from = ses_mail_from_domain(d)
        out.append(Record(f"ses-mail-from-mx-{d}", zone, mail_from, "MX",
                          catalog.SES_FEEDBACK_MX.format(region=s.ses_region), priority=10))
        # Quoted: Cloudflare's API stores TXT as RFC 1035 strings and warns about bare ones.
        out.append(Record(f"ses-mail-from-spf-{d}", zone, mail_from, "TXT", f'"{catalog.SES_MAIL_FROM_SPF}"'))
    return tuple(out)


def ses_send_policy(identity_arns: list[str]) -> str:
    """The IAM policy of the SMTP user: sending as the mail domains' identities, nothing else.
    A leaked SMTP password then cannot send as any other identity of the account, nor call
    any other AWS API."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SendAsTheMailDomainsOnly",
            "Effect": "Allow",
            "Action": "ses:SendRawEmail",
            "Resource": sorted(identity_arns),
        }],
    }, indent=2)


def ses_smtp_password(secret_access_key: str, region: str) -> str:
    """The SES SMTP password of an IAM secret access key (AWS's documented SigV4 conversion,
    "Obtaining Amazon SES SMTP credentials"). It depends on the region, and the provider's
    `ses_smtp_password_v4` is computed for the provider's region, so sesRegion could not
    use it; deriving it here serves any region."""
    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signature = sign(f"AWS4{secret_access_key}".encode(), "11111111")
    for part in (region, "ses", "aws4_request", "SendRawEmail"):
        signature = sign(signature, part)
    return base64.b64encode(bytes([0x04]) + signature).decode()


def ses_sandbox_note(s: Settings) -> str:
    return (
        f"Amazon SES ({s.ses_region}) starts every account in the sandbox: it delivers only to "
        "verified addresses, at most 200 messages a day, and refuses other recipients, so the "
        "sender gets a bounce. Leave it with a production access request: SES console, Account "
        "dashboard, Request production access (or aws sesv2 put-account-details "
        "--production-access-enabled), answered by AWS within a day or so. SES also refuses mail From "
        "a domain until its DKIM records are verified (usually minutes after pulumi up, at "
        "most 72 hours)."
    )


# Let's Encrypt dates a certificate's notBefore an hour before it signs it, against clock skew
# (https://community.letsencrypt.org/t/time-zone-considerations-needed-for-certificates/23130),
# so notAfter comes up to an hour earlier than issue time + lifetime. In days.
CERT_BACKDATE_DAYS = Fraction(1, 24)


def renewal_days_left(lifetime: float, days: int, attempt: int) -> Fraction:
    """The fewest days a certificate of `lifetime` days can have left when acme.sh's cron job
    makes its `attempt`th try (1 = the first) to renew it, issued with --days `days`.

    From acme.sh 3.1.3 (the file acme.sh): issue() saves Le_RenewalDays (--days, else
    DEFAULT_RENEW, 30) and sets Le_NextRenewTime = Le_CertCreateTime + Le_RenewalDays days
    - 86400 s, a day early; renew() skips a certificate while now < Le_NextRenewTime. The
    cron job installcronjob() writes runs once a day at a fixed minute, so try k comes less
    than k days after Le_NextRenewTime. Le_CertCreateTime is taken after the CA signed, and
    notAfter is at most issue time - CERT_BACKDATE_DAYS + lifetime. ARI plays no part: 3.1.3
    reads the directory's renewalInfo URL but never calls its _get_ARI().
    """
    return Fraction(lifetime) - CERT_BACKDATE_DAYS - (days - 1) - attempt


def acme_renewal_days(lifetimes: Sequence[float] = catalog.CERT_LIFETIMES_DAYS,
                      keep: Fraction = catalog.CERT_RENEW_KEEP,
                      attempts: int = catalog.ACME_RENEWAL_ATTEMPTS) -> int:
    """acme.sh's --days: the most days after issue such that, for every lifetime, the first
    `attempts` daily renewal tries all come while at least `keep` of the lifetime is left.

    --days is fixed when acme.sh issues a certificate, before the CA has said how long it
    will be valid, and kept for every renewal; so it must suit the shortest lifetime Let's
    Encrypt will hand out, and longer ones are simply renewed earlier than they need be
    (a 90-day certificate about every 27 days). No lifetime is read from the certificate:
    acme.sh 3.1.3 has no "renew at a share of the lifetime" setting.
    """
    days = math.floor(min(Fraction(lifetime) * (1 - keep) + 1 - attempts - CERT_BACKDATE_DAYS
                          for lifetime in lifetimes))
    if days < 1:
        raise ValueError(f"no --days renews a {min(lifetimes)}-day certificate {attempts} times "
                         f"with {keep} of it left")
    return days
