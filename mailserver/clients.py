"""Mail clients for the lab's smoke check and the end-to-end tests: the standard library's
smtplib, imaplib and poplib, plus a raw TLS handshake probe. Every client can bind a source
address, because both daemons trust the server's own address: refusals must be tested from
another one (127.0.0.2)."""

from __future__ import annotations

import email.message
import email.utils
import imaplib
import poplib
import smtplib
import socket
import ssl
from typing import Any

from mailserver.core import catalog

SERVER = "127.0.0.1"
OUTSIDE = "127.0.0.2"  # an untrusted client: not in mynetworks, not "local" to dovecot
# Where the lab's postfix relays to: catalog.lab_layout's relayhost.
RELAY_STANDIN, RELAY_STANDIN_PORT = catalog.RELAY_STANDIN, catalog.RELAY_STANDIN_PORT
TIMEOUT = 20.0
# OpenSSL's reasons for not even sending a ClientHello: the client's own limits, not the server's.
LOCAL_TLS_ERRORS = ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE")


def tls_context(cafile: str | None = None, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that trusts `cafile` (the lab's self-signed certificate). With
    `version`, it offers only that TLS version, at security level 0 so the client side
    does not refuse TLS 1.0/1.1 itself: any refusal then comes from the server."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # we connect by IP; the name is checked separately
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def message(sender: str, to: list[str], subject: str, body: str = "lab message\n",
            size: int = 0) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain="lab.invalid")
    msg.set_content(body + ("x" * 76 + "\n") * (size // 77))
    return msg


def _bind(source: str | None) -> tuple[str, int] | None:
    """A source address for socket.create_connection; None lets the kernel choose (the
    doctor, run against a deployed server, has no reason to pick one)."""
    return (source, 0) if source else None


def smtp(port: int, source: str | None = OUTSIDE, implicit_tls: bool = False, ctx: ssl.SSLContext | None = None,
         host: str = SERVER, timeout: float = TIMEOUT) -> smtplib.SMTP:
    if implicit_tls:
        return smtplib.SMTP_SSL(host, port, source_address=_bind(source), context=ctx or tls_context(),
                                timeout=timeout)
    return smtplib.SMTP(host, port, source_address=_bind(source), timeout=timeout)


def rcpt_reply(rcpt: str, sender: str = "someone@outside.example", tls: ssl.SSLContext | None = None,
               host: str = SERVER, source: str | None = OUTSIDE, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """What port 25 answers an outside client at RCPT TO (optionally after STARTTLS): the
    moment a relay attempt or an unknown recipient must be refused."""
    with smtp(catalog.SMTP_PORT, source=source, host=host, timeout=timeout) as conn:
        if tls is not None:
            conn.starttls(context=tls)
        conn.ehlo("mx.outside.example")
        conn.mail(sender)
        return conn.rcpt(rcpt)


class _SourceBound:
    """Mixin: open the connection from a chosen source address (imaplib/poplib cannot)."""

    source: str | None = OUTSIDE
    host: str
    port: int

    def _create_socket(self, timeout: Any = None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout or TIMEOUT, source_address=_bind(self.source))


class IMAP(_SourceBound, imaplib.IMAP4):
    pass


class IMAPS(_SourceBound, imaplib.IMAP4_SSL):
    def _create_socket(self, timeout: Any = None) -> socket.socket:
        sock = _SourceBound._create_socket(self, timeout)
        context: ssl.SSLContext = self.ssl_context
        return context.wrap_socket(sock, server_hostname=self.host)


class POP3(_SourceBound, poplib.POP3):
    pass


class POP3S(_SourceBound, poplib.POP3_SSL):
    def _create_socket(self, timeout: Any = None) -> socket.socket:
        sock = _SourceBound._create_socket(self, timeout)
        context: ssl.SSLContext = self.context  # type: ignore[attr-defined]
        return context.wrap_socket(sock, server_hostname=self.host)


def imap_messages(port: int, user: str, password: str, ctx: ssl.SSLContext, implicit_tls: bool) -> list[bytes]:
    """All messages of INBOX, as raw bytes, over IMAPS or IMAP + STARTTLS."""
    conn: imaplib.IMAP4 = IMAPS(SERVER, port, ssl_context=ctx) if implicit_tls else IMAP(SERVER, port)
    try:
        if not implicit_tls:
            conn.starttls(ssl_context=ctx)
        conn.login(user, password)
        conn.select("INBOX", readonly=True)
        _, data = conn.search(None, "ALL")
        out: list[bytes] = []
        for num in data[0].split():
            _, parts = conn.fetch(num, "(RFC822)")
            body = parts[0][1]  # type: ignore[index]
            assert isinstance(body, bytes)
            out.append(body)
        return out
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def pop3_messages(port: int, user: str, password: str, ctx: ssl.SSLContext, implicit_tls: bool) -> list[bytes]:
    """All messages of the mailbox over POP3S or POP3 + STLS, left on the server."""
    conn: poplib.POP3 = POP3S(SERVER, port, context=ctx) if implicit_tls else POP3(SERVER, port)
    try:
        if not implicit_tls:
            conn.stls(context=ctx)
        conn.user(user)
        conn.pass_(password)
        count, _ = conn.stat()
        return [b"\r\n".join(conn.retr(i + 1)[1]) for i in range(count)]
    finally:
        try:
            conn.quit()
        except (poplib.error_proto, OSError):
            pass


class StartTlsError(ConnectionError):
    """The server did not get as far as a TLS handshake: it refused STARTTLS, greeted with an
    error (421: too busy, shutting down) or hung up. Not a refusal of a TLS version."""


def _read_line(sock: socket.socket) -> bytes:
    """One line; a server that closes the connection instead is an error. (Returning b""
    made the reply loops below spin at 100% CPU forever on a server that said 421 and hung up.)"""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise StartTlsError(f"connection closed by the server after {buf[:80]!r}" if buf
                                else "connection closed by the server")
        buf += chunk
    return buf


def _smtp_reply(sock: socket.socket, want: bytes) -> bytes:
    """A whole (multi-line) SMTP reply, which must carry the code `want`."""
    lines = [_read_line(sock)]
    while lines[-1][3:4] == b"-":
        lines.append(_read_line(sock))
    if not lines[-1].startswith(want):
        raise StartTlsError(lines[-1].decode(errors="replace").strip()[:120])
    return b"".join(lines)


def _starttls(sock: socket.socket, protocol: str) -> None:
    """Speak the protocol up to the point where the TLS handshake starts."""
    if protocol == "smtp":
        _smtp_reply(sock, b"220")
        sock.sendall(b"EHLO probe.invalid\r\n")
        _smtp_reply(sock, b"250")
        sock.sendall(b"STARTTLS\r\n")
        _smtp_reply(sock, b"220")
    elif protocol == "imap":
        greeting = _read_line(sock)
        if not greeting.startswith(b"* OK"):
            raise StartTlsError(greeting.decode(errors="replace").strip()[:120])
        sock.sendall(b"a STARTTLS\r\n")
        line = _read_line(sock)
        while line.startswith(b"* "):  # untagged lines before the tagged answer
            line = _read_line(sock)
        if not line.startswith(b"a OK"):
            raise StartTlsError(f"STARTTLS refused: {line.decode(errors='replace').strip()[:120]}")
    elif protocol == "pop3":
        greeting = _read_line(sock)
        if not greeting.startswith(b"+OK"):
            raise StartTlsError(greeting.decode(errors="replace").strip()[:120])
        sock.sendall(b"STLS\r\n")
        line = _read_line(sock)
        if not line.startswith(b"+OK"):
            raise StartTlsError(f"STLS refused: {line.decode(errors='replace').strip()[:120]}")


def tls_peer(port: int, starttls: str | None, ctx: ssl.SSLContext, source: str | None = OUTSIDE,
             host: str = SERVER, timeout: float = TIMEOUT, server_name: str = "mail.invalid") -> tuple[bytes, str]:
    """One TLS handshake (after the protocol's STARTTLS when `starttls` names it) with `ctx`.
    Returns the server's certificate (DER) and the negotiated version; raises the ssl error
    when `ctx` refuses the server (or the server refuses `ctx`)."""
    sock = socket.create_connection((host, port), timeout, source_address=_bind(source))
    try:
        if starttls:
            try:
                _starttls(sock, starttls)
            except StartTlsError:
                raise
            except OSError as e:  # a reset or a timeout before the handshake began
                raise StartTlsError(f"{type(e).__name__} before the TLS handshake: {e}") from e
        with ctx.wrap_socket(sock, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True) or b"", tls.version() or ""
    finally:
        sock.close()


def tls_handshake(port: int, starttls: str | None, version: ssl.TLSVersion, source: str | None = OUTSIDE,
                  host: str = SERVER, timeout: float = TIMEOUT) -> str | None:
    """Try a handshake offering only `version`. Returns the negotiated version, or None
    when the server refused it (a TLS alert, or a hang-up in the middle of the handshake).
    Anything else raises: StartTlsError when no handshake was attempted, TimeoutError, and
    an ssl.SSLError when this machine's OpenSSL cannot offer `version` at all; none of them
    says anything about the server's TLS versions."""
    try:
        return tls_peer(port, starttls, tls_context(version=version), source, host, timeout)[1]
    except ssl.SSLError as e:
        if e.reason in LOCAL_TLS_ERRORS:
            raise
        return None
    except ConnectionResetError:
        return None
