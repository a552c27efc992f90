"""Where the bench's port 25 mail comes from: another organisation's mail server, as rspamd and
postscreen see one, inside the lab's namespace.

rspamd counts every 127/8 address as local (our options.inc: local_addrs) and skips SPF, DKIM,
DMARC and the DNS blocklists for it, and postfix lets mynetworks past postscreen: mail from
127.0.0.1 would understate what the filter costs. So the sending MTA connects from CLIENT, a
TEST-NET-2 address (RFC 5737) on the namespace's lo, to SERVER_ADDRESS, another one on lo, whose
local route names CLIENT as its source (smtp-source has no option to bind). A DNS server (unbound,
on catalog.RESOLVER:53 where rspamd asks, as in tests/lab/test_spam.py) serves our domains'
records as the program plans them and the sender domain's: its SPF lists CLIENT, its DMARC says
p=reject, CLIENT's PTR and A agree. The mail is legitimate: it passes SPF and DMARC and is
delivered to the inbox. Names outside those zones (the DNS blocklists rspamd asks) cannot be
resolved: the namespace has no route out.

The seed's side is untouched: stock postfix, no milter, mail from 127.0.0.1.
"""

from __future__ import annotations

import subprocess
from typing import Self

from mailserver import clients
from mailserver.core import catalog
from mailserver.lab import netns
from mailserver.lab.server import Lab
from tests.lab.doctor_support import LabDns, own_records  # a plain module, like tests/program/harness

SERVER_ADDRESS = "198.51.100.1"  # the server's "public" address, as the sending MTA dials it
CLIENT, CLIENT_NAME = "198.51.100.25", "mx.outside.example"
DOMAIN = "outside.example"
SENDER = f"bench@{DOMAIN}"


def records() -> dict[str, list[tuple[str, str]]]:
    reverse = ".".join(reversed(CLIENT.split("."))) + ".in-addr.arpa"
    return {
        CLIENT_NAME: [("A", CLIENT)],
        reverse: [("PTR", CLIENT_NAME + ".")],
        DOMAIN: [("TXT", f'"v=spf1 ip4:{CLIENT} -all"'), ("MX", f"10 {CLIENT_NAME}.")],
        f"_dmarc.{DOMAIN}": [("TXT", '"v=DMARC1; p=reject"')],
    }


class Outside:
    """The outside sender and DNS for a running lab; use as a context manager inside the lab's."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        zones = [*lab.settings.domains, DOMAIN, "100.51.198.in-addr.arpa"]
        self.dns = LabDns(lab.ns, lab.root / "dns", zones, {**own_records(lab.settings, lab.dkim_keys), **records()},
                          address=catalog.RESOLVER)

    def __enter__(self) -> Self:
        ns = self.lab.ns
        for address in (SERVER_ADDRESS, CLIENT):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "lo"], check=True)
        subprocess.run(["ip", "-n", ns, "route", "replace", "local", SERVER_ADDRESS, "dev", "lo", "table", "local",
                        "scope", "host", "src", CLIENT], check=True)
        self.dns.start()
        try:
            self.greet()
        except BaseException:
            self.dns.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.dns.stop()

    def greet(self) -> None:
        """postscreen tests a new client's first connection (the lab's greet wait, 1 s) and
        then remembers it: that first connection is made here, untimed."""
        with netns.entered(self.lab.ns), clients.smtp(catalog.SMTP_PORT, source=CLIENT, host=SERVER_ADDRESS) as c:
            code, _ = c.ehlo(CLIENT_NAME)
            if code != 250:
                raise RuntimeError(f"port 25 from {CLIENT}: EHLO answered {code}")
