"""What the doctor examines: the Target (the stack's settings, the server's IP, resolvers,
timeouts), and the Runner that runs the inside checks' scripts on the host (host.py has
the ssh and local ones)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

from mailserver.core import catalog
from mailserver.core.settings import Settings


class Runner(Protocol):
    """Runs a shell script as root on the mail host; `layout` says where things live there."""

    layout: catalog.Layout
    where: Literal["ssh", "local", "lab"]

    def run(self, script: str) -> tuple[int, str]: ...


@dataclasses.dataclass
class Target:
    settings: Settings
    ip: str  # where the ports are probed and whose PTR/blocklist status is looked up
    dkim: Mapping[str, str | None]  # DKIM TXT name -> expected content (None: presence only)
    resolver: str | None = None  # None: the system's resolvers
    blocklist_resolver: str | None = None  # None: the resolver above
    cafile: str | None = None  # trusted roots; None: the system's
    source: str | None = None  # source address of every probe
    timeout: float = 8.0
    runner: Runner | None = None
    ses_dkim: Sequence[tuple[str, str]] = ()
    volume_id: str | None = None
    aws_region: str | None = None
    ipv6: str | None = None  # the instance's IPv6 address (outputs' publicIpv6); None: it has none
    # The backup MX (secondaryMx): its address, and where its inside check runs (None: not given).
    secondary_ip: str | None = None
    secondary_runner: Runner | None = None
    # timezone.utc, not dt.UTC (3.11): the self-check runs this on the host's python3.9.
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
    # The checks to run (ids of CHECKS); None: every one. The self-check leaves out what the
    # host cannot check of itself (selfcheck.SELF_CHECKS).
    checks: frozenset[str] | None = None
    # The fail2ban jails the bundle enables; None: rendered from the settings (intent.expected_jails).
    jails: tuple[str, ...] | None = None

    def wants(self, check: str) -> bool:
        return self.checks is None or check in self.checks

    @property
    def lab(self) -> bool:
        return self.runner is not None and self.runner.where == "lab"
