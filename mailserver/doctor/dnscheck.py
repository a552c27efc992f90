"""The DNS checks: the planned records against what a resolver answers, reverse DNS, the
Worker's names, and the blocklists (DNSBL lookups of the IP). Not named dns: dnspython is."""

from __future__ import annotations

import concurrent.futures
import ipaddress
from collections.abc import Iterable, Sequence

import dns.exception
import dns.rdatatype
import dns.resolver
import dns.reversename

from mailserver.core import catalog, records, web
from mailserver.doctor.intent import expected_records
from mailserver.doctor.target import Target
from mailserver.doctor.verdicts import Result, blocklist_status, result, show


def make_resolver(ip: str | None, timeout: float) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=ip is None)
    if ip is not None:
        res.nameservers = [ip]
    res.lifetime = timeout
    res.timeout = timeout
    return res


def lookup(res: dns.resolver.Resolver, name: str, rtype: str) -> tuple[list[str], str | None]:
    """(values, error). A name or type that does not exist is an empty answer, not an error."""
    try:
        answer = res.resolve(name, rtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return [], None
    except (dns.exception.DNSException, OSError) as e:
        return [], f"{type(e).__name__}: {e}"
    out = []
    for rdata in answer:
        if rdata.rdtype == dns.rdatatype.TXT:
            out.append(b"".join(rdata.strings).decode(errors="replace"))
        else:
            out.append(rdata.to_text())
    return out, None


def lookup_all(res: dns.resolver.Resolver, queries: Sequence[tuple[str, str]]
               ) -> dict[tuple[str, str], tuple[list[str], str | None]]:
    """Many lookups at once: with a resolver that does not answer, the run then waits one
    timeout, not one per record."""
    unique = list(dict.fromkeys(queries))
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        found = pool.map(lambda q: lookup(res, *q), unique)
        return dict(zip(unique, found))  # map gives one answer per query (no strict=: python 3.9)


def normalize(rtype: str, value: str) -> str:
    """A record's content as both the plan and a resolver can write it: names lower-case
    without the trailing dot, TXT as the joined strings."""
    if rtype == "TXT":
        return records.untxt(value) if value.startswith('"') else value
    tokens = [t.lower() for t in value.split()]
    if rtype in ("MX", "SRV", "CNAME", "PTR", "NS"):
        tokens = [t.rstrip(".") or "." for t in tokens]
    return " ".join(tokens)


def txt_tag(value: str) -> str:
    """The version tag that tells TXT records at one name apart: v=spf1, v=DMARC1..."""
    return value.split(";", 1)[0].split(" ", 1)[0].strip().lower()


def compare_records(rtype: str, expected: Iterable[str], found: Iterable[str]) -> tuple[bool, list[str], list[str]]:
    """(equal, missing, unexpected). TXT records are compared among those with the same
    version tag only: an apex carries other TXT records (site verifications) that are not ours."""
    want = {normalize(rtype, e) for e in expected}
    have = {normalize(rtype, f) for f in found}
    if rtype == "TXT":
        tags = {txt_tag(w) for w in want}
        have = {h for h in have if txt_tag(h) in tags}
    return want == have, sorted(want - have), sorted(have - want)


def check_dns(t: Target, res: dns.resolver.Resolver) -> list[Result]:
    out: list[Result] = []
    groups: dict[tuple[str, str, str], list[str | None]] = {}
    for rec, content in expected_records(t.settings, t.ip, t.dkim, t.ses_dkim, t.secondary_ip):
        value = None if content is None else (f"{rec.priority} {content}" if rec.type == "MX" else content)
        groups.setdefault((rec.check, rec.fqdn, rec.type), []).append(value)
    answers = lookup_all(res, [(fqdn, rtype) for _, fqdn, rtype in groups])
    for (check, fqdn, rtype), wanted in groups.items():
        found, error = answers[(fqdn, rtype)]
        subject = f"{rtype} {fqdn}"
        if error:
            out.append(result(check, "unknown", subject, "a DNS answer", error,
                              "check that the resolver answers (--resolver)"))
            continue
        if rtype == "A" and any(w is None for w in wanted):  # the secondary's address not known: present
            out.append(result(check, "ok" if len(found) == 1 else "error", subject, "one A record", show(found)
                              if found else "no record", "pulumi up restores the record; give --secondary-ip"))
            continue
        if any(w is None for w in wanted):  # DKIM key not known: present and well-formed
            keys = [f for f in found if txt_tag(f) == "v=dkim1" and "p=" in f and not f.rstrip().endswith("p=")]
            ok = len(keys) == 1
            out.append(result(check, "ok" if ok else "error", subject, "one v=DKIM1 record with a key (p=)",
                              show(found) if found else "no record"))
            continue
        same, missing, extra = compare_records(rtype, [w for w in wanted if w is not None], found)
        expected = show([normalize(rtype, w) for w in wanted if w is not None])
        if same:
            out.append(result(check, "ok", subject, expected, expected))
        else:
            detail = []
            if missing:
                detail.append("missing " + show(missing))
            if extra:
                detail.append("unexpected " + show(extra))
            out.append(result(check, "error", subject, expected, "; ".join(detail)))
    names = [name for _, name in web.web_hostnames(t.settings)]
    web_answers = lookup_all(res, [(n, rtype) for n in names for rtype in ("A", "AAAA")])
    for name in names:
        addrs = web_answers[(name, "A")][0] + web_answers[(name, "AAAA")][0]
        error = web_answers[(name, "A")][1] or web_answers[(name, "AAAA")][1]
        if error and not addrs:
            out.append(result("dns-web", "unknown", f"A/AAAA {name}", "an address (Worker)", error,
                              "check that the resolver answers (--resolver)"))
            continue
        out.append(result("dns-web", "ok" if addrs else "error", f"A/AAAA {name}", "an address (Worker)",
                          show(addrs) if addrs else "does not resolve"))
    return out


def check_ptr(t: Target, res: dns.resolver.Resolver) -> list[Result]:
    host = t.settings.hostname
    ptrs, error = lookup(res, dns.reversename.from_address(t.ip).to_text(), "PTR")
    forward, ferror = lookup(res, host, "AAAA" if ":" in t.ip else "A")
    names = [normalize("PTR", p) for p in ptrs]
    if error or ferror:
        return [result("ptr", "unknown", f"PTR {t.ip}", host, error or ferror or "")]
    out = [result("ptr", "ok" if names == [host] else "error", f"PTR {t.ip}", host,
                  show(names) if names else "no PTR")]
    out.append(result("ptr", "ok" if t.ip in forward else "error", f"{host} -> IP", t.ip,
                      show(forward) if forward else "does not resolve"))
    return out


def check_aaaa(t: Target, res: dns.resolver.Resolver) -> list[Result]:
    """The mail host's AAAA records: exactly the instance's IPv6 address when it has one, none
    otherwise (the stack plans none). A stray AAAA sends IPv6-capable senders and clients to an
    address where nothing answers, and their mail waits until they fall back, if they do."""
    host = t.settings.hostname
    found, error = lookup(res, host, "AAAA")
    v6 = t.ipv6 or (t.ip if ":" in t.ip else None)  # --ip may itself be the instance's IPv6 address
    want = [v6] if v6 else []
    expected = show(want) if want else "no AAAA (the instance has no IPv6 address)"
    if error:
        return [result("dns-aaaa", "unknown", f"AAAA {host}", expected, error,
                       "check that the resolver answers (--resolver)")]
    have = {ipaddress.ip_address(a) for a in found}
    stray = sorted(str(a) for a in have - {ipaddress.ip_address(w) for w in want})
    missing = [w for w in want if ipaddress.ip_address(w) not in have]
    if not stray and not missing:
        return [result("dns-aaaa", "ok", f"AAAA {host}", expected, show(found) if found else "no AAAA")]
    detail = ([f"stray {show(stray)}"] if stray else []) + ([f"missing {show(missing)}"] if missing else [])
    fix = None if not missing else "pulumi up restores the record"
    return [result("dns-aaaa", "error", f"AAAA {host}", expected, "; ".join(detail), fix)]


def check_dbl(t: Target) -> list[Result]:
    """Every mail domain on the domain blocklists (catalog.DOMAIN_BLOCKLISTS), through the
    blocklists' resolver and judged like the IP lookups (blocklist_status)."""
    res = make_resolver(t.blocklist_resolver or t.resolver, t.timeout)
    queries = [(f"{d}.{zone}", "A") for d in t.settings.domains for zone in catalog.DOMAIN_BLOCKLISTS]
    answers = lookup_all(res, queries)
    out = []
    for name, _ in queries:
        status, found = blocklist_status(*answers[(name, "A")])
        out.append(result("dbl", status, name, "not listed", found))
    return out


def check_blocklists(t: Target) -> list[Result]:
    out = []
    try:
        addr = ipaddress.ip_address(t.ip)
    except ValueError:
        return [result("blocklists", "unknown", t.ip, "an IP address", "not an IP address")]
    if addr.version != 4:
        return [result("blocklists", "skipped", t.ip, "not listed", "only IPv4 is looked up", "")]
    res = make_resolver(t.blocklist_resolver or t.resolver, t.timeout)
    reversed_ip = ".".join(reversed(t.ip.split(".")))
    answers = lookup_all(res, [(f"{reversed_ip}.{zone}", "A") for zone in t.settings.blocklists])
    for zone in t.settings.blocklists:
        status, found = blocklist_status(*answers[(f"{reversed_ip}.{zone}", "A")])
        out.append(result("blocklists", status, zone, "not listed", found))
    return out
