"""What a line break in a setting would do to postfix, read by postfix itself (postconf), and
that the renderer refuses it before any file is written (issue 13)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mailserver.core import catalog, render
from tests.support import dev_settings
from tests.tools.support import run

# The last relay restriction with a second line: main.cf writes smtpd_relay_restrictions after
# mynetworks, and postfix keeps the last value of a parameter.
INJECTED = ("permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination\nmynetworks = 0.0.0.0/0")


def _postconf(tree: Path, *names: str) -> list[str]:
    confdir = tree / "files" / catalog.VM_LAYOUT.postfix_dir.lstrip("/")
    proc = run(["postconf", "-c", str(confdir), "-h", *names])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_without_the_guard_a_line_break_would_make_an_open_relay(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """The threat, shown once: with the renderer's check switched off, postconf reads a
    value's second line as a parameter, and postfix would relay for the whole internet."""
    hostile = dataclasses.replace(dev_settings()[0], relay_restrictions=INJECTED)
    monkeypatch.setattr(render, "check_values", lambda s: None)
    render.write_tree(render.render(hostile), tmp_path)
    assert _postconf(tmp_path, "mynetworks") == ["0.0.0.0/0"]


def test_the_renderer_refuses_it_and_writes_nothing(tmp_path: Path) -> None:
    hostile = dataclasses.replace(dev_settings()[0], relay_restrictions=INJECTED)
    with pytest.raises(render.UnsafeValue, match="relay_restrictions"):
        render.write_tree(render.render(hostile), tmp_path)
    assert not any(tmp_path.iterdir())


def test_accepted_settings_keep_postfix_to_its_parameters(tmp_path: Path) -> None:
    """The free-text values settings accept stay one parameter each in main.cf."""
    s = dev_settings(smtpdBanner="$myhostname ESMTP ready # not a comment", mydestination="$myhostname, localhost",
                     myorigin="$myhostname", inetInterfaces="all")[0]
    render.write_tree(render.render(s), tmp_path)
    banner, mynetworks, mydestination = _postconf(tmp_path, "smtpd_banner", "mynetworks", "mydestination")
    assert banner == "$myhostname ESMTP ready # not a comment"
    assert mynetworks == "127.0.0.1/32 [::1]/128" and mydestination == "$myhostname, localhost"
