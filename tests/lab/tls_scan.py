"""testssl.sh against the lab's mail ports: one scan per port, its findings by testssl's ids.

testssl.sh (Debian's package, 3.0.8) runs inside the lab's network namespace, so it reaches
the daemons as a client on another host would: STARTTLS on the ports the catalog says speak
it, implicit TLS on the others. Its flat JSON output is a list of findings, each with an id
(SSLv3, cipherlist_aNULL, cipher_order, heartbleed, cipher_xc02c...), a severity (OK, INFO,
LOW, MEDIUM, HIGH, CRITICAL, WARN, FATAL) and the finding's text.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mailserver import clients
from mailserver.core import catalog
from mailserver.lab import netns

TESTSSL = "testssl"
# The checks, each chosen for an assertion, and none other: --protocols (SSLv2 to TLS 1.3),
# --std (the cipher categories: NULL, aNULL, EXPORT, LOW with RC4 and DES, 3DES/IDEA...),
# --fs (forward secrecy), --server-preference (whose cipher order wins), --vulnerable (every
# vulnerability check testssl knows), --each-cipher (every cipher suite the server accepts,
# tried one by one with sockets and OpenSSL: the full test; --fast would try them with
# OpenSSL alone, and OpenSSL 3 cannot offer some of them). Not --server-defaults: it judges
# the certificate, which in the lab is self-signed on purpose (the doctor's tests cover
# certificates), and costs time; nor client simulation.
CHECKS: tuple[str, ...] = ("--protocols", "--std", "--fs", "--server-preference", "--vulnerable", "--each-cipher")
# No banner, colours or questions; no DNS (the namespace has none); a handshake that hangs
# ends after a few seconds instead of the scan's whole budget.
OPTIONS: tuple[str, ...] = ("--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
                            "--connect-timeout", "10", "--openssl-timeout", "10")
# Two scans at a time: the machines the suite runs on have two cores.
WORKERS = 2
SCAN_TIMEOUT = 300.0

# The findings of --vulnerable in testssl 3.0.8 on a mail port (BREACH and Ticketbleed are
# HTTP-only and not run there).
VULNERABILITY_IDS: tuple[str, ...] = (
    "heartbleed", "CCS", "ROBOT", "secure_renego", "secure_client_renego", "CRIME_TLS", "POODLE_SSL",
    "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4",
)
# Severities that fail a scan, whatever the finding.
BAD_SEVERITIES = frozenset({"HIGH", "CRITICAL", "FATAL"})


@dataclasses.dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    finding: str


@dataclasses.dataclass(frozen=True)
class Cipher:
    """One cipher suite the server accepted (a cipher_x<hexcode> finding of --each-cipher)."""

    hexcode: str
    name: str  # OpenSSL's name (TLS 1.3 suites under their IANA name)
    kx: str  # key exchange: ECDH, DH, RSA...


@dataclasses.dataclass(frozen=True)
class Scan:
    service: catalog.Service
    findings: tuple[Finding, ...]
    seconds: float
    output: Path  # testssl's screen output, for the failure message

    def all(self, finding_id: str) -> list[Finding]:
        return [f for f in self.findings if f.id == finding_id]

    def one(self, finding_id: str) -> Finding:
        found = self.all(finding_id)
        assert len(found) == 1, f"port {self.service.port}: {len(found)} findings {finding_id!r}; see {self.output}"
        return found[0]

    def text(self, finding_id: str) -> str:
        return self.one(finding_id).finding

    @property
    def ciphers(self) -> list[Cipher]:
        out = []
        for f in self.findings:
            if f.id.startswith("cipher_x"):
                hexcode, name, kx, *_ = f.finding.split()
                out.append(Cipher(hexcode, name, kx))
        return out

    @property
    def fs_ciphers(self) -> set[str]:
        """The suites testssl counts as forward secret (it leaves out the anonymous ones)."""
        found = self.all("PFS_ciphers")
        return set(found[0].finding.split()) if found else set()

    def bad(self) -> list[Finding]:
        return [f for f in self.findings if f.severity in BAD_SEVERITIES or f.id == "scanProblem"]

    def summary(self) -> dict[str, str]:
        """One line per property the tests assert on, for people to read (e.g. before/after a fix)."""
        def offered(ids: Iterable[str]) -> str:
            return " ".join(i for i in ids if self.all(i) and self.text(i).startswith("offered")) or "-"

        not_fs = sorted(c.name for c in self.ciphers if c.name not in self.fs_ciphers)
        return {
            "protocols": offered(("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")),
            "weak categories": offered(("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT",
                                        "cipherlist_LOW", "cipherlist_3DES_IDEA")),
            "suites": str(len(self.ciphers)),
            "suites without FS": " ".join(not_fs) or "-",
            "cipher order": self.text("cipher_order") if self.all("cipher_order") else "?",
            "HIGH/CRITICAL": " ".join(f"{f.id}={f.severity}" for f in self.bad()) or "-",
            "seconds": f"{self.seconds:.0f}",
        }


def argv(svc: catalog.Service, jsonfile: Path, host: str = clients.SERVER) -> list[str]:
    starttls = ["--starttls", svc.protocol] if svc.tls == "starttls" else []
    return [TESTSSL, *OPTIONS, *CHECKS, "--jsonfile", str(jsonfile), *starttls, f"{host}:{svc.port}"]


def scan(ns: str, svc: catalog.Service, outdir: Path) -> Scan:
    """Run testssl against one port from inside the namespace `ns`."""
    outdir.mkdir(parents=True, exist_ok=True)
    jsonfile, output = outdir / f"{svc.port}.json", outdir / f"{svc.port}.txt"
    jsonfile.unlink(missing_ok=True)  # testssl refuses to overwrite
    start = time.monotonic()
    with output.open("w") as out:
        # testssl's exit status counts findings, not its own failures: the JSON says how it went.
        subprocess.run(netns.cmd(ns, argv(svc, jsonfile)), stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, check=False, timeout=SCAN_TIMEOUT)
    seconds = time.monotonic() - start
    assert jsonfile.exists(), f"testssl wrote no findings for port {svc.port}: {output.read_text()[-3000:]}"
    findings = tuple(Finding(f["id"], f["severity"], f["finding"]) for f in json.loads(jsonfile.read_text()))
    return Scan(svc, findings, seconds, output)


def scan_all(ns: str, services: Iterable[catalog.Service], outdir: Path,
             workers: int = WORKERS) -> dict[int, Scan]:
    """Every TLS port of `services`, `workers` scans at a time; port -> its scan."""
    tls = [svc for svc in services if svc.tls != "none"]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        scans = list(pool.map(lambda svc: scan(ns, svc, outdir), tls))
    return {s.service.port: s for s in scans}
