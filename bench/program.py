"""The Pulumi program's own cost: the time to evaluate __main__.py under Pulumi's mocks and
the number of resources it registers, for growing numbers of mailboxes.

It reuses the program tests' harness (tests/program/harness.py: the mocks and the stack
config; it loads __main__.py with importlib and runs main() under pulumi.runtime.test), so the
benchmark evaluates the program exactly as the test suite does; only the monitor differs: it
counts registrations. The harness is a plain module, not a test module: it needs no pytest.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks

from mailserver.core import settings as settings_mod
from mailserver.core.settings import ROOT


class CountingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.types: collections.Counter[str] = collections.Counter()

    def RegisterResource(self, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            self.types[request.type] += 1
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]


def mailboxes(n: int) -> tuple[list[str], dict[str, str]]:
    """The dev stack's mailboxes (the aliases point at them) plus generated ones, n in all,
    spread over the stack's domains, each with a password."""
    raw = settings_mod.read_stack_file(ROOT / "Pulumi.dev.yaml")
    boxes = list(raw["mailboxes"])
    domains = list(raw["domains"])
    boxes += [f"user{i:05d}@{domains[i % len(domains)]}" for i in range(n - len(boxes))]
    return boxes, {m: f"bench-password-{i:05d}-long-enough" for i, m in enumerate(boxes)}


def evaluate(n: int) -> tuple[float, collections.Counter[str]]:
    """Seconds to run the program once under mocks (settings, render, every resource) with n
    mailboxes, and the resources it registered, by type."""
    from tests.program import harness  # the suite's mocks and config; imports __main__.py once

    boxes, passwords = mailboxes(n)
    mocks = harness.Mocks()
    monitor = CountingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="mailserver", stack="bench", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(harness.stack_config({"mailboxes": boxes}, passwords),
                                  secret_keys=["mailserver:mailboxPasswords"])

    async def resolve(values: dict[str, Any]) -> None:
        for value in values.values():
            await pulumi.Output.from_input(value).future()

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> Any:
        return resolve(harness.program.main())

    start = time.monotonic()
    run()
    return time.monotonic() - start, monitor.types
