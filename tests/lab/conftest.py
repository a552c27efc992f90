"""Fixtures of the lab tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailserver.lab import netns
from mailserver.lab.server import Lab
from tests.support import dev_settings


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """One lab on the dev stack for the module, with the test's thread inside its network
    namespace (clients connect to the daemons as from another host). A test that changes
    the lab puts it back; modules that need other settings define their own `lab`."""
    settings, secrets = dev_settings()
    with Lab(settings, secrets) as running, netns.entered(running.ns):
        yield running
