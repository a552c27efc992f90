"""Stack settings: read, typed, validated, before any resource exists.

The schema (key, type, default) is Pulumi.yaml's `config:` block, read here, so the defaults a
user sees in Pulumi.yaml are the defaults the program uses, under `pulumi up`, under mocks and
in the lab. `parse` turns raw values into a frozen `Settings` plus a separate `Secrets`; every
problem found is reported at once, each naming its key and how to fix it.

Secrets (mailbox passwords) are kept apart from `Settings` on purpose: the renderer only ever
receives `Settings`, so no template can put a password into a file that travels in user-data.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mailserver.core import catalog

PROJECT = "mailserver"
ROOT = Path(__file__).resolve().parent.parent.parent
PROJECT_FILE = ROOT / "Pulumi.yaml"

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.[a-z][a-z0-9-]*[a-z0-9]$")
_LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")
_ZONE_ID = re.compile(r"^[0-9a-f]{32}$")
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,17}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_RESTRICTION = re.compile(r"^[a-z_]+(?::[\w./-]+)?$")
# Graviton families carry a "g" right after the generation digit: t4g, m7gd, c6gn, im4gn.
_GRAVITON = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)$")
_RELAY_ENDINGS = ("reject_unauth_destination", "defer_unauth_destination", "reject")
_SSH_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$")
MIN_PASSWORD_FLOOR = 8
# The one provider setting the program reads: where SES lives when sesRegion is empty. It keeps
# its namespace in the raw values (see parse), since it is not a key of this program.
AWS_REGION_KEY = "aws:region"
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
DMARC_POLICIES = ("none", "quarantine", "reject")
MTA_STS_MODES = ("testing", "enforce")
BARE_NEWLINE_MODES = ("normalize", "reject", "no")
SMTP_TLS_LEVELS = ("may", "dane")
AUTO_UPDATES = ("all", "security", "off")
# A postscreen DNSBL entry: domain, optional reply filter (=127.0.0.[2..11], ;-separated
# patterns allowed) and optional integer weight (*3, negative for allowlists).
_DNSBL_SITE = re.compile(r"^(?P<domain>[a-z0-9.-]+)(=(?P<filter>[0-9.;\[\]]+))?(\*(?P<weight>-?\d+))?$")
_DNSBL_OCTET = re.compile(r"^(\d{1,3}|\[\d{1,3}(\.\.\d{1,3})?(;\d{1,3}(\.\.\d{1,3})?)*\])$")
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SPF_MECHANISM = re.compile(r"^[+\-~?]?(all|include:\S+|a(:\S+)?|mx(:\S+)?|ip4:[0-9./]+|ip6:[0-9a-fA-F:./]+|exists:\S+"
                            r"|redirect=\S+|exp=\S+)$")


@dataclasses.dataclass(frozen=True)
class Problem:
    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        # Provider keys (aws:region) keep their own namespace.
        key = self.key if ":" in self.key else f"{PROJECT}:{self.key}"
        return f"{key}: {self.message}. Fix: {self.fix}"


class SettingsError(ValueError):
    """One or more invalid settings. `problems` lists them all; str() is what the user reads."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid stack configuration ({len(self.problems)} problem(s)):\n{lines}")

    @property
    def keys(self) -> set[str]:
        return {p.key for p in self.problems}


@dataclasses.dataclass(frozen=True)
class Alias:
    source: str
    targets: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Settings:
    domains: tuple[str, ...]
    hostname: str
    zone_ids: tuple[tuple[str, str], ...]  # (domain, zone id), in the order of domains
    os: str
    ami_id: str
    instance_type: str
    root_volume_size: int
    data_volume_size: int
    data_volume_snapshot_id: str
    snapshot_retention: int
    ssh_user: str
    ssh_public_key: str
    admin_cidrs: tuple[str, ...]
    submission: bool
    acme_server: str
    acme_email: str
    mailboxes: tuple[str, ...]
    aliases: tuple[Alias, ...]
    password_min_length: int
    mydomain: str
    myorigin: str
    inet_interfaces: str
    inet_protocols: str
    mydestination: str
    mynetworks: tuple[str, ...]
    smtpd_banner: str
    message_size_limit: int
    mailbox_size_limit: int
    relay_restrictions: tuple[str, ...]
    relay: str  # none | ses
    ses_region: str  # sesRegion, or the stack's aws:region; empty only with relay none
    spf_extra: tuple[str, ...]
    dmarc_policy: str
    dmarc_pct: int
    dmarc_report_address: str
    dkim_selector: str
    dkim_retired_selectors: tuple[str, ...]
    mta_sts_mode: str
    tls_rpt_address: str
    cloudflare_account_id: str
    fail2ban_max_retry: int
    fail2ban_find_time: int
    fail2ban_ban_time: int
    smtpd_auth_rate_limit: int  # 0: no limit
    postscreen_dnsbl_sites: tuple[str, ...]  # empty: no DNSBL
    postscreen_dnsbl_threshold: int
    smtpd_forbid_bare_newline: str  # normalize | reject | no
    smtp_tls_security_level: str  # may | dane (direct delivery; the relay is always encrypt)
    auto_updates: str  # all | security | off
    blocklists: tuple[str, ...] = ()  # DNSBL zones the doctor queries

    @property
    def primary_domain(self) -> str:
        return self.domains[0]

    @property
    def architecture(self) -> str:
        family = self.instance_type.split(".", 1)[0]
        return "arm64" if _GRAVITON.match(family) else "x86_64"

    @property
    def services(self) -> tuple[catalog.Service, ...]:
        return catalog.enabled_services({"submission": self.submission})

    def zone_id(self, domain: str) -> str:
        return dict(self.zone_ids)[domain]

    @property
    def hostname_zone(self) -> str:
        """The configured domain whose zone holds the mail host's A record."""
        return next(d for d in sorted(self.domains, key=len, reverse=True) if self.hostname.endswith("." + d))


@dataclasses.dataclass(frozen=True)
class Secrets:
    passwords: Mapping[str, str] = dataclasses.field(repr=False)

    def __repr__(self) -> str:  # never print a password, even in a traceback
        return f"Secrets(passwords=<{len(self.passwords)} hidden>)"


# --- schema -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    type: str
    description: str
    default: Any = None
    has_default: bool = False
    secret: bool = False


def schema(project_file: Path = PROJECT_FILE) -> dict[str, Key]:
    """The config keys declared in Pulumi.yaml, in declaration order."""
    doc = yaml.safe_load(project_file.read_text())
    keys = {}
    for name, spec in doc["config"].items():
        keys[name] = Key(name, spec["type"], spec["description"], spec.get("default"),
                         "default" in spec, bool(spec.get("secret", False)))
    return keys


def read_stack_file(path: Path) -> dict[str, Any]:
    """Raw `mailserver:*` values of a Pulumi.<stack>.yaml, plus its aws:region. Encrypted
    values are left out: only the Pulumi CLI can decrypt them."""
    doc = yaml.safe_load(path.read_text()) or {}
    raw = {}
    for full, value in (doc.get("config") or {}).items():
        ns, _, key = full.partition(":")
        if ns == PROJECT and not (isinstance(value, dict) and "secure" in value):
            raw[key] = value
        elif full == AWS_REGION_KEY:
            raw[full] = value
    return raw


# --- parsing ----------------------------------------------------------------------------


def _coerce(key: Key, value: Any, problems: list[Problem]) -> Any:
    if key.type == "array":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(Problem(key.name, "must be a list of strings",
                                    f"pulumi config set --path '{key.name}[0]' VALUE"))
            return []
        return [v.strip() for v in value]
    if key.type == "integer":
        if isinstance(value, bool):
            value = None
        try:
            return int(value)
        except (TypeError, ValueError):
            problems.append(Problem(key.name, f"must be a whole number, got {value!r}",
                                    f"pulumi config set {key.name} <number>"))
            return 0
    if key.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        problems.append(Problem(key.name, f"must be true or false, got {value!r}",
                                f"pulumi config set {key.name} true"))
        return False
    if not isinstance(value, str):
        problems.append(Problem(key.name, f"must be a string, got {value!r}", f"pulumi config set {key.name} VALUE"))
        return ""
    return value.strip()


def is_dns_name(name: str) -> bool:
    return bool(_DNS_NAME.match(name))


def split_address(address: str) -> tuple[str, str] | None:
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL_PART.match(local) or not is_dns_name(domain):
        return None
    return local, domain


def parse(raw: Mapping[str, Any], project_file: Path = PROJECT_FILE) -> tuple[Settings, Secrets]:
    """Validate raw config values (key without namespace -> value) against the schema. The
    stack's aws:region may ride along under its full name (AWS_REGION_KEY)."""
    keys = schema(project_file)
    problems: list[Problem] = []
    v: dict[str, Any] = {}
    for name, key in keys.items():
        if name in raw and raw[name] is not None:
            v[name] = _coerce(key, raw[name], problems)
        elif key.has_default:
            v[name] = key.default
        else:
            how = "pulumi config set --secret" if key.secret else "pulumi config set"
            problems.append(Problem(name, "is required and not set", f"{how} {name} ... ({key.description})"))
            v[name] = [] if key.type == "array" else ""
    for name in sorted(set(raw) - set(keys) - {AWS_REGION_KEY}):
        problems.append(Problem(name, "is not a setting of this program",
                                f"remove it, or check the spelling against Pulumi.yaml ({', '.join(keys)})"))

    def bad(key: str, message: str, fix: str) -> None:
        problems.append(Problem(key, message, fix))

    # Domains and host name.
    domains = [d.lower().rstrip(".") for d in v["domains"]]
    if not domains:
        bad("domains", "no mail domain is configured", "pulumi config set --path 'domains[0]' example.com")
    for d in domains:
        if not is_dns_name(d):
            bad("domains", f"{d!r} is not a valid DNS name", "use a registered domain such as example.com")
    for d in sorted({d for d in domains if domains.count(d) > 1}):
        bad("domains", f"{d} is listed twice", "list each domain once")
    primary = domains[0] if domains else "example.com"
    hostname = (v["hostname"] or f"mail.{primary}").lower().rstrip(".")
    if not is_dns_name(hostname):
        bad("hostname", f"{hostname!r} is not a valid DNS name", f"use a name such as mail.{primary}")
    elif hostname in domains:
        bad("hostname", f"{hostname} is itself a mail domain", f"use a host name inside it, such as mail.{hostname}")
    elif not any(hostname.endswith("." + d) for d in domains):
        bad("hostname", f"{hostname} is outside the mail domains ({', '.join(domains)})",
            f"use a name inside one of them, such as mail.{primary}, so its A record lives in a zone we manage")

    zone_ids: dict[str, str] = {}
    for entry in v["cloudflareZoneIds"]:
        dom, eq, zid = entry.partition("=")
        dom = dom.strip().lower()
        zid = zid.strip().lower()
        if not eq or not _ZONE_ID.match(zid):
            bad("cloudflareZoneIds", f"{entry!r} is not domain=zoneid with a 32-hex zone id",
                "copy the Zone ID from the domain's Overview page in Cloudflare: example.com=023e105f4ecef8ad9ca31a8372d0c353")
        elif dom not in domains:
            bad("cloudflareZoneIds", f"{dom} is not one of the mail domains", "remove it or add it to domains")
        elif dom in zone_ids:
            bad("cloudflareZoneIds", f"{dom} has two zone ids", "keep one entry per domain")
        else:
            zone_ids[dom] = zid
    for d in domains:
        if d not in zone_ids and is_dns_name(d):
            bad("cloudflareZoneIds", f"no Cloudflare zone id for {d}",
                f"pulumi config set --path 'cloudflareZoneIds[{len(zone_ids)}]' {d}=<zone id>")

    # Host.
    if v["os"] not in catalog.OS_IMAGES:
        bad("os", f"unknown OS {v['os']!r}", f"use one of {', '.join(catalog.OS_IMAGES)}")
    if v["amiId"] and not _AMI_ID.match(v["amiId"]):
        bad("amiId", f"{v['amiId']!r} is not an AMI id", "use ami-0123456789abcdef0, or leave empty to look up")
    if not _INSTANCE_TYPE.match(v["instanceType"]):
        bad("instanceType", f"{v['instanceType']!r} is not an EC2 instance type", "use a type such as t4g.small")
    elif (v["instanceType"].split(".")[0] in catalog.XEN_FAMILIES
          and v["instanceType"].split(".")[1] != "metal"):
        bad("instanceType", f"{v['instanceType']} is a Xen type: the mail volume never shows up under its NVMe name",
            "use a Nitro type such as t4g.small, t3.small or m7g.medium")
    if v["rootVolumeSize"] < 10:
        bad("rootVolumeSize", f"{v['rootVolumeSize']} GiB is too small for the image", "use 10 or more")
    if not 1 <= v["dataVolumeSize"] <= catalog.DATA_VOLUME_MAX_GIB:
        bad("dataVolumeSize", f"{v['dataVolumeSize']} GiB is outside what gp3 offers (1 to {catalog.DATA_VOLUME_MAX_GIB})",
            "use e.g. 10; it can grow later, never shrink")
    snapshot_id = v["dataVolumeSnapshotId"].strip().lower()
    if snapshot_id and not _SNAPSHOT_ID.match(snapshot_id):
        bad("dataVolumeSnapshotId", f"{v['dataVolumeSnapshotId']!r} is not an EBS snapshot id",
            "use the id of a snapshot of the mail volume, e.g. snap-0123456789abcdef0, or leave empty")
    if not 1 <= v["snapshotRetention"] <= catalog.SNAPSHOT_RETENTION_MAX:
        bad("snapshotRetention", f"{v['snapshotRetention']} is not a number of snapshots from 1 to "
            f"{catalog.SNAPSHOT_RETENTION_MAX}", "use e.g. 7 (a week of daily snapshots)")
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", v["sshUser"]):
        bad("sshUser", f"{v['sshUser']!r} is not a user name", "use ec2-user for the official CentOS Stream images")
    if v["sshPublicKey"] and not _SSH_KEY.match(v["sshPublicKey"]):
        bad("sshPublicKey", "is not an OpenSSH public key", "paste the one line of ~/.ssh/id_ed25519.pub, or leave empty")

    admin_cidrs = _networks("adminCidrs", v["adminCidrs"], bad)
    if not v["adminCidrs"]:
        bad("adminCidrs", "is empty, so nobody (not even pulumi up) can reach SSH",
            "pulumi config set --path 'adminCidrs[0]' <your public IP>/32")
    for net in admin_cidrs:
        if net.prefixlen == 0 and not v["allowSshFromAnywhere"]:
            bad("adminCidrs", f"{net} opens SSH to the whole internet",
                "use your own address range, or set allowSshFromAnywhere true to accept the risk")

    if v["acmeServer"] not in catalog.ACME_SERVERS:
        bad("acmeServer", f"unknown ACME server {v['acmeServer']!r}",
            f"use one of {', '.join(catalog.ACME_SERVERS)} (staging: letsencrypt_test)")
    acme_email = (v["acmeEmail"] or f"postmaster@{primary}").lower()
    if not split_address(acme_email):
        bad("acmeEmail", f"{acme_email!r} is not an e-mail address", "use an address you read, e.g. you@example.org")

    # Mailboxes, passwords, aliases.
    mailboxes = [m.lower() for m in v["mailboxes"]]
    if not mailboxes:
        bad("mailboxes", "no mailbox is configured", f"pulumi config set --path 'mailboxes[0]' you@{primary}")
    for m in mailboxes:
        parts = split_address(m)
        if parts is None:
            bad("mailboxes", f"{m!r} is not an e-mail address", f"write it as name@{primary}")
        elif parts[1] not in domains:
            bad("mailboxes", f"{m}: domain {parts[1]} is not configured", "add the domain to domains, or fix the address")
    for m in sorted({m for m in mailboxes if mailboxes.count(m) > 1}):
        bad("mailboxes", f"{m} is listed twice", "list each mailbox once")

    min_len = v["passwordMinLength"]
    if min_len < MIN_PASSWORD_FLOOR:
        bad("passwordMinLength", f"{min_len} is below {MIN_PASSWORD_FLOOR}", f"use {MIN_PASSWORD_FLOOR} or more")
    passwords = _passwords(v["mailboxPasswords"], mailboxes, max(min_len, MIN_PASSWORD_FLOOR), bad)

    aliases = _aliases(v["aliases"], domains, mailboxes, bad)

    # Postfix parameters from the seed.
    mydomain = (v["mydomain"] or primary).lower()
    if not is_dns_name(mydomain):
        bad("mydomain", f"{mydomain!r} is not a valid DNS name", f"leave empty for {primary}")
    if v["inetProtocols"] not in ("ipv4", "ipv6", "all"):
        bad("inetProtocols", f"{v['inetProtocols']!r} is not ipv4, ipv6 or all", "use all")
    if not v["inetInterfaces"]:
        bad("inetInterfaces", "is empty", "use all")
    dest_tokens = {t for t in re.split(r"[,\s]+", v["mydestination"].lower()) if t}
    for d in domains:
        if d in dest_tokens or (d == mydomain and "$mydomain" in dest_tokens):
            bad("mydestination", f"lists the mail domain {d}, which would deliver to shell accounts",
                "remove it: mail domains are served by virtual mailboxes")
    mynetworks = _networks("mynetworks", v["mynetworks"], bad)
    for net in mynetworks:
        if net.prefixlen == 0:
            bad("mynetworks", f"{net} lets the whole internet relay through this server (open relay)",
                "list only hosts that must send without a password, e.g. 127.0.0.1/32")
    if not re.match(r"^(\$myhostname|\$\{myhostname\}|" + re.escape(hostname) + r")\b", v["smtpdBanner"]):
        bad("smtpdBanner", "must begin with the host name (RFC 5321 greeting)", "use $myhostname ESMTP")
    for size_key in ("messageSizeLimit", "mailboxSizeLimit"):
        if v[size_key] <= 0:
            bad(size_key, f"{v[size_key]} is not a positive number of bytes", "use e.g. 10485760 (10 MiB)")
    if 0 < v["mailboxSizeLimit"] < v["messageSizeLimit"]:
        bad("mailboxSizeLimit", "is smaller than messageSizeLimit, so one message could never fit",
            "make mailboxSizeLimit at least messageSizeLimit")
    relay = [r.lower() for r in v["relayRestrictions"]]
    for r in relay:
        if not _RESTRICTION.match(r):
            bad("relayRestrictions", f"{r!r} is not a postfix restriction", "use names such as permit_sasl_authenticated")
    if not relay or relay[-1] not in _RELAY_ENDINGS:
        bad("relayRestrictions", "does not end by refusing unauthorised relaying (open relay)",
            "end the list with reject_unauth_destination")
    elif "permit" in relay:
        bad("relayRestrictions", "contains a bare permit, which lets anyone relay (open relay)",
            "remove permit; permit_sasl_authenticated lets your users send")

    # Outbound relay. Amazon SES needs a region: its identities, its SMTP endpoint and the
    # SMTP password (derived per region from the IAM secret key) all depend on it.
    relay_kind = v["relay"]
    if relay_kind not in catalog.RELAYS:
        bad("relay", f"unknown relay {relay_kind!r}",
            "use none (deliver directly, needs AWS to lift the port-25 block) or ses (Amazon SES on port 587)")
    ses_region = v["sesRegion"] or str(raw.get(AWS_REGION_KEY) or "").strip()
    if v["sesRegion"] and not _AWS_REGION.match(v["sesRegion"]):
        bad("sesRegion", f"{v['sesRegion']!r} is not an AWS region", "use a region name such as eu-central-1")
    elif relay_kind == "ses" and not ses_region:
        bad("sesRegion", "relay is ses, but sesRegion is empty and the stack has no aws:region",
            "pulumi config set aws:region eu-central-1, or pulumi config set sesRegion <a region with SES>")
    elif relay_kind == "ses" and not _AWS_REGION.match(ses_region):
        bad("sesRegion", f"the stack's aws:region {ses_region!r} is not an AWS region",
            "fix aws:region, or pulumi config set sesRegion eu-central-1")
    elif relay_kind != "ses":
        ses_region = ""

    # Deliverability records.
    for mech in v["spfExtra"]:
        if not _SPF_MECHANISM.match(mech):
            bad("spfExtra", f"{mech!r} is not an SPF mechanism", "use e.g. include:_spf.example.net or ip4:198.51.100.7")
        elif mech.lstrip("+-~?").lower() == "all":
            bad("spfExtra", "all is added by the program as the final -all", f"remove {mech}")
    if v["dmarcPolicy"] not in DMARC_POLICIES:
        bad("dmarcPolicy", f"unknown DMARC policy {v['dmarcPolicy']!r}", f"use one of {', '.join(DMARC_POLICIES)}")
    if not 1 <= v["dmarcPct"] <= 100:
        bad("dmarcPct", f"{v['dmarcPct']} is not a percentage from 1 to 100", "use 100")
    def report_address(key: str, local: str) -> str:
        """A report mailbox (DMARC, TLS-RPT). Left empty, it is an alias to the first mailbox,
        created here so reports never bounce."""
        nonlocal aliases
        address = (v[key] or f"{local}@{primary}").lower()
        parts = split_address(address)
        if parts is None:
            bad(key, f"{address!r} is not an e-mail address", f"use e.g. {local}@{primary}")
        elif parts[1] in domains and mailboxes and address not in mailboxes \
                and all(a.source != address for a in aliases):
            if v[key]:
                bad(key, f"{address} is neither a mailbox nor an alias, so reports would bounce",
                    f"add it to mailboxes or aliases, or leave {key} empty")
            else:
                aliases = (*aliases, Alias(address, (mailboxes[0],)))
        return address

    dmarc_report = report_address("dmarcReportAddress", "dmarc-reports")
    tls_rpt = report_address("tlsRptAddress", "tls-reports")
    if v["mtaStsMode"] not in MTA_STS_MODES:
        bad("mtaStsMode", f"unknown MTA-STS mode {v['mtaStsMode']!r}", f"use one of {', '.join(MTA_STS_MODES)}")
    if not _ZONE_ID.match(v["cloudflareAccountId"].lower()):
        bad("cloudflareAccountId", f"{v['cloudflareAccountId']!r} is not a 32-hex Cloudflare account id",
            "copy the Account ID from the Overview page of any of your zones in Cloudflare")
    selectors = [v["dkimSelector"], *v["dkimRetiredSelectors"]]
    for sel in selectors:
        if not _SELECTOR.match(sel):
            bad("dkimSelector" if sel == v["dkimSelector"] else "dkimRetiredSelectors",
                f"{sel!r} is not a DKIM selector", "use lower-case letters, digits and hyphens, e.g. mail2026")
    if v["dkimSelector"] in v["dkimRetiredSelectors"]:
        bad("dkimRetiredSelectors", f"{v['dkimSelector']} is the current selector", "list only old selectors")

    blocklists = [b.lower().rstrip(".") for b in v["blocklists"]]
    for zone in blocklists:
        if not is_dns_name(zone):
            bad("blocklists", f"{zone!r} is not a DNS zone", "use a DNSBL zone such as zen.spamhaus.org")
    for zone in sorted({b for b in blocklists if blocklists.count(b) > 1}):
        bad("blocklists", f"{zone} is listed twice", "list each blocklist once")
    _abuse(v, bad)

    if problems:
        raise SettingsError(problems)

    settings = Settings(
        domains=tuple(domains), hostname=hostname,
        zone_ids=tuple((d, zone_ids[d]) for d in domains),
        os=v["os"], ami_id=v["amiId"], instance_type=v["instanceType"],
        root_volume_size=v["rootVolumeSize"], data_volume_size=v["dataVolumeSize"],
        data_volume_snapshot_id=snapshot_id, snapshot_retention=v["snapshotRetention"], ssh_user=v["sshUser"], ssh_public_key=v["sshPublicKey"],
        admin_cidrs=tuple(str(n) for n in admin_cidrs), submission=v["submission"],
        acme_server=v["acmeServer"], acme_email=acme_email,
        mailboxes=tuple(mailboxes), aliases=aliases, password_min_length=min_len,
        mydomain=mydomain, myorigin=v["myorigin"], inet_interfaces=v["inetInterfaces"],
        inet_protocols=v["inetProtocols"], mydestination=v["mydestination"],
        mynetworks=tuple(v["mynetworks"]), smtpd_banner=v["smtpdBanner"],
        message_size_limit=v["messageSizeLimit"], mailbox_size_limit=v["mailboxSizeLimit"],
        relay_restrictions=tuple(relay), relay=relay_kind, ses_region=ses_region,
        spf_extra=tuple(v["spfExtra"]), dmarc_policy=v["dmarcPolicy"], dmarc_pct=v["dmarcPct"],
        dmarc_report_address=dmarc_report, dkim_selector=v["dkimSelector"],
        dkim_retired_selectors=tuple(v["dkimRetiredSelectors"]),
        mta_sts_mode=v["mtaStsMode"], tls_rpt_address=tls_rpt,
        cloudflare_account_id=v["cloudflareAccountId"].lower(),
        blocklists=tuple(blocklists),
        fail2ban_max_retry=v["fail2banMaxRetry"], fail2ban_find_time=v["fail2banFindTime"],
        fail2ban_ban_time=v["fail2banBanTime"], smtpd_auth_rate_limit=v["smtpdAuthRateLimit"],
        postscreen_dnsbl_sites=tuple(x.lower() for x in v["postscreenDnsblSites"]),
        postscreen_dnsbl_threshold=v["postscreenDnsblThreshold"],
        smtpd_forbid_bare_newline=v["smtpdForbidBareNewline"],
        smtp_tls_security_level=v["smtpTlsSecurityLevel"], auto_updates=v["autoUpdates"],
    )
    return settings, Secrets(passwords)


def _abuse(v: Mapping[str, Any], bad: Any) -> None:
    """Brute-force, inbound-abuse and hardening settings."""
    if v["fail2banMaxRetry"] < 1:
        bad("fail2banMaxRetry", f"{v['fail2banMaxRetry']} failures cannot trigger a ban", "use 5 (at least 1)")
    elif v["fail2banMaxRetry"] > 100:
        bad("fail2banMaxRetry", f"{v['fail2banMaxRetry']} guesses per window leaves brute force unchecked", "use 5 (at most 100)")
    if v["fail2banFindTime"] < 60:
        bad("fail2banFindTime", f"{v['fail2banFindTime']} s is too short to catch slow guessing", "use 600 (at least 60 seconds)")
    if v["fail2banBanTime"] < 60:
        bad("fail2banBanTime", f"{v['fail2banBanTime']} s barely slows a guesser down", "use 3600 (at least 60 seconds)")
    if v["smtpdAuthRateLimit"] < 0:
        bad("smtpdAuthRateLimit", f"{v['smtpdAuthRateLimit']} is negative", "use 30, or 0 for no limit")
    weights = 0
    for site in v["postscreenDnsblSites"]:
        m = _DNSBL_SITE.match(site.lower())
        # The filter is four octets, each a number or a [list;of..ranges], dots between.
        octets = re.findall(r"\[[^\]]*\]|[^.]+", m.group("filter") or "") if m else []
        if not m or not is_dns_name(m.group("domain")) or (m.group("filter") and (
                ".".join(octets) != m.group("filter") or len(octets) != 4
                or not all(_DNSBL_OCTET.match(o) for o in octets))):
            bad("postscreenDnsblSites", f"{site!r} is not a DNSBL entry",
                "write name[=reply filter][*weight], e.g. zen.spamhaus.org=127.0.0.[2..11]*3")
            continue
        if m.group("domain").endswith("spamhaus.org") and not m.group("filter"):
            # Spamhaus answers 127.255.255.x for refused queries (public resolvers, over quota):
            # unfiltered, that error would count as a listing and block every sender.
            bad("postscreenDnsblSites", f"{site} has no reply filter",
                f"add one, e.g. {m.group('domain')}=127.0.0.[2..11]*3, so Spamhaus' error replies never count")
        weights += max(int(m.group("weight") or 1), 0)
    if v["postscreenDnsblThreshold"] < 1:
        bad("postscreenDnsblThreshold", f"{v['postscreenDnsblThreshold']} would refuse every client", "use 3 (at least 1)")
    elif v["postscreenDnsblSites"] and weights and weights < v["postscreenDnsblThreshold"]:
        bad("postscreenDnsblThreshold",
            f"{v['postscreenDnsblThreshold']} is more than all lists together can score ({weights}), so none ever blocks",
            "lower the threshold or raise the weights (*N) in postscreenDnsblSites")
    if v["smtpdForbidBareNewline"] not in BARE_NEWLINE_MODES:
        bad("smtpdForbidBareNewline", f"unknown value {v['smtpdForbidBareNewline']!r}",
            f"use one of {', '.join(BARE_NEWLINE_MODES)} (normalize is safe against SMTP smuggling and loses no mail)")
    if v["smtpTlsSecurityLevel"] not in SMTP_TLS_LEVELS:
        bad("smtpTlsSecurityLevel", f"unknown level {v['smtpTlsSecurityLevel']!r}",
            f"use one of {', '.join(SMTP_TLS_LEVELS)}; encrypt would refuse every receiver without TLS")
    if v["autoUpdates"] not in AUTO_UPDATES:
        bad("autoUpdates", f"unknown value {v['autoUpdates']!r}", f"use one of {', '.join(AUTO_UPDATES)}")


def _networks(key: str, values: list[str], bad: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for text in values:
        bare = re.sub(r"^\[([^\]]+)\]", r"\1", text)  # postfix writes IPv6 as [::1]/128
        try:
            nets.append(ipaddress.ip_network(bare, strict=True))
        except ValueError as e:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(bare, strict=False)}?"
            except ValueError:
                pass
            bad(key, f"{text!r} is not a valid CIDR ({e})", f"write a network such as 198.51.100.0/24{hint}")
    return nets


def _passwords(entries: list[str], mailboxes: list[str], min_len: int, bad: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        address, sep, password = entry.partition(":")
        address = address.strip().lower()
        seen.add(address)
        if not sep:
            bad("mailboxPasswords", f"entry {i} is not written address:password", "rewrite it as you@example.com:<password>")
            continue
        if split_address(address) is None:
            # Not echoed: with the order swapped (password:address) this text is the password.
            bad("mailboxPasswords", f"entry {i} does not start with an e-mail address",
                "write it as address:password, address first")
            continue
        if address not in mailboxes:
            bad("mailboxPasswords", f"entry {i} is for {address}, which is not in mailboxes", "remove it or add the mailbox")
            continue
        if address in out:
            bad("mailboxPasswords", f"{address} has two passwords", "keep one entry per mailbox")
            continue
        if any(ord(c) < 32 or ord(c) == 127 for c in password):
            bad("mailboxPasswords", f"the password of {address} contains a control character", "choose another password")
            continue
        if len(password) < min_len:
            bad("mailboxPasswords", f"the password of {address} is shorter than {min_len} characters",
                "choose a longer one (passwordMinLength sets the minimum)")
            continue
        out[address] = password
    for m in mailboxes:
        if m not in seen:
            bad("mailboxPasswords", f"no password for {m}",
                f"pulumi config set --secret --path 'mailboxPasswords[{len(entries)}]' '{m}:<password>'")
    return out


def _aliases(entries: list[str], domains: list[str], mailboxes: list[str], bad: Any) -> tuple[Alias, ...]:
    aliases: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        source, eq, rest = entry.partition("=")
        source = source.strip().lower()
        targets = tuple(t.strip().lower() for t in rest.split(",") if t.strip())
        parts = split_address(source)
        if not eq or not targets:
            bad("aliases", f"{entry!r} is not written source=target[,target]", "e.g. sales@example.com=alice@example.com")
            continue
        if parts is None:
            bad("aliases", f"{source!r} is not an e-mail address", "write the alias as name@example.com")
            continue
        if parts[1] not in domains:
            bad("aliases", f"{source}: domain {parts[1]} is not configured", "add the domain to domains, or fix the alias")
            continue
        if source in mailboxes:
            bad("aliases", f"{source} is also a mailbox", "remove the alias or the mailbox")
            continue
        if source in aliases:
            bad("aliases", f"{source} is defined twice", "merge the targets into one entry")
            continue
        aliases[source] = targets
    # RFC 5321 and 2142 ask every mail domain to accept postmaster@ and abuse@. root@ too:
    # with myorigin = $mydomain, the host's own mail to root (cron, bounces) is addressed to
    # root@<domain>, a virtual domain, where it would otherwise bounce unread.
    if mailboxes:
        for d in domains:
            for role in ("postmaster", "abuse", "root"):
                addr = f"{role}@{d}"
                if addr not in aliases and addr not in mailboxes:
                    aliases[addr] = (mailboxes[0],)
    for source, targets in aliases.items():
        for t in targets:
            parts = split_address(t)
            if parts is None:
                bad("aliases", f"{source}: target {t!r} is not an e-mail address", "fix the target address")
            elif parts[1] in domains and t not in mailboxes and t not in aliases:
                bad("aliases", f"{source}: target {t} is neither a mailbox nor an alias, so mail to it would bounce",
                    "add the mailbox, or point the alias at an existing one")
    return tuple(Alias(s, t) for s, t in aliases.items())


def from_pulumi_config() -> tuple[Settings, Secrets]:
    """Read the stack's config through the Pulumi SDK (under `pulumi up` or mocks)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    cfg = pulumi.Config(PROJECT)
    present = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    raw: dict[str, Any] = {}
    for full in present:
        ns, _, name = full.partition(":")
        if ns == PROJECT:
            raw[name] = cfg.get_object(name) if schema().get(name, Key(name, "", "")).type == "array" else cfg.get(name)
    # The provider's region (aws:region), for sesRegion's default.
    raw[AWS_REGION_KEY] = pulumi.Config("aws").get("region")
    return parse(raw)
