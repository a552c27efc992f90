"""Fixtures of the program tests: the dev stack's resource graph, built once."""

from __future__ import annotations

import pytest

from tests.program.harness import Graph, build


@pytest.fixture(scope="session")
def graph() -> Graph:
    """The dev stack (with the harness's passwords) run through __main__.main() under the
    mocks. Shared by every program test: treat it as read-only."""
    return build()
