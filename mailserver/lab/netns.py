"""Private network namespaces for the lab: real ports (25, 143, ...) on loopback, invisible to
the rest of the machine. Needs root (CAP_SYS_ADMIN), as `ip netns` does."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def create(name: str) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)


def delete(name: str) -> None:
    """Kill whatever still runs in the namespace, then remove it."""
    for _ in range(50):
        pids = pids_in(name)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        subprocess.run(["sleep", "0.1"], check=False)
    subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def link(a: str, address_a: str, b: str, address_b: str) -> None:
    """Join namespaces a and b with a veth pair, address_a on a's end and address_b on b's, each
    a /32 with a route to the other. The addresses are loopback-range ones (127.x): Linux drops
    them on any interface but lo unless route_localnet is set, which each namespace sets for
    itself (the sysctl is per namespace; the machine's own stays as it was). Deleting either
    namespace removes the pair."""
    ends = (f"v{a}"[:15], f"v{b}"[:15])
    subprocess.run(["ip", "link", "add", ends[0], "netns", a, "type", "veth", "peer", "name", ends[1], "netns", b],
                   check=True)
    for ns, end, mine, theirs in ((a, ends[0], address_a, address_b), (b, ends[1], address_b, address_a)):
        for scope in ("all", end):
            subprocess.run(cmd(ns, ["sysctl", "-qw", f"net.ipv4.conf.{scope}.route_localnet=1"]), check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{mine}/32", "dev", end], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", end, "up"], check=True)
        subprocess.run(["ip", "-n", ns, "route", "add", f"{theirs}/32", "dev", end, "src", mine], check=True)


def exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def pids_in(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def cmd(name: str, argv: list[str]) -> list[str]:
    """argv run inside the namespace."""
    return ["ip", "netns", "exec", name, *argv]


def _setns_fd(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({what}): {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the calling thread inside the namespace, then return it to where it was.
    Sockets opened inside stay in the namespace after the block."""
    original = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns_fd(target, name)
        finally:
            os.close(target)
        yield
    finally:
        try:
            _setns_fd(original, "the original network namespace")
        finally:
            os.close(original)
