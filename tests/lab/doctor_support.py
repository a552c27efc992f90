"""For the doctor's and the spam filter's lab tests, and the bench: a real DNS server (unbound)
serving the records the program plans, inside the lab's namespace, and a test CA whose
certificates the lab serves. A plain module (no pytest): the bench imports it."""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path

import dns.exception
import dns.resolver
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from mailserver import clients
from mailserver.core import records
from mailserver.core.settings import Settings
from mailserver.lab import netns
from mailserver.lab.server import public_key_pem
from mailserver.waiting import wait_until

DNS_ADDRESS = "127.0.0.53"  # on the namespace's loopback, beside the mail server's 127.0.0.1


class LabDns:
    """unbound answering from local data only (no recursion is ever needed: every name the
    doctor asks about lies in a zone declared here). Records change at run time through
    unbound-control on a unix socket, so a fault costs milliseconds, not a restart. It listens
    on `address`, port 53: the spam tests put it on catalog.RESOLVER, where rspamd asks."""

    def __init__(self, ns: str, root: Path, zones: Iterable[str], records: dict[str, list[tuple[str, str]]],
                 address: str = DNS_ADDRESS):
        self.ns, self.root, self.address = ns, root, address
        self.zones = sorted({z.rstrip(".") for z in zones})
        self.records = {name: list(rrs) for name, rrs in records.items()}  # name -> [(type, data)]
        self.conf = root / "unbound.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        lines = [
            "server:",
            f"  interface: {self.address}",
            "  port: 53",
            "  do-ip6: no",
            "  chroot: \"\"",
            "  username: \"\"",
            f"  directory: \"{self.root}\"",
            f"  pidfile: \"{self.root}/unbound.pid\"",
            "  use-syslog: no",
            f"  logfile: \"{self.root}/unbound.log\"",
            "  access-control: 127.0.0.0/8 allow",
            "  module-config: \"iterator\"",
            # unbound's built-in 127.in-addr.arpa zone answers "localhost"; ours replaces it.
            *[f"  local-zone: \"{z}.\" static" for z in self.zones],
            *[f"  local-data: '{self._rr(name, t, d)}'" for name, rrs in self.records.items() for t, d in rrs],
            "remote-control:",
            "  control-enable: yes",
            f"  control-interface: \"{self.root}/unbound.ctl\"",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        log = (self.root / "unbound.out").open("wb")
        self.proc = subprocess.Popen(netns.cmd(self.ns, ["unbound", "-d", "-c", str(self.conf)]),
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        res = dns.resolver.Resolver(configure=False)
        res.nameservers, res.lifetime = [self.address], 0.5
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"unbound exited: {(self.root / 'unbound.log').read_text()}")
            try:
                with netns.entered(self.ns):
                    res.resolve(self.zones[0], "SOA", raise_on_no_answer=False)
            except dns.exception.DNSException:
                return False
            return True

        wait_until(answers, 15, 0.1, "unbound to answer", detail=lambda: (self.root / "unbound.log").read_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    @staticmethod
    def _rr(name: str, rtype: str, data: str) -> str:
        return f"{name}. 300 IN {rtype} {data}"

    def _control(self, *args: str) -> None:
        subprocess.run(["unbound-control", "-c", str(self.conf), *args], check=True, capture_output=True)

    def set(self, name: str, rrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Replace every record at `name` (all types); returns what was there, for undo."""
        before = self.records.get(name, [])
        self._control("local_data_remove", name)
        self.records[name] = list(rrs)
        for rtype, data in rrs:
            self._control("local_data", self._rr(name, rtype, data))
        return before

    def replace(self, name: str, rtype: str, data: list[str]) -> list[tuple[str, str]]:
        """Replace the records of one type at `name`, keeping the other types."""
        before = self.records.get(name, [])
        self.set(name, [rr for rr in before if rr[0] != rtype] + [(rtype, d) for d in data])
        return before


def own_records(s: Settings, dkim_keys: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """Our own domains' records as the program plans them (SPF, DMARC, MX, A) and their DKIM
    keys: what rspamd reads when a message claims to come from one of them."""
    planned = [*records.planned_records(s, clients.SERVER),
               *[records.dkim_record(s, d, s.dkim_selector, public_key_pem(k)) for d, k in dkim_keys.items()]]
    out: dict[str, list[tuple[str, str]]] = {}
    for r in planned:
        if r.type in ("TXT", "A"):
            out.setdefault(r.fqdn, []).append((r.type, r.content))
        elif r.type == "MX":
            out.setdefault(r.fqdn, []).append(("MX", f"{r.priority} {r.content}."))
    return out


# --- a test CA ---------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class TestCa:
    """A root CA, and leaf certificates it signs with any name and validity window."""

    __test__ = False  # not a pytest test class

    def __init__(self, common_name: str = "Doctor Test Root CA") -> None:
        self.key = _key()
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, hostname: str, not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None, more_names: Iterable[str] = ()) -> tuple[str, str]:
        """(full chain PEM, key PEM) for `hostname` (and `more_names`), by default valid for 90
        days from yesterday."""
        now = dt.datetime.now(dt.UTC)
        key = _key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, hostname)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=1))
            .not_valid_after(not_after or now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in (hostname, *more_names)]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM).decode() + self.pem
        return chain, _pem_key(key)


class LabWeb:
    """What the Cloudflare Worker does, on the lab's loopback: HTTPS on port 443 of `address`
    with one certificate for every web hostname, answering `pages[(host, path)]` (404 else).
    Start it inside the lab's namespace: the listening socket stays there."""

    def __init__(self, address: str, root: Path, chain_and_key: tuple[str, str],
                 pages: dict[tuple[str, str], str]) -> None:
        self.pages = pages
        root.mkdir(parents=True, exist_ok=True)
        (root / "web.pem").write_text(chain_and_key[0])
        (root / "web.key").write_text(chain_and_key[1])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(root / "web.pem", root / "web.key")
        pages_ = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                body = pages_.get((host, self.path))
                data = (body or "not found").encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/plain" if self.path.endswith(".txt") else "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, 443), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed(hostname: str) -> tuple[str, str]:
    """What baseline.sh installs before acme.sh has run: a certificate that signs itself."""
    key = _key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key)
