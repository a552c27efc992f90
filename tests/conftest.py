"""The test suite's layers, one directory each, and the marker every test gets from its
directory (so no test can forget it):

    tests/unit     unit     pure Python: settings, plans, records, the rendered text, the doctor's logic
    tests/program  program  the Pulumi program under mocks (tests/program/harness.py)
    tests/tools    tools    real tools on the rendered bundle, no daemon: postconf, doveconf, cloud-init,
                            shellcheck, sshd -t, fail2ban-client, node, the scripts against stand-ins
    tests/lab      lab      real postfix, dovecot, rspamd, redis, fail2ban and unbound in the lab's network
                            namespace; needs root

`pytest -m "not lab"` is the quick loop: it starts no daemon. Tests that need root carry the
`root` marker (every lab test, and the tools tests on loop devices); run as another user they
are skipped, saying so. A full run takes the layers in that order, cheapest first, so a broken
plan fails in seconds rather than after the lab.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LAYERS = ("unit", "program", "tools", "lab")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Runs before pytest's own hook (conftest hooks are called first), so -m sees these markers.
    as_root = os.geteuid() == 0
    layer_of: dict[str, int] = {}
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        layer = parts[0] if len(parts) > 1 else ""
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in one of tests/{{{','.join(LAYERS)}}}")
        layer_of[item.nodeid] = LAYERS.index(layer)
        item.add_marker(layer)
        if layer == "lab":
            item.add_marker("root")
        if not as_root and item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(reason="needs root (run the suite as root, as scripts/test.sh does)"))
    items.sort(key=lambda item: layer_of[item.nodeid])  # stable: modules and their order stay whole
