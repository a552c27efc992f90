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

import base64
import binascii
import dataclasses
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Union

from mailserver.core import address_space, catalog

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.[a-z][a-z0-9-]*[a-z0-9]$")
_LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")  # Cloudflare zone and account ids
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,17}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SSH_KEY = re.compile(r"^(?P<type>ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) (?P<blob>[A-Za-z0-9+/=]+)( .*)?$")
AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# An SPF term (RFC 7208): qualifier, name, then its argument (checked by spf_problem).
_SPF_TERM = re.compile(r"^(?P<qualifier>[+\-~?]?)(?P<name>all|include|exists|a|mx|ip4|ip6|redirect|exp)"
                       r"(?P<rest>[:=/].*)?$", re.IGNORECASE)
_SPF_DUAL_CIDR = re.compile(r"^(?::(?P<domain>[^/]+))?(?:/(?P<v4>\d{1,2}))?(?://(?P<v6>\d{1,3}))?$")
# A macro of an SPF domain-spec (%{i}, %{d2r}, %%, %_, %-).
_SPF_MACRO = re.compile(r"%\{[slodiphcrtv]\d*r?[.\-+,/_=]*\}|%%|%_|%-", re.IGNORECASE)
# A name looked up in DNS for a TXT record may hold underscores (_spf.example.net).
_DOMAIN_SPEC = re.compile(r"^(?=.{1,253}$)((?!-)[a-z0-9_-]{1,63}(?<!-)\.)+"
                          r"(?=[a-z0-9-]*[a-z])(?!-)[a-z0-9-]{1,63}(?<!-)$")
# The postfix parameters a free-text setting may refer to ($myhostname...).
_POSTFIX_REFERENCE = re.compile(r"\$(?:\{(?:myhostname|mydomain)\}|(?:myhostname|mydomain)\b)")
_BANNER_CHARACTERS = re.compile(r"^[ !#%&()*+,\-./0-9:;<=>?@A-Z\[\]^_a-z{|}~]*$")
_BANNER_MAX = 200
_MYDESTINATION_TOKEN = re.compile(r"^(?:localhost\.)?(?:\$(?:myhostname|mydomain)|\$\{(?:myhostname|mydomain)\})$")
# A postscreen DNSBL entry: domain, optional reply filter (=127.0.0.[2..11], ;-separated
# patterns allowed) and optional integer weight (*3, negative for allowlists).
_DNSBL_SITE = re.compile(r"^(?P<domain>[a-z0-9.-]+)(=(?P<filter>[0-9.;\[\]]+))?(\*(?P<weight>-?\d{1,9}))?$")
_DNSBL_OCTET = re.compile(r"^(\d{1,3}|\[\d{1,3}(\.\.\d{1,3})?(;\d{1,3}(\.\.\d{1,3})?)*\])$")
MIN_PASSWORD_FLOOR = 8
MAX_PASSWORD_LENGTH = 128
MAX_MESSAGE_SIZE = 1024**3  # 1 GiB: far beyond what any receiver accepts (Gmail: 150 MB)
DNSBL_WEIGHT_MAX = 100

# Union, not `|`: a module-level alias is evaluated at import, and the self-check imports this
# on the host's python3, which is 3.9 on CentOS Stream 9 (render.SHIPPED_PYTHON).
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# Unicode categories refused in every setting: C0 and C1 controls and DEL (Cc), format
# characters such as zero-width joiners and bidirectional overrides (Cf), line and paragraph
# separators (Zl, Zp), lone surrogates (Cs).
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_CONTROL_NAMES = {"\n": "line feed", "\r": "carriage return", "\t": "tab", "\x00": "NUL", "\x0b": "vertical tab",
                  "\x0c": "form feed", "\x1b": "escape", "\x7f": "delete", "\x85": "next line"}
# IDNA 2003 (Python's codec) and IDNA 2008 (what registries use) spell names holding these
# differently: straße.example is strasse.example to one, xn--strae-oqa.example to the other.
_IDNA_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")


# --- what any value may hold ----------------------------------------------------------


def control_character(text: str) -> str | None:
    """The first control character in text, described ("line feed, U+000A"), or None. None
    belongs in a setting: a line break adds a line, so a parameter, to the configuration file
    the value lands in, and the invisible ones make a value read as something else."""
    for ch in text:
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            name = _CONTROL_NAMES.get(ch) or unicodedata.name(ch, "control character").lower()
            return f"{name}, U+{ord(ch):04X}"
    return None


# --- what names, addresses and networks look like ----------------------------------------


def ascii_name(text: str) -> str:
    """A DNS name as it is checked and kept: lower case, no final dot, each international label
    in its xn-- (punycode) form (IDNA, Python's codec). A name the codec cannot convert, or one
    with a character the IDNA versions disagree on (ß, final sigma, joiners), comes back as
    written, for the DNS-name rule to refuse."""
    name = text.lower().rstrip(".")
    if name.isascii() or _IDNA_DEVIATIONS & set(name):
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def ascii_address(text: str) -> str:
    """An e-mail address with its domain as ascii_name keeps it (the local part lower case)."""
    local, at, domain = text.rpartition("@")
    return f"{local.lower()}@{ascii_name(domain)}" if at else text.lower()


def _valid_a_label(label: str) -> bool:
    """An xn-- label is punycode that decodes, and encodes back to itself."""
    try:
        return label.encode("ascii").decode("idna").encode("idna").decode("ascii") == label
    except UnicodeError:
        return False


def is_dns_name(name: str) -> bool:
    return bool(_DNS_NAME.fullmatch(name)) and all(_valid_a_label(label) for label in name.split(".")
                                                   if label.startswith("xn--"))


def split_address(address: str) -> tuple[str, str] | None:
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local) or not is_dns_name(domain):
        return None
    return local, domain


def is_address(text: str) -> bool:
    return split_address(text) is not None


def network(text: str) -> Network:
    """A CIDR as postfix writes it (IPv6 may be bracketed: [::1]/128). Raises ValueError."""
    return ipaddress.ip_network(re.sub(r"^\[([^\]]+)\]", r"\1", text), strict=True)


def dnsbl_site(text: str) -> re.Match[str] | None:
    """A well-formed postscreen DNSBL entry (groups domain, filter, weight), or None."""
    m = _DNSBL_SITE.fullmatch(text)
    if not m or not is_dns_name(m.group("domain")):
        return None
    if m.group("weight") and abs(int(m.group("weight"))) > DNSBL_WEIGHT_MAX:
        return None
    if m.group("filter"):
        # Four octets, each a number or a [list;of..ranges], dots between.
        octets = re.findall(r"\[[^\]]*\]|[^.]+", m.group("filter"))
        if ".".join(octets) != m.group("filter") or len(octets) != 4 \
                or not all(_DNSBL_OCTET.fullmatch(o) for o in octets):
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
    """The whole value matches `pattern`; `optional`: or is empty."""
    return when(lambda value: not (optional and not value) and not pattern.fullmatch(value), message, fix)


def each_matches(pattern: re.Pattern[str], message: str, fix: str) -> Rule:
    return each(lambda item: not pattern.fullmatch(item), message, fix)


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


def network_coverage(texts: Iterable[str]) -> address_space.Coverage:
    """What the valid networks among texts cover together (invalid ones are their own rule's)."""
    nets = []
    for text in texts:
        try:
            nets.append(network(text))
        except ValueError:
            continue
    return address_space.coverage(nets)


def _wide_networks(items: list[str]) -> Iterator[Finding]:
    covered = network_coverage(items)
    if covered.wide_families():
        yield {"value": ", ".join(items), "share": covered.describe()}


# --- SPF terms ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpfTerm:
    qualifier: str  # "", "+", "-", "~" or "?"
    name: str  # lower case: all, include, exists, a, mx, ip4, ip6, redirect, exp
    networks: tuple[Network, ...] = ()  # ip4, ip6
    cidr_v4: int | None = None  # a, mx: the prefix around each address found (a/24)
    cidr_v6: int | None = None


def _is_domain_spec(text: str) -> bool:
    """An SPF domain-spec: a DNS name, underscores and macros (%{i}, %{d2}...) allowed."""
    return bool(_DOMAIN_SPEC.fullmatch(_SPF_MACRO.sub("m", text).lower()))


def _spf_network(name: str, rest: str) -> Network | None:
    if not rest.startswith(":"):
        return None
    try:
        net = ipaddress.ip_network(rest[1:], strict=False)  # SPF ignores host bits (ip4:192.0.2.1/24)
    except ValueError:
        return None
    return net if f"ip{net.version}" == name else None


def _spf_dual_cidr(qualifier: str, name: str, rest: str) -> SpfTerm | None:
    m = _SPF_DUAL_CIDR.fullmatch(rest)
    if not m or (m.group("domain") is not None and not _is_domain_spec(m.group("domain"))):
        return None
    v4 = int(m.group("v4")) if m.group("v4") else None
    v6 = int(m.group("v6")) if m.group("v6") else None
    if (v4 is not None and v4 > 32) or (v6 is not None and v6 > 128):
        return None
    return SpfTerm(qualifier, name, cidr_v4=v4, cidr_v6=v6)


def spf_term(text: str) -> SpfTerm | None:
    """A well-formed SPF mechanism or modifier (RFC 7208; not ptr, which it deprecates), or None."""
    m = _SPF_TERM.fullmatch(text)
    if not m:
        return None
    qualifier, name, rest = m.group("qualifier"), m.group("name").lower(), m.group("rest") or ""
    if name == "all":
        return None if rest else SpfTerm(qualifier, name)
    if name in ("redirect", "exp"):  # modifiers: name=domain-spec, no qualifier
        return SpfTerm(qualifier, name) if not qualifier and rest.startswith("=") and _is_domain_spec(rest[1:]) \
            else None
    if name in ("include", "exists"):
        return SpfTerm(qualifier, name) if rest.startswith(":") and _is_domain_spec(rest[1:]) else None
    if name in ("ip4", "ip6"):
        net = _spf_network(name, rest)
        return SpfTerm(qualifier, name, networks=(net,)) if net is not None else None
    return _spf_dual_cidr(qualifier, name, rest)


def _spf_is(name: str) -> Callable[[str], bool]:
    def found(text: str) -> bool:
        term = spf_term(text)
        return term is not None and term.name == name
    return found


def _spf_wide(items: list[str]) -> Iterator[Finding]:
    """What the terms that can let a sender pass (any qualifier but -) cover together; a/24 or
    mx/16 count their prefix once, around addresses we cannot see."""
    nets: list[Network] = []
    extra_v4 = extra_v6 = 0
    for item in items:
        term = spf_term(item)
        if term is None or term.qualifier == "-":
            continue
        nets += term.networks
        extra_v4 += 2 ** (32 - term.cidr_v4) if term.cidr_v4 is not None else 0
        extra_v6 += 2 ** (128 - term.cidr_v6) if term.cidr_v6 is not None else 0
    covered = address_space.coverage(nets, extra_v4, extra_v6)
    if covered.wide_families():
        yield {"share": covered.describe()}


# --- named checks the table uses ----------------------------------------------------------


def _is_xen(instance_type: str) -> bool:
    family, _, size = instance_type.partition(".")
    return bool(_INSTANCE_TYPE.fullmatch(instance_type)) and family in catalog.XEN_FAMILIES and size != "metal"


def _no_relay_refusal(restrictions: list[str]) -> bool:
    return not restrictions or restrictions[-1] not in catalog.RELAY_REFUSALS


def _relay_hazard(item: str) -> str:
    """Why a restriction outside catalog.RELAY_RESTRICTIONS is refused."""
    if item == "permit" or item.startswith("permit_"):
        return "it lets the clients it trusts relay without a password (open relay)"
    if item.startswith("check_") or ":" in item:
        return "its table or policy service may answer OK, and that lets the client relay (open relay)"
    if item == "warn_if_reject":
        return "it turns the refusal after it into a log line (open relay)"
    return "it is not one of the restrictions this program accepts"


def _relay_hazards(items: list[str]) -> Iterator[Finding]:
    for item in items:
        if item not in catalog.RELAY_RESTRICTIONS:
            yield {"value": item, "why": _relay_hazard(item)}


def _refused_ssh_user(user: str) -> Iterator[Finding]:
    if user == catalog.SSH_ROOT_USER:
        yield {"value": user, "why": "the host's sshd says PermitRootLogin no"}
    elif user in catalog.SYSTEM_USERS:
        yield {"value": user, "why": "it is a system account without a login shell"}


def _bad_ssh_key(text: str) -> bool:
    """Not an OpenSSH public key line: wrong shape, or a blob that is not base64 of a key of
    the type it names."""
    m = _SSH_KEY.fullmatch(text)
    if not m:
        return True
    try:
        blob = base64.b64decode(m.group("blob"), validate=True)
    except binascii.Error:
        return True
    length = int.from_bytes(blob[:4], "big")
    return blob[4:4 + length] != m.group("type").encode()


def _bad_banner(text: str) -> bool:
    """smtpd_banner: printable ASCII (the SMTP greeting), no quote or backslash, and no postfix
    reference other than $myhostname and $mydomain (so no $mail_version, no ${name?value})."""
    return len(text) > _BANNER_MAX or not _BANNER_CHARACTERS.fullmatch(_POSTFIX_REFERENCE.sub("", text))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def _bad_interfaces(text: str) -> bool:
    """inet_interfaces: all, loopback-only, or the host's own addresses."""
    if text in ("all", "loopback-only"):
        return False
    items = [i for i in re.split(r"[,\s]+", text) if i]
    return not items or not all(_is_ip(i) for i in items)


def _bad_destinations(text: str) -> Iterator[Finding]:
    """mydestination: names, localhost, $myhostname, $mydomain, localhost.$mydomain."""
    for token in re.split(r"[,\s]+", text):
        if token and token != "localhost" and not _MYDESTINATION_TOKEN.fullmatch(token) and not is_dns_name(token):
            yield {"value": token}


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
    return [ascii_name(v) for v in values]


def _addresses(values: list[str]) -> list[str]:
    return [ascii_address(v) for v in values]


def _name_or_reference(value: str) -> str:
    return value if value.startswith("$") else ascii_name(value)


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
# International domain names become their xn-- form here, once, so every plan, record and file
# (DNS, postfix, dovecot, certificates) sees the one ASCII spelling.
NORMALIZE: dict[str, Callable[[Any], Any]] = {
    "domains": _dns_names,
    "hostname": ascii_name,
    "secondaryHostname": ascii_name,
    "dataVolumeSnapshotId": str.lower,
    "adminCidrs": _canonical_networks,
    "acmeEmail": ascii_address,
    "mailboxes": _addresses,
    "mydomain": ascii_name,
    "myorigin": _name_or_reference,
    "inetInterfaces": str.lower,
    "mydestination": str.lower,
    "relayRestrictions": _lower_each,
    "dmarcReportAddress": ascii_address,
    "tlsRptAddress": ascii_address,
    "cloudflareAccountId": str.lower,
    "blocklists": _dns_names,
    "postscreenDnsblSites": _lower_each,
}

# Keys whose empty value stands for a name under the primary domain (Pulumi.yaml says which).
DERIVED_DEFAULTS: dict[str, str] = {
    "hostname": "mail.{primary}",
    "secondaryHostname": "mx2.{primary}",
    "acmeEmail": "postmaster@{primary}",
    "mydomain": "{primary}",
}

_NOT_DNS = "{value!r} is not a valid DNS name"
_IDN_HINT = " (international names are welcome and become their xn-- form; one with ß, ς or a joiner, which " \
            "the IDNA versions spell differently, must be written in its xn-- form)"
_SSH_USER_FIX = "use ec2-user, the login user of the official CentOS Stream images (it has sudo)"
_WIDE = "together cover {share}"
_SIZE_FIX = "use e.g. 10485760 (10 MiB)"
_WEEK = 7 * 24 * 3600
_YEAR = 365 * 24 * 3600
_SELECTOR_FIX = "use lower-case letters, digits and hyphens, e.g. mail2026"

RULES: dict[str, tuple[Rule, ...]] = {
    "domains": (
        required("no mail domain is configured", "pulumi config set --path 'domains[0]' example.com"),
        each(lambda d: not is_dns_name(d), _NOT_DNS, "use a registered domain such as example.com" + _IDN_HINT),
        unique("{value} is listed twice", "list each domain once"),
    ),
    "hostname": (when(lambda h: not is_dns_name(h), _NOT_DNS, "use a name such as mail.{primary}" + _IDN_HINT),),
    # Host.
    "os": (one_of(catalog.OS_NAMES, "OS"),),
    "amiId": (matches(_AMI_ID, "{value!r} is not an AMI id", "use ami-0123456789abcdef0, or leave empty to look up",
                      optional=True),),
    "instanceType": (
        matches(_INSTANCE_TYPE, "{value!r} is not an EC2 instance type", "use a type such as t4g.small"),
        when(_is_xen, "{value} is a Xen type: the mail volume never shows up under its NVMe name",
             "use a Nitro type such as t4g.small, t3.small or m7g.medium"),
    ),
    "rootVolumeSize": (between(10, catalog.DATA_VOLUME_MAX_GIB,
                               f"{{value}} GiB is outside what the image needs and gp3 offers (10 to "
                               f"{catalog.DATA_VOLUME_MAX_GIB})", "use 20"),),
    "dataVolumeSize": (between(1, catalog.DATA_VOLUME_MAX_GIB,
                               f"{{value}} GiB is outside what gp3 offers (1 to {catalog.DATA_VOLUME_MAX_GIB})",
                               "use e.g. 10; it can grow later, never shrink"),),
    "dataVolumeSnapshotId": (matches(_SNAPSHOT_ID, "{value!r} is not an EBS snapshot id",
                                     "use the id of a snapshot of the mail volume, e.g. snap-0123456789abcdef0, "
                                     "or leave empty", optional=True),),
    "snapshotRetention": (between(1, catalog.SNAPSHOT_RETENTION_MAX,
                                  f"{{value}} is not a number of snapshots from 1 to {catalog.SNAPSHOT_RETENTION_MAX}",
                                  "use e.g. 7 (a week of daily snapshots)"),),
    "sshUser": (
        matches(_USER_NAME, "{value!r} is not a user name", _SSH_USER_FIX),
        Rule(_refused_ssh_user, "sshd refuses {value}: {why}, so pulumi up could never log in", _SSH_USER_FIX),
    ),
    # Not echoed: a private key pasted here by mistake must not reach the logs.
    "sshPublicKey": (when(lambda k: bool(k) and _bad_ssh_key(k), "is not an OpenSSH public key",
                          "paste the one line of ~/.ssh/id_ed25519.pub, or leave empty"),),
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
    "passwordMinLength": (between(MIN_PASSWORD_FLOOR, MAX_PASSWORD_LENGTH,
                                  f"{{value}} is not a length from {MIN_PASSWORD_FLOOR} to {MAX_PASSWORD_LENGTH}",
                                  "use 12"),),
    # Postfix parameters from the seed.
    "mydomain": (when(lambda d: not is_dns_name(d), _NOT_DNS, "leave empty for {primary}"),),
    "myorigin": (when(lambda o: not _POSTFIX_REFERENCE.fullmatch(o) and not is_dns_name(o),
                      "{value!r} is neither a domain nor $mydomain or $myhostname", "use $mydomain (the default)"),),
    "inetInterfaces": (when(_bad_interfaces, "{value!r} is not all, loopback-only or a list of the host's addresses",
                            "use all"),),
    "inetProtocols": (one_of(catalog.INET_PROTOCOLS, "protocol family",
                             " (all also serves IPv6 where the subnet has it)"),),
    "mydestination": (Rule(_bad_destinations, "{value!r} is not a domain, localhost, $myhostname or $mydomain",
                           "list names such as $myhostname, localhost.$mydomain, localhost"),),
    "mynetworks": (
        cidrs(),
        Rule(_wide_networks, _WIDE + ": everyone there could relay through this server without a password "
             "(open relay)", "list only hosts that must send without a password, e.g. 127.0.0.1/32"),
    ),
    "smtpdBanner": (when(_bad_banner, f"may hold only printable ASCII without quotes or backslashes, no postfix "
                                      f"reference but $myhostname and $mydomain, at most {_BANNER_MAX} characters",
                         "use $myhostname ESMTP"),),
    "messageSizeLimit": (between(1, MAX_MESSAGE_SIZE, f"{{value}} is not a number of bytes from 1 to "
                                                      f"{MAX_MESSAGE_SIZE} (1 GiB)", _SIZE_FIX),),
    "mailboxSizeLimit": (between(1, catalog.DATA_VOLUME_MAX_GIB * 1024**3,
                                 "{value} is not a number of bytes from 1 to the largest mail volume", _SIZE_FIX),),
    "relayRestrictions": (
        Rule(_relay_hazards, "{value!r} is not allowed: {why}",
             "keep to permit_mynetworks, permit_sasl_authenticated, permit_auth_destination and reject_... "
             "restrictions, ending with reject_unauth_destination"),
        when(_no_relay_refusal, "does not end by refusing unauthorised relaying (open relay)",
             "end the list with reject_unauth_destination"),
    ),
    # Outbound relay.
    "relay": (one_of(catalog.RELAYS, "relay", " (ses sends through Amazon SES on port 587; direct delivery needs "
                                              "AWS to lift the port-25 block)"),),
    "sesRegion": (matches(AWS_REGION, "{value!r} is not an AWS region", "use a region name such as eu-central-1",
                          optional=True),),
    # Deliverability records.
    "spfExtra": (
        each(lambda t: spf_term(t) is None, "{value!r} is not an SPF mechanism",
             "use e.g. include:_spf.example.net or ip4:198.51.100.7"),
        each(_spf_is("all"), "all is added by the program as the final -all", "remove {value}"),
        each(_spf_is("redirect"), "{value} does nothing: receivers ignore redirect= in a record with all, and this "
             "one ends with -all", "use include: instead"),
        Rule(_spf_wide, "these mechanisms " + _WIDE + ": as good as +all, anyone there could send as your domains",
             "list only the ranges your other senders use, e.g. ip4:198.51.100.0/24, or include: their record"),
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
    "fail2banFindTime": (
        at_least(60, "{value} s is too short to catch slow guessing", "use 600 (at least 60 seconds)"),
        at_most(_WEEK, "{value} s is longer than a week", "use 600 (at most 604800 seconds)"),
    ),
    "fail2banBanTime": (
        at_least(60, "{value} s barely slows a guesser down", "use 3600 (at least 60 seconds)"),
        at_most(_YEAR, "{value} s is longer than a year", "use 3600 (at most 31536000 seconds)"),
    ),
    "smtpdAuthRateLimit": (between(0, 1000, "{value} is not a number of AUTH commands per minute from 0 to 1000",
                                   "use 30, or 0 for no limit"),),
    "postscreenDnsblSites": (
        each(lambda s: dnsbl_site(s) is None, "{value!r} is not a DNSBL entry",
             "write name[=reply filter][*weight], e.g. zen.spamhaus.org=127.0.0.[2..11]*3"),
        Rule(_unfiltered_spamhaus, "{value} has no reply filter",
             "add one, e.g. {domain}=127.0.0.[2..11]*3, so Spamhaus' error replies never count"),
    ),
    "postscreenDnsblThreshold": (
        at_least(1, "{value} would refuse every client", "use 3 (at least 1)"),
        at_most(DNSBL_WEIGHT_MAX, f"{{value}} is more than any list may weigh ({DNSBL_WEIGHT_MAX})", "use 3"),
    ),
    "smtpdForbidBareNewline": (one_of(catalog.BARE_NEWLINE_MODES, "value",
                                      " (normalize is safe against SMTP smuggling and loses no mail)"),),
    "smtpTlsSecurityLevel": (one_of(catalog.SMTP_TLS_LEVELS, "level",
                                    "; encrypt would refuse every receiver without TLS"),),
    "autoUpdates": (one_of(catalog.AUTO_UPDATE_MODES, "value"),),
    # The second region's snapshot copies and the daily self-check (issue 17).
    "snapshotCopyRegion": (
        matches(AWS_REGION, "{value!r} is not an AWS region", "use a region name such as eu-west-1, or leave empty",
                optional=True),
        when(lambda r: bool(AWS_REGION.fullmatch(r)) and r not in catalog.AWS_REGIONS,
             "{value!r} is not one of AWS's regions (catalog.AWS_REGIONS)",
             "check the spelling against the AWS console's region list"),
    ),
    "selfCheckDeferredMax": (between(0, 100_000, "{value} is not a number of messages from 0 to 100000", "use 10"),),
    "selfCheckDeferredHours": (between(1, 119, "{value} is not a number of hours from 1 to 119 (postfix returns "
                                              "mail undelivered after 5 days)", "use 24"),),
    "selfCheckBouncesMax": (between(0, 100_000, "{value} is not a number of bounces from 0 to 100000", "use 5"),),
    # The spam filter.
    "spamRejectScore": (between(2, 100, "{value} is not a score from 2 to 100", "use 15 (rspamd's default)"),),
    "spamJunkScore": (between(1, 99, "{value} is not a score from 1 to 99", "use 6 (rspamd's default)"),),
    # The backup MX.
    "secondaryHostname": (when(lambda h: not is_dns_name(h), _NOT_DNS, "use a name such as mx2.{primary}"
                               + _IDN_HINT),),
}


def enumerated() -> dict[str, tuple[str, ...]]:
    """The enumerated keys and the values each accepts (Pulumi.yaml's descriptions name them)."""
    return {key: rule.allowed for key, rules in RULES.items() for rule in rules if rule.allowed}


def check(values: Mapping[str, Any], primary: str, skip: Iterable[str] = ()) -> Iterator[tuple[str, str, str]]:
    """(key, message, fix) of every rule that finds something wrong, in table order; keys in
    `skip` (whose raw value was refused already) are passed over."""
    for key, rules in RULES.items():
        if key in skip:
            continue
        for rule in rules:
            for message, fix in rule.problems(values[key], primary):
                yield key, message, fix
