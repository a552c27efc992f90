"""The cross-field parsers of the stack settings: checks that read two keys or more.

Each parser reads the values after the one-key rules (settings_rules.py) have run, reports
problems through `bad(key, message, fix)`, and returns the `Settings` fields it derives (zone
ids per domain, the aliases with their defaults, the SES region), or nothing. A value that
broke a one-key rule has been reported there; the parsers pass over it rather than report it
twice. `CROSS_FIELD` lists them in the order they run.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from mailserver.core.settings_rules import (
    AWS_REGION,
    HEX32,
    ascii_address,
    ascii_name,
    dnsbl_site,
    is_dns_name,
    network_coverage,
    split_address,
)

# The one provider setting the program reads: where SES lives when sesRegion is empty. It keeps
# its namespace in the raw values, since it is not a key of this program.
AWS_REGION_KEY = "aws:region"

Report = Callable[[str, str, str], None]  # bad(key, message, fix)
Values = Mapping[str, Any]  # config key -> normalized value
Derived = dict[str, Any]  # Settings field -> value


@dataclasses.dataclass(frozen=True)
class Alias:
    source: str
    targets: tuple[str, ...]


def primary_domain(v: Values) -> str:
    """The first mail domain; a stand-in while there is none (a problem then, reported)."""
    return v["domains"][0] if v["domains"] else "example.com"


def hostname_in_domains(v: Values, bad: Report) -> Derived:
    """The host name lies inside a mail domain, so its A record lives in a zone we manage."""
    hostname, domains = v["hostname"], v["domains"]
    if not is_dns_name(hostname):
        return {}  # its own rule said so
    if hostname in domains:
        bad("hostname", f"{hostname} is itself a mail domain", f"use a host name inside it, such as mail.{hostname}")
    elif not any(hostname.endswith("." + d) for d in domains):
        bad("hostname", f"{hostname} is outside the mail domains ({', '.join(domains)})",
            f"use a name inside one of them, such as mail.{primary_domain(v)}, so its A record lives in a zone "
            "we manage")
    return {}


def secondary_mx(v: Values, bad: Report) -> Derived:
    """The backup MX's name lies inside a mail domain (its A record in a zone we manage) and is
    not the primary's: two hosts behind one name would share one A record and one certificate."""
    name, domains = v["secondaryHostname"], v["domains"]
    if not v["secondaryMx"]:
        return {}
    if not is_dns_name(name):
        pass  # its own rule said so
    elif name == v["hostname"]:
        bad("secondaryHostname", f"{name} is the primary's hostname",
            f"use another name, such as mx2.{primary_domain(v)}")
    elif name in domains:
        bad("secondaryHostname", f"{name} is itself a mail domain", f"use a host name inside it, such as mx2.{name}")
    elif not any(name.endswith("." + d) for d in domains):
        bad("secondaryHostname", f"{name} is outside the mail domains ({', '.join(domains)})",
            f"use a name inside one of them, such as mx2.{primary_domain(v)}")
    if v["acmeServer"] == "letsencrypt_test":
        # The secondary verifies the primary's certificate against the OS's CAs (main.cf):
        # staging's CA is in no bundle, so its queue would never drain.
        bad("secondaryMx", "needs certificates the secondary can verify, and letsencrypt_test (staging) issues "
            "untrusted ones: mail queued on the secondary would never reach the primary",
            "set acmeServer letsencrypt, or keep secondaryMx false")
    return {}


def zone_ids(v: Values, bad: Report) -> Derived:
    """cloudflareZoneIds: domain=zoneid, exactly one for each mail domain."""
    domains = v["domains"]
    found: dict[str, str] = {}
    for entry in v["cloudflareZoneIds"]:
        dom, eq, zid = entry.partition("=")
        dom, zid = ascii_name(dom.strip()), zid.strip().lower()
        if not eq or not HEX32.fullmatch(zid):
            bad("cloudflareZoneIds", f"{entry!r} is not domain=zoneid with a 32-hex zone id",
                "copy the Zone ID from the domain's Overview page in Cloudflare: "
                "example.com=023e105f4ecef8ad9ca31a8372d0c353")
        elif dom not in domains:
            bad("cloudflareZoneIds", f"{dom} is not one of the mail domains", "remove it or add it to domains")
        elif dom in found:
            bad("cloudflareZoneIds", f"{dom} has two zone ids", "keep one entry per domain")
        else:
            found[dom] = zid
    for d in domains:
        if d not in found and is_dns_name(d):
            bad("cloudflareZoneIds", f"no Cloudflare zone id for {d}",
                f"pulumi config set --path 'cloudflareZoneIds[{len(found)}]' {d}=<zone id>")
    return {"zone_ids": tuple((d, found[d]) for d in domains if d in found)}


def ssh_from_anywhere(v: Values, bad: Report) -> Derived:
    """adminCidrs may open SSH to the whole internet only with allowSshFromAnywhere: 0.0.0.0/0,
    or anything that together covers as much as address_space calls wide (its two halves...)."""
    covered = network_coverage(v["adminCidrs"])
    if covered.wide_families() and not v["allowSshFromAnywhere"]:
        bad("adminCidrs", f"{', '.join(v['adminCidrs'])} together cover {covered.describe()}: SSH open to the "
            "internet at large", "use your own address range, or set allowSshFromAnywhere true to accept the risk")
    return {}


def mailbox_domains(v: Values, bad: Report) -> Derived:
    """Every mailbox is in a mail domain."""
    for m in v["mailboxes"]:
        parts = split_address(m)
        if parts is not None and parts[1] not in v["domains"]:
            bad("mailboxes", f"{m}: domain {parts[1]} is not configured",
                "add the domain to domains, or fix the address")
    return {}


def aliases(v: Values, bad: Report) -> Derived:
    """aliases, the role aliases every domain needs, and the report addresses (dmarcReportAddress,
    tlsRptAddress): each alias in a mail domain, each target deliverable."""
    found = _alias_entries(v, bad)
    _role_aliases(found, v)
    _alias_targets(found, v, bad)
    _alias_loops(found, bad)
    dmarc = _report_address(v, "dmarcReportAddress", "dmarc-reports", found, bad)
    tls_rpt = _report_address(v, "tlsRptAddress", "tls-reports", found, bad)
    return {"aliases": tuple(Alias(s, t) for s, t in found.items()),
            "dmarc_report_address": dmarc, "tls_rpt_address": tls_rpt}


def _alias_entries(v: Values, bad: Report) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for entry in v["aliases"]:
        source, eq, rest = entry.partition("=")
        source = ascii_address(source.strip())
        targets = tuple(ascii_address(t.strip()) for t in rest.split(",") if t.strip())
        parts = split_address(source)
        if not eq or not targets:
            bad("aliases", f"{entry!r} is not written source=target[,target]",
                "e.g. sales@example.com=alice@example.com")
        elif parts is None:
            bad("aliases", f"{source!r} is not an e-mail address", "write the alias as name@example.com")
        elif parts[1] not in v["domains"]:
            bad("aliases", f"{source}: domain {parts[1]} is not configured",
                "add the domain to domains, or fix the alias")
        elif source in v["mailboxes"]:
            bad("aliases", f"{source} is also a mailbox", "remove the alias or the mailbox")
        elif source in found:
            bad("aliases", f"{source} is defined twice", "merge the targets into one entry")
        else:
            found[source] = targets
    return found


def _role_aliases(found: dict[str, tuple[str, ...]], v: Values) -> None:
    """RFC 5321 and 2142 ask every mail domain to accept postmaster@ and abuse@. root@ too: with
    myorigin = $mydomain, the host's own mail to root (cron, bounces) is addressed to
    root@<domain>, a virtual domain, where it would otherwise bounce unread."""
    mailboxes = v["mailboxes"]
    if not mailboxes:
        return
    for d in v["domains"]:
        for role in ("postmaster", "abuse", "root"):
            address = f"{role}@{d}"
            if address not in found and address not in mailboxes:
                found[address] = (mailboxes[0],)


def _alias_targets(found: Mapping[str, tuple[str, ...]], v: Values, bad: Report) -> None:
    for source, targets in found.items():
        for t in targets:
            parts = split_address(t)
            if parts is None:
                bad("aliases", f"{source}: target {t!r} is not an e-mail address", "fix the target address")
            elif parts[1] in v["domains"] and t not in v["mailboxes"] and t not in found:
                bad("aliases", f"{source}: target {t} is neither a mailbox nor an alias, so mail to it would bounce",
                    "add the mailbox, or point the alias at an existing one")


def _alias_loops(found: Mapping[str, tuple[str, ...]], bad: Report) -> None:
    """No alias reaches itself, directly (a=a) or through others (a=b, b=a; any length): postfix
    would expand it until it gives up, and the mail bounces. One depth-first walk over the
    aliases (iterative, so a long chain cannot exhaust Python's stack); each edge back to an
    alias still on the walk's path closes a loop, named once with its chain."""
    on_path, finished, reported = set(), set(), set()
    for root in found:
        if root in finished:
            continue
        path, pending = [root], [iter(found[root])]
        on_path.add(root)
        while pending:
            target = next(pending[-1], None)
            if target is None:
                pending.pop()
                on_path.discard(alias := path.pop())
                finished.add(alias)
            elif target in on_path:
                loop = path[path.index(target):]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    bad("aliases", f"{' -> '.join([*loop, target])} is a loop: postfix expands it until it gives "
                        "up, and the mail bounces", "point one of these aliases at a mailbox" if len(loop) > 1
                        else f"remove {target} from its own targets")
            elif target in found and target not in finished:
                path.append(target)
                pending.append(iter(found[target]))
                on_path.add(target)


def _report_address(v: Values, key: str, local: str, found: dict[str, tuple[str, ...]], bad: Report) -> str:
    """A report mailbox (DMARC, TLS-RPT). Left empty, it is an alias to the first mailbox,
    created here so reports never bounce."""
    primary, mailboxes = primary_domain(v), v["mailboxes"]
    address = (v[key] or f"{local}@{primary}").lower()
    parts = split_address(address)
    if parts is None:
        bad(key, f"{address!r} is not an e-mail address", f"use e.g. {local}@{primary}")
    elif parts[1] in v["domains"] and mailboxes and address not in mailboxes and address not in found:
        if v[key]:
            bad(key, f"{address} is neither a mailbox nor an alias, so reports would bounce",
                f"add it to mailboxes or aliases, or leave {key} empty")
        else:
            found[address] = (mailboxes[0],)
    return address


def mydestination(v: Values, bad: Report) -> Derived:
    """No mail domain in mydestination (directly, or as $mydomain): it would deliver to shell accounts."""
    tokens = {ascii_name(t) for t in re.split(r"[,\s]+", v["mydestination"].lower()) if t}
    for d in v["domains"]:
        if d in tokens or (d == v["mydomain"] and "$mydomain" in tokens):
            bad("mydestination", f"lists the mail domain {d}, which would deliver to shell accounts",
                "remove it: mail domains are served by virtual mailboxes")
    return {}


def banner(v: Values, bad: Report) -> Derived:
    """smtpdBanner begins with the host name (RFC 5321 greeting)."""
    if not re.match(r"^(\$myhostname|\$\{myhostname\}|" + re.escape(v["hostname"]) + r")\b", v["smtpdBanner"]):
        bad("smtpdBanner", "must begin with the host name (RFC 5321 greeting)", "use $myhostname ESMTP")
    return {}


def size_limits(v: Values, bad: Report) -> Derived:
    """A mailbox holds at least one message of the largest size accepted."""
    if 0 < v["mailboxSizeLimit"] < v["messageSizeLimit"]:
        bad("mailboxSizeLimit", "is smaller than messageSizeLimit, so one message could never fit",
            "make mailboxSizeLimit at least messageSizeLimit")
    return {}


def ses_region(v: Values, bad: Report) -> Derived:
    """relay ses needs a region: its identities, its SMTP endpoint and the SMTP password (derived
    per region from the IAM secret key) all depend on it. sesRegion, else the stack's aws:region;
    empty with relay none."""
    if v["relay"] != "ses":
        return {"ses_region": ""}
    if v["sesRegion"]:  # its own rule checked it
        return {"ses_region": v["sesRegion"]}
    region = str(v.get(AWS_REGION_KEY) or "").strip()
    if not region:
        bad("sesRegion", "relay is ses, but sesRegion is empty and the stack has no aws:region",
            "pulumi config set aws:region eu-central-1, or pulumi config set sesRegion <a region with SES>")
    elif not AWS_REGION.fullmatch(region):
        bad("sesRegion", f"the stack's aws:region {region!r} is not an AWS region",
            "fix aws:region, or pulumi config set sesRegion eu-central-1")
    return {"ses_region": region}


def retired_selectors(v: Values, bad: Report) -> Derived:
    """The current DKIM selector is not also listed as retired."""
    if v["dkimSelector"] in v["dkimRetiredSelectors"]:
        bad("dkimRetiredSelectors", f"{v['dkimSelector']} is the current selector", "list only old selectors")
    return {}


def dnsbl_threshold(v: Values, bad: Report) -> Derived:
    """The postscreen threshold is reachable: the lists' weights together can meet it."""
    sites, threshold = v["postscreenDnsblSites"], v["postscreenDnsblThreshold"]
    weights = 0
    for site in sites:
        m = dnsbl_site(site)
        if m is not None:
            weights += max(int(m.group("weight") or 1), 0)
    if threshold >= 1 and sites and weights and weights < threshold:
        bad("postscreenDnsblThreshold", f"{threshold} is more than all lists together can score ({weights}), "
            "so none ever blocks", "lower the threshold or raise the weights (*N) in postscreenDnsblSites")
    return {}


def snapshot_copy_region(v: Values, bad: Report) -> Derived:
    """A copy in the stack's own region would fall with the server in a regional outage, which
    is all it is for (and DLM refuses a copy rule whose target is the source region)."""
    region = str(v.get(AWS_REGION_KEY) or "").strip()
    if v["snapshotCopyRegion"] and v["snapshotCopyRegion"] == region:
        bad("snapshotCopyRegion", f"{region} is the stack's own region (aws:region): the copies would fall with "
            "the server in a regional outage", "name another region, e.g. one near your users, or leave empty")
    return {}


def spam_scores(v: Values, bad: Report) -> Derived:
    """Junk below reject: at or above it, every message scored there is refused, and Junk never
    gets a message."""
    if v["spamJunkScore"] >= v["spamRejectScore"]:
        bad("spamJunkScore", f"{v['spamJunkScore']} is not below spamRejectScore ({v['spamRejectScore']}), so no "
            "message would ever be filed as Junk: each would be refused instead", "use 6 with spamRejectScore 15")
    return {}


CROSS_FIELD: tuple[Callable[[Values, Report], Derived], ...] = (
    hostname_in_domains,
    secondary_mx,
    zone_ids,
    ssh_from_anywhere,
    mailbox_domains,
    aliases,
    mydestination,
    banner,
    size_limits,
    ses_region,
    retired_selectors,
    dnsbl_threshold,
    snapshot_copy_region,
    spam_scores,
)
