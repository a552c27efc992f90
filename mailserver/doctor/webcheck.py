"""The web checks: the MTA-STS policy and the autoconfig document, fetched over HTTPS from every
web hostname (the Worker's custom domains) with the certificate validated, and compared with
what the plan renders (core/web.py): the policy's mode, mx and max_age, the _mta-sts id of the
text actually served, and autoconfig's servers against the port table."""

from __future__ import annotations

import http.client
import socket
import ssl
import xml.etree.ElementTree as ET

import dns.resolver

from mailserver.core import records, web
from mailserver.doctor.dnscheck import lookup, lookup_all, txt_tag
from mailserver.doctor.target import Target
from mailserver.doctor.verdicts import Result, result, show

MTA_STS_PATH = "/.well-known/mta-sts.txt"  # RFC 8461 §3.2
AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
HTTPS_PORT = 443


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to `name` (SNI, certificate name, Host) at an address the doctor's resolver gave,
    so the fetch goes where the doctor's DNS says, not where the system's resolver would."""

    def __init__(self, name: str, ip: str, ctx: ssl.SSLContext, timeout: float, source: str | None) -> None:
        super().__init__(name, HTTPS_PORT, timeout=timeout, context=ctx)
        self.ip, self.ctx = ip, ctx
        self.source = (source, 0) if source else None

    def connect(self) -> None:
        sock = socket.create_connection((self.ip, self.port), self.timeout, self.source)
        self.sock = self.ctx.wrap_socket(sock, server_hostname=self.host)


def fetch(t: Target, res: dns.resolver.Resolver, name: str, path: str) -> tuple[str | None, str, bool]:
    """(body, why, reached): the body of a 200 answer, else None with why; reached False when
    the doctor got no usable DNS answer for the name (unknown, not an error of the server)."""
    addrs, error = lookup(res, name, "A")
    if error:
        return None, f"lookup failed: {error}", False
    if not addrs:
        return None, f"{name} does not resolve (see dns-web)", True
    ctx = ssl.create_default_context(cafile=t.cafile) if t.cafile else ssl.create_default_context()
    conn = _PinnedHTTPS(name, addrs[0], ctx, t.timeout, t.source)
    try:
        conn.request("GET", path, headers={"User-Agent": "mailserver-doctor"})
        resp = conn.getresponse()
        body = resp.read(65536).decode(errors="replace")
    except ssl.SSLCertVerificationError as e:
        return None, f"certificate not valid: {e.verify_message}", True
    except (OSError, http.client.HTTPException) as e:
        return None, f"{type(e).__name__}: {e}", True
    finally:
        conn.close()
    # RFC 8461 §3.3: senders follow no redirect; only a 200 is a policy.
    if resp.status != 200:
        return None, f"HTTP {resp.status} {resp.reason}", True
    return body, "", True


def parse_policy(text: str) -> dict[str, list[str]]:
    """An MTA-STS policy's "key: value" lines (CRLF or LF), every value of each key."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out.setdefault(key.strip().lower(), []).append(value.strip())
    return out


def policy_differences(planned: str, served: str) -> list[str]:
    """What in the served policy differs from the planned one: version, mode, the mx set, max_age."""
    want, got = parse_policy(planned), parse_policy(served)
    out = []
    for key in ("version", "mode", "max_age"):
        if got.get(key) != want.get(key):
            out.append(f"{key} {show(got.get(key) or ['missing'])} (planned {show(want.get(key) or [])})")
    want_mx = {m.lower().rstrip(".") for m in want.get("mx", [])}
    got_mx = {m.lower().rstrip(".") for m in got.get("mx", [])}
    if want_mx != got_mx:
        out.append(f"mx {show(sorted(got_mx)) or 'missing'} (planned {show(sorted(want_mx))})")
    return out


def check_mta_sts_policy(t: Target, res: dns.resolver.Resolver) -> list[Result]:
    planned = web.mta_sts_policy(t.settings)
    ids = lookup_all(res, [(f"_mta-sts.{d}", "TXT") for d in t.settings.domains])
    out = []
    for d in t.settings.domains:
        url = f"https://mta-sts.{d}{MTA_STS_PATH}"
        expected = show(parse_policy(planned)["mode"], 20) + " policy, mx " + t.settings.hostname
        body, why, reached = fetch(t, res, f"mta-sts.{d}", MTA_STS_PATH)
        if body is None:
            out.append(result("web-mta-sts", "error" if reached else "unknown", url, expected, why))
            continue
        wrong = policy_differences(planned, body)
        # Senders re-fetch the policy only when the _mta-sts id changes: the published id must
        # be the one of the text served (records.policy_id, as the plan computes it).
        txts, error = ids[(f"_mta-sts.{d}", "TXT")]
        published = [v for v in txts if txt_tag(v) == "v=stsv1"]
        served_id = records.policy_id(body)
        if not error and not any(f"id={served_id}" in v.replace(" ", "") for v in published):
            wrong.append(f"_mta-sts id is not the served policy's ({served_id}): senders keep their cached policy")
        out.append(result("web-mta-sts", "error" if wrong else "ok", url, expected,
                          "; ".join(wrong) if wrong else f"{parse_policy(body)['mode'][0]} policy as planned"))
    return out


Server = tuple[str, str, str, str, str]  # direction, type, hostname, port, socketType


def autoconfig_servers(text: str) -> list[Server]:
    """The servers an autoconfig document offers, in its order (clients try them in it)."""
    root = ET.fromstring(text)  # a few KB; the bundled expat refuses entity bombs
    out = []
    for direction in ("incomingServer", "outgoingServer"):
        for el in root.iter(direction):
            out.append((direction, el.get("type", ""), (el.findtext("hostname") or "").strip().lower(),
                        (el.findtext("port") or "").strip(), (el.findtext("socketType") or "").strip()))
    return out


def describe(srv: Server) -> str:
    _, typ, host, port, sock = srv
    return f"{typ} {host}:{port} {sock}"


def check_autoconfig(t: Target, res: dns.resolver.Resolver) -> list[Result]:
    planned = autoconfig_servers(web.autoconfig_xml(t.settings))
    expected = show([f"{typ} {port} {sock}" for _, typ, _, port, sock in planned], 80)
    out = []
    for d in t.settings.domains:
        url = f"https://autoconfig.{d}{AUTOCONFIG_PATH}"
        body, why, reached = fetch(t, res, f"autoconfig.{d}", AUTOCONFIG_PATH)
        if body is None:
            out.append(result("web-autoconfig", "error" if reached else "unknown", url, expected, why))
            continue
        try:
            served = autoconfig_servers(body)
        except ET.ParseError as e:
            out.append(result("web-autoconfig", "error", url, expected, f"not XML: {e}"))
            continue
        missing = [describe(srv) for srv in planned if srv not in served]
        extra = [describe(srv) for srv in served if srv not in planned]
        detail = ([f"missing {show(missing)}"] if missing else []) + ([f"unexpected {show(extra)}"] if extra else [])
        if not detail and served != planned:
            detail.append("servers in another order than planned (clients try the first that works)")
        out.append(result("web-autoconfig", "error" if detail else "ok", url, expected,
                          "; ".join(detail) if detail else f"{len(served)} servers as planned"))
    return out
