"""The one-key rules of the stack settings: what each key's own value must look like.

`RULES` is a table, key -> rules. A rule finds what is wrong with one value (a whole value, or
each item of a list) and says it as a message and a fix, both `str.format` templates filled
with `value` (the offending value or item), `primary` (the primary mail domain, for fixes that
suggest an address) and whatever else the rule's finder names. Before the rules run,
`NORMALIZE` brings values to the form they are checked and kept in, and `DERIVED_DEFAULTS`
fills the keys whose empty value means something built from the primary domain.

Checks that need two keys or more (the host name inside the mail domains, ...) are the
cross-field parsers of settings_checks.py. The allowed values of enumerated keys are
catalog.py's, written there once. Nothing here echoes a secret: secrets have no rules here
(settings.parse_secrets checks them).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from mailserver.core import catalog

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.[a-z][a-z0-9-]*[a-z0-9]$")
_LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")  # Cloudflare zone and account ids
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,17}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SSH_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$")
_RESTRICTION = re.compile(r"^[a-z_]+(?::[\w./-]+)?$")
_RELAY_ENDINGS = ("reject_unauth_destination", "defer_unauth_destination", "reject")
AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SPF_MECHANISM = re.compile(r"^[+\-~?]?(all|include:\S+|a(:\S+)?|mx(:\S+)?|ip4:[0-9./]+|ip6:[0-9a-fA-F:./]+|exists:\S+"
                            r"|redirect=\S+|exp=\S+)$")
# A postscreen DNSBL entry: domain, optional reply filter (=127.0.0.[2..11], ;-separated
# patterns allowed) and optional integer weight (*3, negative for allowlists).
_DNSBL_SITE = re.compile(r"^(?P<domain>[a-z0-9.-]+)(=(?P<filter>[0-9.;\[\]]+))?(\*(?P<weight>-?\d+))?$")
_DNSBL_OCTET = re.compile(r"^(\d{1,3}|\[\d{1,3}(\.\.\d{1,3})?(;\d{1,3}(\.\.\d{1,3})?)*\])$")
MIN_PASSWORD_FLOOR = 8

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- what names, addresses and networks look like ----------------------------------------


def is_dns_name(name: str) -> bool:
    return bool(_DNS_NAME.match(name))


def split_address(address: str) -> tuple[str, str] | None:
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL_PART.match(local) or not is_dns_name(domain):
        return None
    return local, domain


def is_address(text: str) -> bool:
    return split_address(text) is not None


def network(text: str) -> Network:
    """A CIDR as postfix writes it (IPv6 may be bracketed: [::1]/128). Raises ValueError."""
    return ipaddress.ip_network(re.sub(r"^\[([^\]]+)\]", r"\1", text), strict=True)


def dnsbl_site(text: str) -> re.Match[str] | None:
    """A well-formed postscreen DNSBL entry (groups domain, filter, weight), or None."""
    m = _DNSBL_SITE.match(text)
    if not m or not is_dns_name(m.group("domain")):
        return None
    if m.group("filter"):
        # Four octets, each a number or a [list;of..ranges], dots between.
        octets = re.findall(r"\[[^\]]*\]|[^.]+", m.group("filter"))
        if ".".join(octets) != m.group("filter") or len(octets) != 4 \
                or not all(_DNSBL_OCTET.match(o) for o in octets):
            return None
    return m


# --- rules ------------------------------------------------------------------------------

Finding = Mapping[str, Any]  # the fields of one problem's message and fix


@dataclasses.dataclass(frozen=True)
class Rule:
    find: Callable[[Any], Iterable[Finding]]  # what is wrong with the value, if anything
    message: str
    fix: str
    allowed: tuple[str, ...] = ()  # one_of's values (enumerated())

    def problems(self, value: Any, primary: str) -> Iterator[tuple[str, str]]:
        for found in self.find(value):
            fields = {"primary": primary, **found}
            yield self.message.format(**fields), self.fix.format(**fields)


def when(wrong: Callable[[Any], bool], message: str, fix: str) -> Rule:
    """The whole value is wrong when wrong(value)."""
    return Rule(lambda value: [{"value": value}] if wrong(value) else [], message, fix)


def each(wrong: Callable[[str], bool], message: str, fix: str) -> Rule:
    """One problem per item of a list for which wrong(item)."""
    return Rule(lambda items: [{"value": item} for item in items if wrong(item)], message, fix)


def required(message: str, fix: str) -> Rule:
    return when(lambda value: not value, message, fix)


def unique(message: str, fix: str) -> Rule:
    """One problem per item listed more than once."""
    return Rule(lambda items: [{"value": item} for item in sorted({i for i in items if items.count(i) > 1})],
                message, fix)


def one_of(values: Sequence[str], what: str, hint: str = "") -> Rule:
    """An enumerated key: `values` is catalog's list, `what` names the kind in the message."""
    rule = when(lambda value: value not in values, f"unknown {what} {{value!r}}",
                f"use one of {', '.join(values)}{hint}")
    return dataclasses.replace(rule, allowed=tuple(values))


def at_least(low: int, message: str, fix: str) -> Rule:
    return when(lambda value: value < low, message, fix)


def at_most(high: int, message: str, fix: str) -> Rule:
    return when(lambda value: value > high, message, fix)


def between(low: int, high: int, message: str, fix: str) -> Rule:
    return when(lambda value: not low <= value <= high, message, fix)


def matches(pattern: re.Pattern[str], message: str, fix: str, *, optional: bool = False) -> Rule:
    """The value matches `pattern`; `optional`: or is empty."""
    return when(lambda value: not (optional and not value) and not pattern.match(value), message, fix)


def each_matches(pattern: re.Pattern[str], message: str, fix: str) -> Rule:
    return each(lambda item: not pattern.match(item), message, fix)


def _bad_networks(items: Iterable[str]) -> Iterator[Finding]:
    for text in items:
        try:
            network(text)
        except ValueError as e:
            bare = re.sub(r"^\[([^\]]+)\]", r"\1", text)
            try:
                hint = f"; did you mean {ipaddress.ip_network(bare, strict=False)}?"
            except ValueError:
                hint = ""
            yield {"value": text, "error": e, "hint": hint}


def cidrs() -> Rule:
    """Every item is a network address with its prefix, host bits zero."""
    return Rule(_bad_networks, "{value!r} is not a valid CIDR ({error})",
                "write a network such as 198.51.100.0/24{hint}")


# --- named checks the table uses ----------------------------------------------------------


def _is_xen(instance_type: str) -> bool:
    family, _, size = instance_type.partition(".")
    return bool(_INSTANCE_TYPE.match(instance_type)) and family in catalog.XEN_FAMILIES and size != "metal"


def _whole_internet(text: str) -> bool:
    try:
        return network(text).prefixlen == 0
    except ValueError:
        return False


def _no_relay_refusal(restrictions: list[str]) -> bool:
    return not restrictions or restrictions[-1] not in _RELAY_ENDINGS


def _bare_permit(restrictions: list[str]) -> bool:
    return not _no_relay_refusal(restrictions) and "permit" in restrictions


def _is_all(mechanism: str) -> bool:
    return bool(_SPF_MECHANISM.match(mechanism)) and mechanism.lstrip("+-~?").lower() == "all"


def _unfiltered_spamhaus(sites: Iterable[str]) -> Iterator[Finding]:
    # Spamhaus answers 127.255.255.x for refused queries (public resolvers, over quota):
    # unfiltered, that error would count as a listing and block every sender.
    for site in sites:
        m = dnsbl_site(site)
        if m and m.group("domain").endswith("spamhaus.org") and not m.group("filter"):
            yield {"value": site, "domain": m.group("domain")}


# --- the table ----------------------------------------------------------------------------


def _lower_each(values: list[str]) -> list[str]:
    return [v.lower() for v in values]


def _dns_names(values: list[str]) -> list[str]:
    return [v.lower().rstrip(".") for v in values]


def _canonical_networks(values: list[str]) -> list[str]:
    """Valid networks in Python's spelling (as the security group wants them); others as written."""
    out = []
    for text in values:
        try:
            out.append(str(network(text)))
        except ValueError:
            out.append(text)
    return out


# The form each key is checked and kept in (values arrive stripped, see settings._coerce).
NORMALIZE: dict[str, Callable[[Any], Any]] = {
    "domains": _dns_names,
    "hostname": lambda name: name.lower().rstrip("."),
    "dataVolumeSnapshotId": str.lower,
    "adminCidrs": _canonical_networks,
    "acmeEmail": str.lower,
    "mailboxes": _lower_each,
    "mydomain": str.lower,
    "relayRestrictions": _lower_each,
    "cloudflareAccountId": str.lower,
    "blocklists": _dns_names,
    "postscreenDnsblSites": _lower_each,
}

# Keys whose empty value stands for a name under the primary domain (Pulumi.yaml says which).
DERIVED_DEFAULTS: dict[str, str] = {
    "hostname": "mail.{primary}",
    "acmeEmail": "postmaster@{primary}",
    "mydomain": "{primary}",
}

_NOT_DNS = "{value!r} is not a valid DNS name"
_SIZE_FIX = "use e.g. 10485760 (10 MiB)"
_SELECTOR_FIX = "use lower-case letters, digits and hyphens, e.g. mail2026"

RULES: dict[str, tuple[Rule, ...]] = {
    "domains": (
        required("no mail domain is configured", "pulumi config set --path 'domains[0]' example.com"),
        each(lambda d: not is_dns_name(d), _NOT_DNS, "use a registered domain such as example.com"),
        unique("{value} is listed twice", "list each domain once"),
    ),
    "hostname": (when(lambda h: not is_dns_name(h), _NOT_DNS, "use a name such as mail.{primary}"),),
    # Host.
    "os": (one_of(catalog.OS_NAMES, "OS"),),
    "amiId": (matches(_AMI_ID, "{value!r} is not an AMI id", "use ami-0123456789abcdef0, or leave empty to look up",
                      optional=True),),
    "instanceType": (
        matches(_INSTANCE_TYPE, "{value!r} is not an EC2 instance type", "use a type such as t4g.small"),
        when(_is_xen, "{value} is a Xen type: the mail volume never shows up under its NVMe name",
             "use a Nitro type such as t4g.small, t3.small or m7g.medium"),
    ),
    "rootVolumeSize": (at_least(10, "{value} GiB is too small for the image", "use 10 or more"),),
    "dataVolumeSize": (between(1, catalog.DATA_VOLUME_MAX_GIB,
                               f"{{value}} GiB is outside what gp3 offers (1 to {catalog.DATA_VOLUME_MAX_GIB})",
                               "use e.g. 10; it can grow later, never shrink"),),
    "dataVolumeSnapshotId": (matches(_SNAPSHOT_ID, "{value!r} is not an EBS snapshot id",
                                     "use the id of a snapshot of the mail volume, e.g. snap-0123456789abcdef0, "
                                     "or leave empty", optional=True),),
    "snapshotRetention": (between(1, catalog.SNAPSHOT_RETENTION_MAX,
                                  f"{{value}} is not a number of snapshots from 1 to {catalog.SNAPSHOT_RETENTION_MAX}",
                                  "use e.g. 7 (a week of daily snapshots)"),),
    "sshUser": (matches(_USER_NAME, "{value!r} is not a user name",
                        "use ec2-user for the official CentOS Stream images"),),
    # Not echoed: a private key pasted here by mistake must not reach the logs.
    "sshPublicKey": (matches(_SSH_KEY, "is not an OpenSSH public key",
                             "paste the one line of ~/.ssh/id_ed25519.pub, or leave empty", optional=True),),
    "adminCidrs": (
        required("is empty, so nobody (not even pulumi up) can reach SSH",
                 "pulumi config set --path 'adminCidrs[0]' <your public IP>/32"),
        cidrs(),
    ),
    "acmeServer": (one_of(catalog.ACME_SERVERS, "ACME server", " (staging: letsencrypt_test)"),),
    "acmeEmail": (when(lambda a: not is_address(a), "{value!r} is not an e-mail address",
                       "use an address you read, e.g. you@example.org"),),
    # Mailboxes.
    "mailboxes": (
        required("no mailbox is configured", "pulumi config set --path 'mailboxes[0]' you@{primary}"),
        each(lambda m: not is_address(m), "{value!r} is not an e-mail address", "write it as name@{primary}"),
        unique("{value} is listed twice", "list each mailbox once"),
    ),
    "passwordMinLength": (at_least(MIN_PASSWORD_FLOOR, f"{{value}} is below {MIN_PASSWORD_FLOOR}",
                                   f"use {MIN_PASSWORD_FLOOR} or more"),),
    # Postfix parameters from the seed.
    "mydomain": (when(lambda d: not is_dns_name(d), _NOT_DNS, "leave empty for {primary}"),),
    "inetInterfaces": (required("is empty", "use all"),),
    "inetProtocols": (one_of(catalog.INET_PROTOCOLS, "protocol family",
                             " (all also serves IPv6 where the subnet has it)"),),
    "mynetworks": (
        cidrs(),
        each(_whole_internet, "{value} lets the whole internet relay through this server (open relay)",
             "list only hosts that must send without a password, e.g. 127.0.0.1/32"),
    ),
    "messageSizeLimit": (at_least(1, "{value} is not a positive number of bytes", _SIZE_FIX),),
    "mailboxSizeLimit": (at_least(1, "{value} is not a positive number of bytes", _SIZE_FIX),),
    "relayRestrictions": (
        each_matches(_RESTRICTION, "{value!r} is not a postfix restriction",
                     "use names such as permit_sasl_authenticated"),
        when(_no_relay_refusal, "does not end by refusing unauthorised relaying (open relay)",
             "end the list with reject_unauth_destination"),
        when(_bare_permit, "contains a bare permit, which lets anyone relay (open relay)",
             "remove permit; permit_sasl_authenticated lets your users send"),
    ),
    # Outbound relay.
    "relay": (one_of(catalog.RELAYS, "relay", " (ses sends through Amazon SES on port 587; direct delivery needs "
                                              "AWS to lift the port-25 block)"),),
    "sesRegion": (matches(AWS_REGION, "{value!r} is not an AWS region", "use a region name such as eu-central-1",
                          optional=True),),
    # Deliverability records.
    "spfExtra": (
        each_matches(_SPF_MECHANISM, "{value!r} is not an SPF mechanism",
                     "use e.g. include:_spf.example.net or ip4:198.51.100.7"),
        each(_is_all, "all is added by the program as the final -all", "remove {value}"),
    ),
    "dmarcPolicy": (one_of(catalog.DMARC_POLICIES, "DMARC policy"),),
    "dmarcPct": (between(1, 100, "{value} is not a percentage from 1 to 100", "use 100"),),
    "dkimSelector": (matches(_SELECTOR, "{value!r} is not a DKIM selector", _SELECTOR_FIX),),
    "dkimRetiredSelectors": (each_matches(_SELECTOR, "{value!r} is not a DKIM selector", _SELECTOR_FIX),),
    "mtaStsMode": (one_of(catalog.MTA_STS_MODES, "MTA-STS mode"),),
    "cloudflareAccountId": (matches(HEX32, "{value!r} is not a 32-hex Cloudflare account id",
                                    "copy the Account ID from the Overview page of any of your zones in Cloudflare"),),
    "blocklists": (
        each(lambda z: not is_dns_name(z), "{value!r} is not a DNS zone", "use a DNSBL zone such as zen.spamhaus.org"),
        unique("{value} is listed twice", "list each blocklist once"),
    ),
    # Brute force, inbound abuse, hardening.
    "fail2banMaxRetry": (
        at_least(1, "{value} failures cannot trigger a ban", "use 5 (at least 1)"),
        at_most(100, "{value} guesses per window leaves brute force unchecked", "use 5 (at most 100)"),
    ),
    "fail2banFindTime": (at_least(60, "{value} s is too short to catch slow guessing",
                                  "use 600 (at least 60 seconds)"),),
    "fail2banBanTime": (at_least(60, "{value} s barely slows a guesser down", "use 3600 (at least 60 seconds)"),),
    "smtpdAuthRateLimit": (at_least(0, "{value} is negative", "use 30, or 0 for no limit"),),
    "postscreenDnsblSites": (
        each(lambda s: dnsbl_site(s) is None, "{value!r} is not a DNSBL entry",
             "write name[=reply filter][*weight], e.g. zen.spamhaus.org=127.0.0.[2..11]*3"),
        Rule(_unfiltered_spamhaus, "{value} has no reply filter",
             "add one, e.g. {domain}=127.0.0.[2..11]*3, so Spamhaus' error replies never count"),
    ),
    "postscreenDnsblThreshold": (at_least(1, "{value} would refuse every client", "use 3 (at least 1)"),),
    "smtpdForbidBareNewline": (one_of(catalog.BARE_NEWLINE_MODES, "value",
                                      " (normalize is safe against SMTP smuggling and loses no mail)"),),
    "smtpTlsSecurityLevel": (one_of(catalog.SMTP_TLS_LEVELS, "level",
                                    "; encrypt would refuse every receiver without TLS"),),
    "autoUpdates": (one_of(catalog.AUTO_UPDATE_MODES, "value"),),
}


def enumerated() -> dict[str, tuple[str, ...]]:
    """The enumerated keys and the values each accepts (Pulumi.yaml's descriptions name them)."""
    return {key: rule.allowed for key, rules in RULES.items() for rule in rules if rule.allowed}


def check(values: Mapping[str, Any], primary: str) -> Iterator[tuple[str, str, str]]:
    """(key, message, fix) of every rule that finds something wrong, in table order."""
    for key, rules in RULES.items():
        for rule in rules:
            for message, fix in rule.problems(values[key], primary):
                yield key, message, fix
