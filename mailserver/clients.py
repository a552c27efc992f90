"""Mail clients for the lab's smoke check and the end-to-end tests: the standard library's
smtplib, imaplib and poplib, plus a raw TLS handshake probe. Every client can bind a source
address, because both daemons trust the server's own address: refusals must be tested from
another one (127.0.0.2)."""

from __future__ import annotations

import base64
import contextlib
import email.message
import email.utils
import imaplib
import poplib
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
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


def imap_messages(port: int, user: str, password: str, ctx: ssl.SSLContext, implicit_tls: bool,
                  mailbox: str = "INBOX") -> list[bytes]:
    """All messages of a mailbox (INBOX unless named), as raw bytes, over IMAPS or IMAP + STARTTLS."""
    conn: imaplib.IMAP4 = IMAPS(SERVER, port, ssl_context=ctx) if implicit_tls else IMAP(SERVER, port)
    try:
        if not implicit_tls:
            conn.starttls(ssl_context=ctx)
        conn.login(user, password)
        status, detail = conn.select(mailbox, readonly=True)
        if status != "OK":
            raise imaplib.IMAP4.error(f"SELECT {mailbox}: {detail}")
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


class ManageSieveError(Exception):
    """A ManageSieve server answered what no healthy one would (no greeting, a command refused
    that must be accepted), or something this client cannot read."""


class ManageSieve:
    """A ManageSieve (RFC 5804) client, as much as logging in and installing a script takes:
    STARTTLS, AUTHENTICATE PLAIN, PUTSCRIPT, SETACTIVE, LOGOUT. Python has none in its standard
    library, and the doctor's probe must run on the host's bare python3 too."""

    def __init__(self, port: int = 4190, host: str = SERVER, source: str | None = OUTSIDE,
                 timeout: float = TIMEOUT) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout, source_address=_bind(source))
        self._file = self.sock.makefile("rb")
        # The greeting is the capability list (RFC 5804 1.7); a server that cannot serve says BYE.
        self.capabilities = self._capabilities()

    def _line(self) -> bytes:
        line = self._file.readline(MANAGESIEVE_MAX_LINE)
        if not line.endswith(b"\n"):
            raise ManageSieveError(f"connection closed or line too long after {line[:80]!r}")
        return line.rstrip(b"\r\n")

    def _response(self) -> tuple[list[bytes], str, str]:
        """(lines before the status, status OK/NO/BYE, the status line's rest). A literal
        {N} ending a line (the server's way to send text with line breaks) is read whole."""
        lines: list[bytes] = []
        while True:
            line = self._line()
            literal = re.search(rb"\{(\d+)\+?\}$", line)
            if literal:
                line += b"\n" + self._file.read(int(literal.group(1))) + self._line()
            status = line.split(b" ", 1)[0].upper()
            if status in (b"OK", b"NO", b"BYE"):
                return lines, status.decode(), line[len(status):].strip().decode(errors="replace")
            lines.append(line)

    def _capabilities(self) -> dict[str, str]:
        lines, status, text = self._response()
        if status != "OK":
            raise ManageSieveError(f"{status} {text}")
        caps: dict[str, str] = {}
        for line in lines:
            words = [re.sub(rb"\\(.)", rb"\1", w).decode(errors="replace")
                     for w in re.findall(rb'"((?:[^"\\]|\\.)*)"', line)]
            if words:
                caps[words[0].upper()] = words[1] if len(words) > 1 else ""
        return caps

    def command(self, line: bytes) -> tuple[str, str]:
        """Send one command; (status, text) of the answer."""
        self.sock.sendall(line + b"\r\n")
        _, status, text = self._response()
        return status, text

    @property
    def sasl(self) -> list[str]:
        """The SASL mechanisms offered now: none may be before STARTTLS (the password would
        cross in clear)."""
        return self.capabilities.get("SASL", "").upper().split()

    def starttls(self, ctx: ssl.SSLContext, server_name: str = "mail.invalid") -> None:
        status, text = self.command(b"STARTTLS")
        if status != "OK":
            raise ManageSieveError(f"STARTTLS refused: {status} {text}")
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_name)
        self._file = self.sock.makefile("rb")
        # After TLS the server says its capabilities again (RFC 5804 2.2), now with SASL.
        self.capabilities = self._capabilities()

    def authenticate(self, user: str, password: str) -> tuple[str, str]:
        """AUTHENTICATE "PLAIN" with the initial response (RFC 4616), as a quoted string."""
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.command(f'AUTHENTICATE "PLAIN" "{token}"'.encode())

    def putscript(self, name: str, script: str) -> tuple[str, str]:
        """Upload a script (compiled by the server, which refuses it with NO when it is not
        valid Sieve); sent as a non-synchronising literal, which RFC 5804 has clients use."""
        data = script.encode()
        return self.command(b"PUTSCRIPT " + _sieve_quoted(name) + f" {{{len(data)}+}}\r\n".encode() + data)

    def setactive(self, name: str) -> tuple[str, str]:
        return self.command(b"SETACTIVE " + _sieve_quoted(name))

    def logout(self) -> None:
        try:
            self.command(b"LOGOUT")
        except (OSError, ManageSieveError):
            pass
        finally:
            self.sock.close()


@contextlib.contextmanager
def managesieve(port: int = 4190, host: str = SERVER, source: str | None = OUTSIDE,
                timeout: float = TIMEOUT) -> Iterator[ManageSieve]:
    """A ManageSieve connection, logged out and closed at the end."""
    conn = ManageSieve(port, host, source, timeout)
    try:
        yield conn
    finally:
        conn.logout()


# A line longer than this is no ManageSieve server's (capability lines are short).
MANAGESIEVE_MAX_LINE = 8192


def _sieve_quoted(text: str) -> bytes:
    """A quoted string (RFC 5804 4): backslash and double quote escaped. Never a line break,
    which a quoted string cannot hold."""
    if "\r" in text or "\n" in text:
        raise ValueError("a ManageSieve quoted string cannot hold a line break")
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


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


def _sieve_ok(sock: socket.socket, what: str) -> None:
    """Read a ManageSieve response up to its status line, which must be OK."""
    line = _read_line(sock)
    while line.startswith(b'"'):  # capability lines before the status
        line = _read_line(sock)
    if not line.upper().startswith(b"OK"):
        raise StartTlsError(f"{what}: {line.decode(errors='replace').strip()[:120]}")


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
    elif protocol == "sieve":
        _sieve_ok(sock, "greeting")  # the capability lines, then OK
        sock.sendall(b"STARTTLS\r\n")
        _sieve_ok(sock, "STARTTLS refused")


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
