"""Stack settings: read, typed, validated, before any resource exists.

The schema (key, type, default) is Pulumi.yaml's `config:` block, read here, so the defaults a
user sees in Pulumi.yaml are the defaults the program uses, under `pulumi up`, under mocks and
in the lab. Raw values become settings in three steps:

1. coercion to the schema's type, or the schema's default (`_coerced`, here), refusing a control
   character (a line break...) in any value, and naming any key no one reads, in any namespace;
2. the one-key rules, a table (settings_rules.RULES), after normalizing (lower case...) and
   filling the defaults built from the primary domain;
3. the cross-field parsers (settings_checks.CROSS_FIELD), which also derive a few fields.

`parse_settings(raw)` returns a frozen `Settings` and needs no secret; `parse_secrets(raw,
settings)` checks the mailbox passwords against those settings; `parse(raw)` does both. Every
problem found is reported at once (`SettingsError`), each naming its key and how to fix it, and
none shows a secret.

Secrets (mailbox passwords) are kept apart from `Settings` on purpose: the renderer only ever
receives `Settings`, so no template can put a password into a file that travels in user-data.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mailserver.core import catalog, settings_checks, settings_rules
from mailserver.core.settings_checks import AWS_REGION_KEY, Alias
from mailserver.core.settings_rules import MIN_PASSWORD_FLOOR, ascii_address, control_character, split_address

# Defined beside the parsers that use them; importable from here, where settings live.
__all__ = ["AWS_REGION_KEY", "Alias"]

PROJECT = "mailserver"
ROOT = Path(__file__).resolve().parent.parent.parent
PROJECT_FILE = ROOT / "Pulumi.yaml"

# Graviton families carry a "g" right after the generation digit: t4g, m7gd, c6gn, im4gn.
_GRAVITON = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)$")


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
class Settings:
    """The validated settings, one field per key of Pulumi.yaml (camelCase there, snake_case
    here), except cloudflareZoneIds (zone_ids), allowSshFromAnywhere (checked, not kept) and the
    secrets; aliases, the report addresses and ses_region carry the defaults derived for them."""

    domains: tuple[str, ...]
    hostname: str
    zone_ids: tuple[tuple[str, str], ...]  # (domain, zone id), in the order of domains
    os: catalog.OsName
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
    acme_server: catalog.AcmeServer
    acme_email: str
    mailboxes: tuple[str, ...]
    aliases: tuple[Alias, ...]
    password_min_length: int
    mydomain: str
    myorigin: str
    inet_interfaces: str
    inet_protocols: catalog.InetProtocols
    mydestination: str
    mynetworks: tuple[str, ...]
    smtpd_banner: str
    message_size_limit: int
    mailbox_size_limit: int
    relay_restrictions: tuple[str, ...]
    relay: catalog.Relay
    ses_region: str  # sesRegion, or the stack's aws:region; empty only with relay none
    spf_extra: tuple[str, ...]
    dmarc_policy: catalog.DmarcPolicy
    dmarc_pct: int
    dmarc_report_address: str
    dkim_selector: str
    dkim_retired_selectors: tuple[str, ...]
    mta_sts_mode: catalog.MtaStsMode
    tls_rpt_address: str
    cloudflare_account_id: str
    fail2ban_max_retry: int
    fail2ban_find_time: int
    fail2ban_ban_time: int
    smtpd_auth_rate_limit: int  # 0: no limit
    postscreen_dnsbl_sites: tuple[str, ...]  # empty: no DNSBL
    postscreen_dnsbl_threshold: int
    smtpd_forbid_bare_newline: catalog.BareNewline
    smtp_tls_security_level: catalog.SmtpTlsLevel  # direct delivery; the relay is always secure (verified)
    auto_updates: catalog.AutoUpdateMode
    # The second region's snapshot copies (empty: none) and the daily self-check (issue 17).
    snapshot_copy_region: str
    self_check: bool
    self_check_deferred_max: int  # deferred messages above this: a warning
    self_check_deferred_hours: int  # the oldest deferred message older than this: an error
    self_check_bounces_max: int  # bounces in the last 24 h above this: a warning
    blocklists: tuple[str, ...] = ()  # DNSBL zones the doctor queries
    # The spam filter (rspamd; DKIM signing runs whatever spam_filter says).
    spam_filter: bool = True
    spam_reject_score: int = 15
    spam_junk_score: int = 6
    greylisting: bool = False
    # The backup MX (catalog.Role "secondary"): off, or on with its own host name.
    secondary_mx: bool = False
    secondary_hostname: str = ""

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
        return self.host_zone(self.hostname)

    def host_zone(self, name: str) -> str:
        """The configured domain whose zone holds `name`'s records (the longest that ends it)."""
        return next(d for d in sorted(self.domains, key=len, reverse=True) if name.endswith("." + d))

    @property
    def mx_hosts(self) -> tuple[str, ...]:
        """Every host the MX records name, the primary first, then the backup MX (secondaryMx)."""
        return (self.hostname, self.secondary_hostname) if self.secondary_mx else (self.hostname,)


@dataclasses.dataclass(frozen=True)
class Secrets:
    passwords: Mapping[str, str] = dataclasses.field(repr=False)
    # rspamd's web UI password (rspamdPassword); empty: the host makes a random one.
    rspamd_password: str = dataclasses.field(default="", repr=False)

    def __repr__(self) -> str:  # never print a password, even in a traceback
        return f"Secrets(passwords=<{len(self.passwords)} hidden>, rspamd_password=<hidden>)"


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
    """The config keys declared in Pulumi.yaml, in declaration order. Each call gets its own
    copy of the defaults (lists), so no caller can change another's."""
    return {name: dataclasses.replace(key, default=copy.deepcopy(key.default))
            for name, key in _schema(project_file.read_text())}


@functools.lru_cache(maxsize=4)
def _schema(text: str) -> tuple[tuple[str, Key], ...]:
    """Pulumi.yaml's keys, parsed once per text (parsing it takes PyYAML tens of milliseconds)."""
    doc = yaml.safe_load(text)
    return tuple((name, Key(name, spec["type"], spec["description"], spec.get("default"), "default" in spec,
                            bool(spec.get("secret", False)))) for name, spec in doc["config"].items())


def read_stack_file(path: Path) -> dict[str, Any]:
    """Raw values of a Pulumi.<stack>.yaml: the `mailserver:*` ones by their key alone, every
    other one under its full name (aws:region...), for parse to read aws:region and to name
    the keys it does not know. Encrypted values of the program's keys are left out: only the
    Pulumi CLI can decrypt them. A section of the file Pulumi does not know is refused here."""
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("config") or {}, dict):
        raise SettingsError([Problem(f"{path.name}:config", "is not a mapping of keys to values",
                                     "write it as Pulumi does: config: then one namespace:key: value per line")])
    unknown = sorted(set(doc) - set(catalog.STACK_FILE_SECTIONS))
    if unknown:
        raise SettingsError([Problem(f"{path.name}:{name}", "is not a section of a stack file, so Pulumi ignores "
                                     "all it holds", f"{_did_you_mean(name, catalog.STACK_FILE_SECTIONS)}(sections: "
                                     f"{', '.join(catalog.STACK_FILE_SECTIONS)})") for name in unknown])
    raw: dict[str, Any] = {}
    keys = schema()
    for full, value in (doc.get("config") or {}).items():
        ns, sep, key = str(full).partition(":")
        if ns == PROJECT:
            # A key the program does not know stays, encrypted or not, to be named.
            if not (isinstance(value, dict) and "secure" in value and key in keys):
                raw[key] = value
        else:
            raw[f"{ns}:{key}" if sep else f":{ns}"] = value
    return raw


# --- parsing ----------------------------------------------------------------------------


def parse_settings(raw: Mapping[str, Any], project_file: Path = PROJECT_FILE) -> Settings:
    """Validate raw config values (key without namespace -> value) against the schema; secrets
    are neither needed nor looked at. The stack's aws:region may ride along under its full name
    (AWS_REGION_KEY)."""
    fields, problems = _check_settings(raw, schema(project_file))
    if problems:
        raise SettingsError(problems)
    return Settings(**fields)


def parse_secrets(raw: Mapping[str, Any], settings: Settings, project_file: Path = PROJECT_FILE) -> Secrets:
    """Validate the secret keys of raw config values (mailboxPasswords) against valid settings."""
    secrets, problems = _check_secrets(raw, schema(project_file), settings.mailboxes,
                                       settings.password_min_length)
    if problems:
        raise SettingsError(problems)
    return secrets


def parse(raw: Mapping[str, Any], project_file: Path = PROJECT_FILE) -> tuple[Settings, Secrets]:
    """parse_settings and parse_secrets at once: one SettingsError lists the problems of both."""
    keys = schema(project_file)
    fields, problems = _check_settings(raw, keys)
    secrets, secret_problems = _check_secrets(raw, keys, fields["mailboxes"], fields["password_min_length"])
    if problems or secret_problems:
        raise SettingsError([*problems, *secret_problems])
    return Settings(**fields), secrets


def _check_settings(raw: Mapping[str, Any], keys: Mapping[str, Key]) -> tuple[dict[str, Any], list[Problem]]:
    """The fields of Settings, and every problem with the non-secret keys."""
    problems: list[Problem] = []
    v = _coerced(raw, {name: key for name, key in keys.items() if not key.secret}, problems)
    refused = {p.key for p in problems}  # their value is the default now; its rules need not run
    problems += _unknown_keys(raw, keys)
    for name, normalize in settings_rules.NORMALIZE.items():
        v[name] = normalize(v[name])
    primary = settings_checks.primary_domain(v)
    for name, template in settings_rules.DERIVED_DEFAULTS.items():
        v[name] = v[name] or template.format(primary=primary)
    region = raw.get(AWS_REGION_KEY)
    if isinstance(region, str) and control_character(region):
        problems.append(Problem(AWS_REGION_KEY, f"contains a control character ({control_character(region)})",
                                "pulumi config set aws:region eu-central-1"))
        region = None
    v[AWS_REGION_KEY] = region
    problems += [Problem(*found) for found in settings_rules.check(v, primary, skip=refused)]

    def bad(key: str, message: str, fix: str) -> None:
        problems.append(Problem(key, message, fix))

    derived: dict[str, Any] = {}
    for cross_field in settings_checks.CROSS_FIELD:
        derived.update(cross_field(v, bad))
    return {**_settings_fields(v), **derived}, problems


def _settings_fields(v: Mapping[str, Any]) -> dict[str, Any]:
    """The Settings field of each key (snake_case of its name); lists become tuples."""
    fields = {}
    for name, value in v.items():
        field = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        if field in _FIELDS:
            fields[field] = tuple(value) if isinstance(value, list) else value
    return fields


def _check_secrets(raw: Mapping[str, Any], keys: Mapping[str, Key], mailboxes: Iterable[str],
                   min_length: int) -> tuple[Secrets, list[Problem]]:
    """The secrets, and every problem with the secret keys. No message shows a password."""
    problems: list[Problem] = []
    v = _coerced(raw, {name: key for name, key in keys.items() if key.secret}, problems)
    if any(p.key == "mailboxPasswords" and "list of strings" in p.message for p in problems):
        return Secrets({}), problems  # not a list: which mailbox lacks a password is not known yet

    def bad(key: str, message: str, fix: str) -> None:
        problems.append(Problem(key, message, fix))

    passwords = _passwords(v["mailboxPasswords"], list(mailboxes), max(min_length, MIN_PASSWORD_FLOOR), bad)
    rspamd = v["rspamdPassword"]
    if rspamd and len(rspamd) < MIN_PASSWORD_FLOOR:
        bad("rspamdPassword", f"is shorter than {MIN_PASSWORD_FLOOR} characters",
            "pulumi config set --secret rspamdPassword <a longer password>, or rm it for a random one")
    elif rspamd and any(c in rspamd for c in '"\\$'):
        # It is written inside a quoted string of rspamd's configuration, where libucl expands
        # $VARIABLES, and a leading $ marks a hashed password.
        bad("rspamdPassword", "contains a double quote, a backslash or a dollar sign",
            "choose a password without \", \\ and $ (pulumi config set --secret rspamdPassword ...)")
    return Secrets(passwords, rspamd), problems


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]}? " if close else ""


def _unknown_keys(raw: Mapping[str, Any], keys: Mapping[str, Key]) -> list[Problem]:
    """A problem for each key no one reads: not in Pulumi.yaml, in a namespace other than the
    program's and its providers' (mailsrever:domains), or unknown to its provider (aws:regoin).
    Only names are shown, never a value: a provider key may hold a credential."""
    problems = []
    namespaces = [PROJECT, *catalog.PROVIDER_CONFIG_KEYS]
    for name in sorted(set(raw) - set(keys)):
        ns, sep, key = name.rpartition(":")
        if not sep:
            problems.append(Problem(name, "is not a setting of this program",
                                    f"{_did_you_mean(name, keys)}remove it, or check the spelling against "
                                    f"Pulumi.yaml ({', '.join(keys)})"))
        elif not ns:
            problems.append(Problem(name, "has no namespace, so Pulumi does not read it",
                                    f"write it {PROJECT}:{key} or <provider>:{key}"))
        elif ns not in catalog.PROVIDER_CONFIG_KEYS:
            close = difflib.get_close_matches(ns, namespaces, n=1, cutoff=0.6)
            guess = f"{PROJECT}:{key}" if key in keys else f"{close[0]}:{key}" if close else ""
            problems.append(Problem(name, f"is in namespace {ns}, which neither this program nor its providers read",
                                    f"{f'did you mean {guess}? ' if guess else ''}use one of the namespaces "
                                    f"{', '.join(namespaces)}"))
        elif key not in catalog.PROVIDER_CONFIG_KEYS[ns]:
            known = catalog.PROVIDER_CONFIG_KEYS[ns]
            guess = _did_you_mean(key, known)
            problems.append(Problem(name, f"is not a key the {ns} provider reads",
                                    f"{guess}remove it, or check the spelling" if guess else
                                    f"remove it; {ns} reads {', '.join(known) or 'no key at all'}"))
    return problems


def _coerced(raw: Mapping[str, Any], keys: Mapping[str, Key], problems: list[Problem]) -> dict[str, Any]:
    """Each key's raw value as its schema type, else its default, else a placeholder. A value
    with a control character is refused (an array loses that entry); no secret is shown."""
    v: dict[str, Any] = {}
    for name, key in keys.items():
        coerce, placeholder = _COERCE[key.type]
        v[name] = key.default if key.has_default else placeholder
        if raw.get(name) is not None:
            value, found = _coerced_one(name, key, raw[name], coerce)
            problems += found
            if value is not None:
                v[name] = value
        elif not key.has_default:
            how = "pulumi config set --secret" if key.secret else "pulumi config set"
            problems.append(Problem(name, "is required and not set", f"{how} {name} ... ({key.description})"))
    return v


_CONTROL_FIX = "write the value on one line, without control characters (pulumi config set {} 'VALUE')"


def _coerced_one(name: str, key: Key, value: Any, coerce: Callable[[str, Any], Any]) -> tuple[Any, list[Problem]]:
    """One raw value as its schema type (None when refused), and its problems."""
    if key.type != "array" and isinstance(value, str) and control_character(value):
        return None, [Problem(name, f"contains a control character ({control_character(value)}), which would "
                                    "add a line to a configuration file", _CONTROL_FIX.format(name))]
    try:
        coerced = coerce(name, value)
    except _Uncoercible as e:
        # A secret's value is never shown, even when it is of the wrong type.
        shown = "a secret value" if key.secret else repr(value)
        fix = e.fix.replace("pulumi config set", "pulumi config set --secret") if key.secret else e.fix
        return None, [Problem(name, e.message.format(shown), fix)]
    if key.type != "array":
        return coerced.strip() if isinstance(coerced, str) else coerced, []
    problems, kept = [], []
    for i, item in enumerate(coerced):
        if control_character(item):
            problems.append(Problem(name, f"entry {i} contains a control character ({control_character(item)}), "
                                          "which would add a line to a configuration file",
                                    f"write it on one line (pulumi config set --path '{name}[{i}]' 'VALUE')"))
        else:
            kept.append(item.strip())
    return kept, problems


class _Uncoercible(Exception):
    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message, self.fix = message, fix  # message: {} stands for the value


def _as_array(name: str, value: Any) -> list[str]:
    if isinstance(value, str):  # the Pulumi SDK hands arrays over as JSON text
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's stack
            value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Uncoercible("must be a list of strings",
                           f"pulumi config rm {name}, then pulumi config set --path '{name}[0]' VALUE, one entry "
                           "at a time")
    return list(value)  # stripped once checked for control characters (_coerced_one)


def _as_integer(name: str, value: Any) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError  # int() would read true as 1 and cut 1.5 down to 1
        return int(value)
    except (TypeError, ValueError):
        raise _Uncoercible("must be a whole number, got {}", f"pulumi config set {name} <number>") from None


def _as_boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Uncoercible("must be true or false, got {}", f"pulumi config set {name} true")


def _as_string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Uncoercible("must be a string, got {}", f"pulumi config set {name} VALUE")
    return value


# Schema type -> (coercion, the placeholder a missing or wrong value gets).
_COERCE: dict[str, tuple[Callable[[str, Any], Any], Any]] = {
    "array": (_as_array, []),
    "integer": (_as_integer, 0),
    "boolean": (_as_boolean, False),
    "string": (_as_string, ""),
}
_FIELDS = {f.name for f in dataclasses.fields(Settings)}


def _passwords(entries: list[str], mailboxes: list[str], min_len: int, bad: settings_checks.Report) -> dict[str, str]:
    out: dict[str, str] = {}
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        address, sep, password = entry.partition(":")
        address = ascii_address(address.strip())
        seen.add(address)
        if not sep:
            bad("mailboxPasswords", f"entry {i} is not written address:password",
                "rewrite it as you@example.com:<password>")
            continue
        if split_address(address) is None:
            # Not echoed: with the order swapped (password:address) this text is the password.
            bad("mailboxPasswords", f"entry {i} does not start with an e-mail address",
                "write it as address:password, address first")
            continue
        if address not in mailboxes:
            bad("mailboxPasswords", f"entry {i} is for {address}, which is not in mailboxes",
                "remove it or add the mailbox")
            continue
        if address in out:
            bad("mailboxPasswords", f"{address} has two passwords", "keep one entry per mailbox")
            continue
        if any(ord(c) < 32 or ord(c) == 127 for c in password):
            bad("mailboxPasswords", f"the password of {address} contains a control character",
                "choose another password")
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


def as_role(s: Settings, role: catalog.Role) -> Settings:
    """The settings as the host of `role` sees itself: the secondary under its own name (HELO,
    certificate, SSM host key, acme.sh), everything else shared. Here, not in render.py: the
    doctor needs it, and the self-check ships the doctor without the renderer."""
    return s if role == "primary" else dataclasses.replace(s, hostname=s.secondary_hostname)
