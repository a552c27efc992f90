"""The spam filter's settings (issue 15): validated like the rest, each refusal naming its key
and a fix, the web UI password never shown; and what each does to rspamd's rendered files."""

from __future__ import annotations

from typing import Any

import pytest

from mailserver.core import render
from mailserver.core.settings import SettingsError
from tests.support import dev_raw, dev_settings, settings_problems


def test_the_defaults_are_rspamd_s_own_thresholds_with_the_filter_on() -> None:
    s, secrets = dev_settings()
    assert (s.spam_filter, s.spam_reject_score, s.spam_junk_score, s.greylisting) == (True, 15, 6, False)
    assert secrets.rspamd_password == ""  # the host makes a random one


@pytest.mark.parametrize("key,value", [("spamRejectScore", 1), ("spamRejectScore", 101), ("spamJunkScore", 0),
                                       ("spamJunkScore", 100), ("spamRejectScore", "high")])
def test_a_score_out_of_range_is_refused(key: str, value: Any) -> None:
    found = settings_problems(**{key: value})
    assert key in found and "Fix:" in found[key]


def test_junk_at_or_above_reject_is_refused_because_junk_would_never_get_mail() -> None:
    found = settings_problems(spamJunkScore=15, spamRejectScore=15)
    assert "spamJunkScore" in found and "ever be filed as Junk" in found["spamJunkScore"]
    dev_settings(spamJunkScore=14, spamRejectScore=15)  # one below: fine


@pytest.mark.parametrize("password,why", [("s3cr3t!", "shorter than 8"), ('has"quote1', "double quote"),
                                          ("back\\slash1", "backslash")])
def test_a_bad_web_ui_password_is_refused_and_never_shown(password: str, why: str) -> None:
    found = settings_problems(rspamdPassword=password)
    assert why in found["rspamdPassword"]
    assert password not in " ".join(found.values())


def test_the_password_travels_on_stdin_only_never_in_the_bundle() -> None:
    s, secrets = dev_settings(rspamdPassword="correct horse battery")
    assert render.rspamd_password_stdin(secrets) == "correct horse battery\n"
    b = render.render(s)
    blob = b.tarball() + b.user_data.encode()
    assert b"correct horse battery" not in blob and "correct horse" not in repr(secrets)


def test_spam_filter_off_leaves_rspamd_signing_and_acting_on_nothing() -> None:
    s, _ = dev_settings(spamFilter=False)
    b = render.render(s)
    actions = b.file("/etc/rspamd/local.d/actions.conf").content
    for action in ("reject", "add_header", "greylist"):
        assert f"{action} = null;" in actions
    assert "actions {" not in b.file("/etc/rspamd/local.d/dmarc.conf").content
    assert "domain {" in b.file("/etc/rspamd/local.d/dkim_signing.conf").content


def test_thresholds_and_greylisting_reach_rspamd() -> None:
    s, _ = dev_settings(spamRejectScore=20, spamJunkScore=3, greylisting=True)
    b = render.render(s)
    actions = b.file("/etc/rspamd/local.d/actions.conf").content
    # Greylisting below the junk score, so a message scored for Junk is not also greylisted first.
    assert "reject = 20;" in actions and "add_header = 3;" in actions and "greylist = 3;" in actions
    assert "enabled = true;" in b.file("/etc/rspamd/local.d/greylist.conf").content
    assert "enabled = false;" in render.render(dev_settings()[0]).file("/etc/rspamd/local.d/greylist.conf").content


def test_unknown_spam_key_is_named() -> None:
    with pytest.raises(SettingsError) as info:
        dev_settings(spamfilter=True)
    assert any("did you mean spamFilter" in p.fix for p in info.value.problems)
    assert dev_raw()  # the stack file itself is valid
