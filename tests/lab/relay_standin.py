"""A loopback stand-in for Amazon SES's SMTP endpoint, for the lab's relay tests.

It speaks the part of ESMTP postfix's SMTP client uses with a relay: EHLO, STARTTLS (with the
certificate it is given, or a self-signed one), AUTH PLAIN and LOGIN for one expected username
and password, MAIL, RCPT, DATA, RSET, NOOP, QUIT. Like SES it offers AUTH only inside TLS and
refuses MAIL before AUTH. It records every line it receives, every AUTH and MAIL attempt and
every message it accepts with how it came (TLS version, AUTH mechanism and user), and can be
switched to answer 451 (tempfail), to offer no STARTTLS (notls), or to another certificate, to
see what postfix does then.

Standard library only (and the catalog). The listening socket is created by the calling thread, so a caller
inside `netns.entered(...)` gets a server inside the lab's network namespace.
"""

from __future__ import annotations

import base64
import dataclasses
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal, Self

from mailserver.core import catalog

Mode = Literal["accept", "tempfail", "notls"]
HOSTNAME = catalog.RELAY_STANDIN_NAME


@dataclasses.dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    tls: str | None  # negotiated TLS version, None for plaintext
    auth_mechanism: str | None
    auth_user: str | None


@dataclasses.dataclass(frozen=True)
class Attempt:
    """A MAIL command, accepted or not, and the mode that answered it."""

    mail_from: str
    authenticated: bool
    tls: str | None
    mode: Mode


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "standin.crt", directory / "standin.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


class RelayStandIn:
    def __init__(self, address: str, port: int, username: str, password: str, certdir: Path,
                 certificate: tuple[str, str] | None = None) -> None:
        self.address, self.port = address, port
        self.username, self.password = username, password
        self.certdir = certdir
        self.mode: Mode = "accept"
        self.received: list[Received] = []
        self.attempts: list[Attempt] = []
        self.auths: list[str] = []  # the mechanism of every AUTH command, successful or not
        self.lines: list[str] = []  # every line received, commands and AUTH responses alike
        self.auth_failures = 0
        self._lock = threading.Lock()  # the lists below are filled by the server's threads
        self.tls = self._context(*self_signed(certdir)) if certificate is None else self._install(*certificate)
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Self:
        standin = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                standin._session(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer((self.address, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @staticmethod
    def _context(cert: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        return ctx

    def _install(self, chain_pem: str, key_pem: str) -> ssl.SSLContext:
        cert, key = self.certdir / "standin-chain.pem", self.certdir / "standin-key.pem"
        cert.write_text(chain_pem)
        key.touch(mode=0o600)
        key.write_text(key_pem)
        return self._context(cert, key)

    def use_certificate(self, chain_pem: str, key_pem: str) -> None:
        """Present this certificate (leaf first, then its chain) from the next STARTTLS on."""
        self.tls = self._install(chain_pem, key_pem)

    # -- observation -------------------------------------------------------------------

    def _note(self, attempt: Attempt | None = None, received: Received | None = None,
              auth_failed: bool = False, auth: str | None = None, line: str | None = None) -> None:
        with self._lock:
            if attempt is not None:
                self.attempts.append(attempt)
            if received is not None:
                self.received.append(received)
            if auth is not None:
                self.auths.append(auth)
            if line is not None:
                self.lines.append(line)
            self.auth_failures += auth_failed

    def transcript(self) -> tuple[list[str], list[str]]:
        """Copies of every line received so far, and of every AUTH mechanism tried."""
        with self._lock:
            return list(self.lines), list(self.auths)

    def messages_with(self, marker: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if marker.encode() in r.data]

    def attempts_from(self, sender: str) -> list[Attempt]:
        with self._lock:
            return [a for a in self.attempts if a.mail_from == sender]

    # -- the SMTP session --------------------------------------------------------------

    def _session(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        session = _Session(self, sock)
        try:
            session.send(f"220 {HOSTNAME} ESMTP stand-in for Amazon SES")
            while (line := session.readline()) is not None:
                verb, _, arg = line.partition(" ")
                handler = session.handlers.get(verb.upper(), _Session.unknown)
                if handler(session, arg) is False:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            session.conn.close()

    def _auth(self, mech: str, initial: str, send: Callable[[str], None],
              readline: Callable[[], str | None]) -> str | None:
        """The authenticated user name, or None."""
        def b64(text: str) -> str:
            try:
                return base64.b64decode(text, validate=True).decode()
            except ValueError:
                return ""

        if mech == "PLAIN":
            if not initial:
                send("334 ")
                initial = readline() or ""
            parts = b64(initial).split("\0")
            if len(parts) != 3:
                return None
            _, name, secret = parts
        elif mech == "LOGIN":
            if initial:
                name = b64(initial)
            else:
                send("334 " + base64.b64encode(b"Username:").decode())
                name = b64(readline() or "")
            send("334 " + base64.b64encode(b"Password:").decode())
            secret = b64(readline() or "")
        else:
            return None
        return name if (name, secret) == (self.username, self.password) else None


class _Session:
    """One SMTP session with the stand-in: its state, and one method per verb."""

    def __init__(self, server: RelayStandIn, sock: socket.socket) -> None:
        self.server = server
        self.conn: socket.socket = sock
        self.reader = sock.makefile("rb")
        self.tls: str | None = None
        self.mechanism: str | None = None
        self.user: str | None = None
        self.mail_from: str | None = None
        self.rcpts: list[str] = []

    def send(self, line: str) -> None:
        self.conn.sendall(line.encode() + b"\r\n")

    def readline(self) -> str | None:
        raw = self.reader.readline(4096)
        line = raw.decode("utf-8", "replace").rstrip("\r\n") if raw else None
        if line is not None:
            self.server._note(line=line)
        return line

    def ehlo(self, arg: str) -> None:
        ext = ["8BITMIME", "SIZE 10485760"]
        if self.tls is None and self.server.mode != "notls":
            ext.append("STARTTLS")
        if self.tls is not None:
            ext.append("AUTH PLAIN LOGIN")
        lines = [HOSTNAME, *ext]
        for i, text in enumerate(lines):
            self.send(f"250{' ' if i == len(lines) - 1 else '-'}{text}")
        self.mail_from, self.rcpts = None, []

    def starttls(self, arg: str) -> None:
        if self.tls is not None or self.server.mode == "notls":
            self.unknown(arg)
            return
        self.send("220 Ready to start TLS")
        self.conn = self.server.tls.wrap_socket(self.conn, server_side=True)
        self.reader = self.conn.makefile("rb")
        self.tls = self.conn.version() if isinstance(self.conn, ssl.SSLSocket) else None
        self.mechanism = self.user = self.mail_from = None
        self.rcpts = []

    def auth(self, arg: str) -> None:
        if self.tls is None:
            self.send("530 Must issue a STARTTLS command first")
            return
        mech, _, initial = arg.partition(" ")
        self.server._note(auth=mech.upper())
        got = self.server._auth(mech.upper(), initial, self.send, self.readline)
        if got is None:
            self.server._note(auth_failed=True)
            self.send("535 Authentication Credentials Invalid")
        else:
            self.mechanism, self.user = mech.upper(), got
            self.send("235 Authentication successful.")

    def mail(self, arg: str) -> None:
        sender = arg.split(":", 1)[1].strip().split(" ")[0].strip("<>") if ":" in arg else ""
        self.server._note(attempt=Attempt(sender, self.user is not None, self.tls, self.server.mode))
        if self.user is None:
            self.send("530 Authentication required")
        elif self.server.mode == "tempfail":
            self.send("451 4.3.0 Temporary service failure (stand-in tempfail mode)")
        else:
            self.mail_from, self.rcpts = sender, []
            self.send("250 Ok")

    def rcpt(self, arg: str) -> None:
        if self.mail_from is None:
            self.send("503 Error: need MAIL command")
            return
        self.rcpts.append(arg.split(":", 1)[1].strip().strip("<>"))
        self.send("250 Ok")

    def data(self, arg: str) -> None:
        if self.mail_from is None or not self.rcpts:
            self.send("503 Error: need RCPT command")
            return
        self.send("354 End data with <CR><LF>.<CR><LF>")
        body = bytearray()
        while True:
            raw = self.reader.readline(1 << 20)
            if not raw or raw == b".\r\n":
                break
            body += raw[1:] if raw.startswith(b"..") else raw
        self.server._note(received=Received(self.mail_from, tuple(self.rcpts), bytes(body), self.tls,
                                            self.mechanism, self.user))
        self.mail_from, self.rcpts = None, []
        self.send("250 Ok 0100standin-000000")

    def rset(self, arg: str) -> None:
        self.mail_from, self.rcpts = None, []
        self.send("250 Ok")

    def noop(self, arg: str) -> None:
        self.send("250 Ok")

    def quit(self, arg: str) -> bool:
        self.send("221 Bye")
        return False

    def unknown(self, arg: str) -> None:
        self.send("502 5.5.2 Command not recognized")

    handlers: ClassVar[dict[str, Callable[[_Session, str], bool | None]]] = {
        "EHLO": ehlo, "HELO": ehlo, "STARTTLS": starttls, "AUTH": auth, "MAIL": mail, "RCPT": rcpt,
        "DATA": data, "RSET": rset, "NOOP": noop, "QUIT": quit,
    }
