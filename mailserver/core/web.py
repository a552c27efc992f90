"""What the mail domains serve over HTTPS: the MTA-STS policy (RFC 8461) and the Thunderbird
autoconfig document, both served by one small Cloudflare Worker rendered here. Pure."""

from __future__ import annotations

from mailserver.core.settings import Settings
from mailserver.core.templates import environment

# A week: long enough that a resolver outage does not drop the policy, short enough that a
# changed MX is picked up soon. RFC 8461 allows up to a year.
MTA_STS_MAX_AGE = 604800
WORKER_MODULE = "worker.js"
WORKER_COMPATIBILITY_DATE = "2025-01-01"


def mta_sts_policy(s: Settings) -> str:
    """RFC 8461's policy: every MX host, the backup MX too (a sender that enforces the policy
    refuses to deliver to an MX the policy does not name)."""
    lines = ["version: STSv1", f"mode: {s.mta_sts_mode}", *(f"mx: {h}" for h in s.mx_hosts),
             f"max_age: {MTA_STS_MAX_AGE}"]
    return "".join(f"{line}\r\n" for line in lines)


# The server types of Thunderbird's autoconfig format (config-v1.1) that the port table has:
# incomingServer imap and pop3, outgoingServer smtp. The format has no element for ManageSieve,
# so port 4190 stays out of the document (a client that read it as another incoming server would
# try to fetch mail there); sieve clients find it by its SRV record (records.srv_records).
AUTOCONFIG_INCOMING = ("imap", "pop3")
AUTOCONFIG_OUTGOING = ("smtp",)


def autoconfig_xml(s: Settings) -> str:
    services = [svc for svc in s.services if svc.auth and not svc.admin_only]
    # Implicit TLS first: RFC 8314 prefers it, and clients take the first that works.
    order = sorted(services, key=lambda svc: svc.tls != "implicit")
    return environment().get_template("web/autoconfig.xml.j2").render(
        s=s,
        incoming=[svc for svc in order if svc.protocol in AUTOCONFIG_INCOMING],
        outgoing=[svc for svc in order if svc.protocol in AUTOCONFIG_OUTGOING],
    )


def worker_script(s: Settings) -> str:
    return environment().get_template("web/worker.js.j2").render(
        s=s, policy=mta_sts_policy(s), autoconfig=autoconfig_xml(s))


def web_hostnames(s: Settings) -> list[tuple[str, str]]:
    """(domain, hostname) pairs the Worker answers on."""
    return [(d, f"{label}.{d}") for d in s.domains for label in ("mta-sts", "autoconfig")]
