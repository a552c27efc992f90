"""TLS on every mail port holds against testssl.sh (issue 13, point 4).

One testssl scan per port of the catalog's table (25, 587, 465, 110, 143, 993, 995; STARTTLS
where the table says so), run once for the module, two at a time, inside the lab's network
namespace; the tests read its findings by testssl's ids. Each port must offer TLS 1.2 and 1.3
only; no anonymous, NULL, export, LOW (DES, RC4) or 3DES suite; forward secrecy on every suite
it accepts (each one tried: the full cipher test, not --fast); the server's cipher order; and no
vulnerability finding, nor any other, rated HIGH or CRITICAL. LUCKY13 stays LOW ("potentially
vulnerable"): it flags any CBC suite, and the CBC suites stay for old MTAs on port 25, which
would otherwise send in plain text (EL's DEFAULT crypto policy keeps them too).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailserver.core import catalog
from mailserver.lab.server import Lab
from tests.lab.tls_scan import VULNERABILITY_IDS, Scan, scan_all

# Debian 12's testssl.sh (3.0.8) has no STARTTLS dialogue for ManageSieve (its --starttls knows
# ftp, smtp, lmtp, pop3, imap, xmpp, telnet, ldap, nntp, postgres, mysql), so port 4190 is not
# scanned. Dovecot's TLS settings are global, not per listener: 143's scan is 4190's TLS, and
# test_e2e.py's handshakes show 4190 refusing TLS 1.0 and 1.1.
TESTSSL_STARTTLS = ("smtp", "imap", "pop3")
TLS_SERVICES = [svc for svc in catalog.SERVICES
                if svc.tls == "implicit" or (svc.tls == "starttls" and svc.protocol in TESTSSL_STARTTLS)]
PORTS = [svc.port for svc in TLS_SERVICES]
# What testssl's --std calls the categories no port may offer (cipherlist_LOW: 64-bit, DES, RC2
# and RC4 suites; cipherlist_3DES_IDEA: 3DES and IDEA).
WEAK_CATEGORIES = ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                   "cipherlist_3DES_IDEA")


@pytest.fixture(scope="module")
def scans(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Scan]:
    enabled = {svc.port for svc in lab.settings.services}
    assert set(PORTS) <= enabled, f"the lab must serve every TLS port of the catalog: {sorted(set(PORTS) - enabled)}"
    outdir: Path = tmp_path_factory.mktemp("testssl")
    start = time.monotonic()
    found = scan_all(lab.ns, TLS_SERVICES, outdir)
    total = time.monotonic() - start
    print(f"\ntestssl: {len(found)} ports in {total:.0f} s ("
          + ", ".join(f"{port}: {s.seconds:.0f} s" for port, s in found.items()) + f"); output in {outdir}")
    return found


@pytest.mark.parametrize("port", PORTS)
def test_only_tls_1_2_and_1_3(scans: dict[int, Scan], port: int) -> None:
    scan = scans[port]
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert scan.text(old).startswith("not offered"), (port, old, scan.text(old))
    for current in ("TLS1_2", "TLS1_3"):
        assert scan.text(current).startswith("offered"), (port, current, scan.text(current))


@pytest.mark.parametrize("port", PORTS)
def test_no_anonymous_null_export_rc4_or_3des_suites(scans: dict[int, Scan], port: int) -> None:
    scan = scans[port]
    offered = {i: scan.text(i) for i in WEAK_CATEGORIES if not scan.text(i).startswith("not offered")}
    assert not offered, (port, offered)
    assert scan.text("RC4").startswith("not vulnerable"), (port, scan.text("RC4"))
    # and one by one: no accepted suite is anonymous, unencrypted, export, RC4, DES or 3DES
    weak = [c.name for c in scan.ciphers
            if c.name.startswith(("ADH-", "AECDH-", "EXP")) or any(w in c.name for w in ("NULL", "RC4", "DES"))]
    assert not weak, (port, weak)


@pytest.mark.parametrize("port", PORTS)
def test_forward_secrecy_on_every_suite(scans: dict[int, Scan], port: int) -> None:
    scan = scans[port]
    assert scan.text("PFS").startswith("offered"), (port, scan.text("PFS"))
    ciphers = scan.ciphers
    assert ciphers, f"port {port}: --each-cipher found no suite; see {scan.output}"
    # An ephemeral (EC)DH key exchange, and a suite testssl counts as forward secret: the
    # anonymous ones have the first without authenticating the server, and it leaves them out.
    without = [(c.name, c.kx) for c in ciphers if c.kx not in ("ECDH", "DH") or c.name not in scan.fs_ciphers]
    assert not without, (port, without)


@pytest.mark.parametrize("port", PORTS)
def test_server_cipher_order(scans: dict[int, Scan], port: int) -> None:
    order = scans[port].one("cipher_order")
    assert (order.finding, order.severity) == ("server", "OK"), (port, order)


@pytest.mark.parametrize("port", PORTS)
def test_no_vulnerability_flagged(scans: dict[int, Scan], port: int) -> None:
    scan = scans[port]
    for vid in VULNERABILITY_IDS:
        finding = scan.one(vid)
        assert finding.severity in ("OK", "INFO", "LOW"), (port, finding)
    assert not scan.bad(), (port, scan.bad())
