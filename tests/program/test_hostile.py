"""Hostile settings under `pulumi up` (mocks): each reaches the user as a Pulumi error listing
every problem, key and fix, with no traceback, no secret, and no resource created. The
inputs are tests/hostile.py's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.hostile import HOSTILE, UNKNOWN_STACK_KEYS, schema_keys, with_control
from tests.program.harness import PASSWORDS, refused_before_any_resource

ALICE = PASSWORDS["alice@example.com"]


@pytest.mark.parametrize("value", [
    f"alice@example.com:{ALICE}",  # a string, not a list
    json.dumps({"alice@example.com": ALICE}),  # an object
    json.dumps([[f"alice@example.com:{ALICE}"]]),  # a list of lists
    json.dumps(f"alice@example.com:{ALICE}"),  # a JSON string
    f"[alice@example.com:{ALICE}",  # half a list
    "[" * 100_000 + f'"alice@example.com:{ALICE}"' + "]" * 100_000,  # nested deeper than Python's stack
])
def test_a_secret_of_the_wrong_shape_is_named_and_never_shown(value: str) -> None:
    message = refused_before_any_resource({"mailboxPasswords": value})
    assert "mailserver:mailboxPasswords: must be a list of strings" in message
    assert "--secret" in message
    assert ALICE not in message and ALICE[:8] not in message


@pytest.mark.parametrize("key", schema_keys(), ids=lambda k: k.name)
def test_a_line_break_in_any_setting_is_a_pulumi_error(key: Any) -> None:
    message = refused_before_any_resource({key.name: with_control(key)})
    assert f"mailserver:{key.name}:" in message and "control character" in message
    assert ALICE not in message


@pytest.mark.parametrize("key,fix", UNKNOWN_STACK_KEYS)
def test_a_key_nobody_reads_is_a_pulumi_error(key: str, fix: str) -> None:
    message = refused_before_any_resource({key: "SECRET-VALUE-3f9a"})
    assert f"{key}:" in message and fix in message
    assert "SECRET-VALUE-3f9a" not in message


@pytest.mark.parametrize("key,value,fix", HOSTILE, ids=lambda x: x if isinstance(x, str) else repr(x)[:40])
def test_hostile_settings_are_pulumi_errors(key: str, value: Any, fix: str) -> None:
    message = refused_before_any_resource({key: value})
    assert f"mailserver:{key}:" in message and fix in message


def test_the_error_lists_every_problem_at_once() -> None:
    message = refused_before_any_resource({
        "smtpdBanner": "$myhostname ESMTP\nmynetworks = 0.0.0.0/0", "mynetworks": ["0.0.0.0/1", "128.0.0.0/1"],
        "sshUser": "root", "spfExtra": ["+all"], "aws:regoin": "eu-west-1", "mailboxPasswords": "x:" + ALICE,
    })
    assert "(6 problem(s))" in message
    for key in ("mailserver:smtpdBanner", "mailserver:mynetworks", "mailserver:sshUser", "mailserver:spfExtra",
                "aws:regoin", "mailserver:mailboxPasswords"):
        assert f"  - {key}: " in message
    assert message.count("Fix: ") == 6 and ALICE not in message
