"""Hostile input (issue 13): every setting is checked as what it is and what it means; the
renderer refuses on its own what would add a line or a parameter to a file; keys nobody reads
are named. The inputs are in tests/hostile.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailserver.core import catalog, records, render, settings
from mailserver.core.settings import Settings, SettingsError
from mailserver.core.settings_checks import Alias
from tests.hostile import (
    CONTROLS,
    HOSTILE,
    INJECTION,
    UNKNOWN_STACK_KEYS,
    field_of,
    schema_keys,
    string_keys,
    with_control,
)
from tests.support import DEV_STACK, PASSWORDS, dev_raw, dev_settings


def refused(key: str, value: Any, fix: str = "") -> SettingsError:
    """parse refuses `value` for `key`, naming the key with a fix (mentioning `fix`)."""
    with pytest.raises(SettingsError) as info:
        settings.parse(dev_raw(**{key: value}))
    err = info.value
    assert key in err.keys, f"{key}={value!r} refused for other keys only: {err}"
    fixes = [p.fix for p in err.problems if p.key == key]
    assert all(fixes) and any(fix in f for f in fixes), f"{key}: no fix mentions {fix!r}: {fixes}"
    assert f"mailserver:{key}:" in str(err) and "Fix:" in str(err)
    return err


# --- 1. a line break, or any control character, in any setting ---------------------------


@pytest.mark.parametrize("key", schema_keys(), ids=lambda k: k.name)
def test_a_line_break_in_any_setting_is_refused(key: settings.Key) -> None:
    value = with_control(key)
    err = refused(key.name, value, "one line")
    assert any("control character (line feed, U+000A)" in p.message for p in err.problems if p.key == key.name)
    if key.secret:  # the secret's text is never shown, even around the line break
        for password in PASSWORDS.values():
            assert password not in str(err)


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("key", string_keys(), ids=lambda k: k.name)
def test_any_control_character_in_any_text_setting_is_refused(key: settings.Key, control: str) -> None:
    refused(key.name, with_control(key, control), "one line")


def test_a_line_break_is_refused_even_at_the_end() -> None:
    # Values are stripped of spaces, but a trailing line break is refused, not stripped away.
    refused("smtpdBanner", "$myhostname ESMTP\n", "one line")
    with pytest.raises(SettingsError) as info:
        settings.parse(dev_raw(**{"aws:region": "eu-central-1\nfoo"}))
    assert "aws:region" in info.value.keys


def test_the_secret_is_not_echoed_when_its_entry_holds_a_line_break() -> None:
    entry = f"alice@example.com:{PASSWORDS['alice@example.com']}\nbob@example.net:injected-password-99"
    with pytest.raises(SettingsError) as info:
        settings.parse(dev_raw(mailboxPasswords=[entry, f"bob@example.net:{PASSWORDS['bob@example.net']}"]))
    text = str(info.value) + repr(info.value)
    assert "mailboxPasswords" in info.value.keys
    assert PASSWORDS["alice@example.com"] not in text and "injected-password-99" not in text


# --- 1. the renderer refuses on its own (Settings built around parse) ---------------------


def _bypassed(s: Settings, field: str, suffix: str) -> Any:
    """The field's value with `suffix` added to one of its strings, whatever its shape."""
    value = getattr(s, field)
    if isinstance(value, str):
        return value + suffix
    first = value[0] if value else "x"
    if isinstance(first, Alias):
        return (dataclasses.replace(first, source=first.source + suffix), *value[1:])
    if isinstance(first, tuple):  # zone ids: (domain, id)
        return ((first[0] + suffix, first[1]), *value[1:])
    return (*value[1:], first + suffix)


RENDERED_KEYS = [k for k in string_keys() if not k.secret and field_of(k.name) in
                 {f.name for f in dataclasses.fields(Settings)}]


def test_every_text_setting_but_the_secrets_is_a_settings_field() -> None:
    assert {k.name for k in string_keys()} - {k.name for k in RENDERED_KEYS} == {"mailboxPasswords", "rspamdPassword"}


@pytest.mark.parametrize("key", RENDERED_KEYS, ids=lambda k: k.name)
def test_the_renderer_refuses_a_line_break_in_any_text_field(key: settings.Key) -> None:
    s = dev_settings()[0]
    field = field_of(key.name)
    hostile = dataclasses.replace(s, **{field: _bypassed(s, field, INJECTION)})
    with pytest.raises(render.UnsafeValue) as info:
        render.render(hostile)
    assert f"field {field} " in str(info.value) and "control character" in str(info.value)
    assert "0.0.0.0/0" not in str(info.value)  # the value itself is never shown


ONE_WORD_FIELDS = sorted(f.name for f in dataclasses.fields(Settings) if f.name not in render._PHRASE_FIELDS
                         and isinstance(getattr(dev_settings()[0], f.name), (str, tuple)))


@pytest.mark.parametrize("field", ONE_WORD_FIELDS)
def test_the_renderer_refuses_a_second_word_in_a_one_word_field(field: str) -> None:
    s = dev_settings()[0]
    hostile = dataclasses.replace(s, **{field: _bypassed(s, field, " root")})
    with pytest.raises(render.UnsafeValue, match="white space"):
        render.render(hostile)


@pytest.mark.parametrize("suffix", ['"', "'", "`", "\\", "$(reboot)"])
def test_the_renderer_refuses_what_breaks_out_of_quotes(suffix: str) -> None:
    s = dev_settings()[0]
    with pytest.raises(render.UnsafeValue, match="quote"):
        render.render(dataclasses.replace(s, acme_email=s.acme_email + suffix))


def test_the_renderer_refuses_a_line_break_in_a_password_without_showing_it() -> None:
    s, secrets = dev_settings()
    hostile = settings.Secrets({**secrets.passwords, "alice@example.com": "pw-SECRET-71\nmallory@example.com\tx"})
    with pytest.raises(render.UnsafeValue) as info:
        render.password_stdin(s, hostile)
    assert "pw-SECRET-71" not in str(info.value) and "alice@example.com" in str(info.value)
    with pytest.raises(render.UnsafeValue):
        render.relay_credentials_stdin("AKIA\nX", "secret")


def test_valid_settings_pass_the_renderers_guard() -> None:
    render.check_values(dev_settings(smtpdBanner="$myhostname ESMTP ready", mydestination="$myhostname, localhost",
                                     inetInterfaces="127.0.0.1, [::1]")[0])


# --- 2. meaning, not spelling -------------------------------------------------------------


@pytest.mark.parametrize("key,value,fix", HOSTILE, ids=lambda x: x if isinstance(x, str) else repr(x)[:40])
def test_hostile_settings_are_refused(key: str, value: Any, fix: str) -> None:
    refused(key, value, fix)


def test_wide_admin_cidrs_pass_with_the_explicit_opt_in() -> None:
    s = dev_settings(adminCidrs=["0.0.0.0/1", "128.0.0.0/1"], allowSshFromAnywhere=True)[0]
    assert s.admin_cidrs == ("0.0.0.0/1", "128.0.0.0/1")


@pytest.mark.parametrize("nets", [
    ["127.0.0.1/32", "[::1]/128"],
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"],  # private space counts for nothing
    ["198.51.100.0/24", "1.0.0.0/9"],  # a public /9: under 1/256 of the routable internet
    ["[2001:db8::]/32", "[2a00::]/12"],
])
def test_narrow_or_private_networks_are_accepted(nets: list[str]) -> None:
    assert dev_settings(mynetworks=nets)[0].mynetworks == tuple(nets)


@pytest.mark.parametrize("terms", [
    ["include:_spf.google.com", "include:spf.protection.outlook.com"],
    ["ip4:74.125.0.0/16", "ip4:52.100.0.0/14", "ip6:2001:4860:4000::/36", "~ip4:198.51.100.7"],
    ["a", "mx", "a:relay.example.org/24", "mx//64", "exists:%{i}._spf.example.org", "exp=explain.example.org"],
    ["-ip4:0.0.0.0/0"],  # a fail qualifier authorises nobody
])
def test_real_spf_mechanisms_are_accepted(terms: list[str]) -> None:
    assert dev_settings(spfExtra=terms)[0].spf_extra == tuple(terms)


def test_relay_restrictions_may_refuse_more() -> None:
    rules = ["permit_mynetworks", "permit_sasl_authenticated", "reject_non_fqdn_recipient",
             "reject_unknown_recipient_domain", "permit_auth_destination", "reject_unauth_destination"]
    assert dev_settings(relayRestrictions=rules)[0].relay_restrictions == tuple(rules)


def test_a_loop_is_named_once_with_its_chain() -> None:
    err = refused("aliases", ["a@example.com=b@example.com", "b@example.com=c@example.com",
                              "c@example.com=a@example.com"], "point one")
    loops = [p.message for p in err.problems if "loop" in p.message]
    assert len(loops) == 1 and "a@example.com -> b@example.com -> c@example.com -> a@example.com" in loops[0]


def test_aliases_chains_without_a_loop_are_accepted() -> None:
    s = dev_settings(aliases=["a@example.com=b@example.com", "b@example.com=alice@example.com,bob@example.net",
                              "c@example.com=a@example.com,b@example.com"])[0]
    assert {"a@example.com", "b@example.com", "c@example.com"} <= {a.source for a in s.aliases}


def test_ssh_user_root_is_refused_as_sshd_refuses_it() -> None:
    err = refused("sshUser", "root", "ec2-user")
    assert any("PermitRootLogin no" in p.message for p in err.problems)
    sshd = render.render(dev_settings()[0]).file(catalog.SSHD_DROPIN).content
    assert "PermitRootLogin no" in sshd and f"AllowUsers {catalog.SSH_ROOT_USER}" not in sshd


# --- 2. international domain names --------------------------------------------------------


IDN_RAW = {
    "domains": ["b\u00fccher.example", "example.net"],
    "cloudflareZoneIds": ["B\u00fccher.example=023e105f4ecef8ad9ca31a8372d0c353",
                          "example.net=5b7d3f0c1e2a4b6c8d9e0f1a2b3c4d5e"],
    "mailboxes": ["alice@b\u00fccher.example", "bob@example.net"],
    "mailboxPasswords": ["alice@b\u00fccher.example:correct horse battery", "bob@example.net:another long password"],
    "aliases": ["sales@B\u00dcCHER.example=alice@b\u00fccher.example"],
}


def test_an_international_domain_becomes_its_xn_form_everywhere() -> None:
    s, secrets = settings.parse(dev_raw(**IDN_RAW))
    assert s.domains == ("xn--bcher-kva.example", "example.net")
    assert s.hostname == "mail.xn--bcher-kva.example" and s.mydomain == "xn--bcher-kva.example"
    assert s.zone_id("xn--bcher-kva.example") == "023e105f4ecef8ad9ca31a8372d0c353"
    assert s.mailboxes[0] == "alice@xn--bcher-kva.example"
    assert "alice@xn--bcher-kva.example" in secrets.passwords
    assert ("sales@xn--bcher-kva.example", ("alice@xn--bcher-kva.example",)) in {(a.source, a.targets)
                                                                              for a in s.aliases}
    # DNS: the A and MX records, and every other record, carry the xn-- name only.
    mx = next(r for r in records.dns_records(s, "198.51.100.77") if r.type == "MX" and "bcher" in r.fqdn)
    assert (mx.fqdn, mx.content) == ("xn--bcher-kva.example", "mail.xn--bcher-kva.example")
    everything = records.planned_records(s, "198.51.100.77")
    assert all(r.fqdn.isascii() and r.content.isascii() for r in everything)
    assert any(r.fqdn == "_dmarc.xn--bcher-kva.example" for r in everything)
    # postfix and dovecot: the same spelling.
    main_cf = render.render(s).file(f"{catalog.VM_LAYOUT.postfix_dir}/main.cf").content
    assert "virtual_mailbox_domains = xn--bcher-kva.example, example.net" in main_cf
    assert main_cf.isascii()


def test_an_xn_domain_written_as_such_is_kept() -> None:
    raw = {**IDN_RAW, "domains": ["xn--bcher-kva.example", "example.net"]}
    assert settings.parse(dev_raw(**raw))[0].domains[0] == "xn--bcher-kva.example"


# --- 2. keys nobody reads -----------------------------------------------------------------


def _stack_file(tmp_path: Path, extra: dict[str, Any], sections: dict[str, Any] | None = None) -> Path:
    doc = yaml.safe_load(DEV_STACK.read_text())
    doc["config"].update(extra)
    doc.update(sections or {})
    path = tmp_path / "Pulumi.hostile.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("key,fix", UNKNOWN_STACK_KEYS)
def test_a_key_nobody_reads_in_the_stack_file_is_named(tmp_path: Path, key: str, fix: str) -> None:
    raw = settings.read_stack_file(_stack_file(tmp_path, {key: "SECRET-VALUE-3f9a"}))
    raw["mailboxPasswords"] = [f"{m}:{p}" for m, p in PASSWORDS.items()]
    with pytest.raises(SettingsError) as info:
        settings.parse(raw)
    problem = next(p for p in info.value.problems if str(p).startswith(key + ":") or p.key == key.split(":")[1])
    assert fix in problem.fix, problem
    assert "SECRET-VALUE-3f9a" not in str(info.value)  # names only: a provider key may hold a credential


def test_an_encrypted_key_nobody_reads_is_named_too(tmp_path: Path) -> None:
    raw = settings.read_stack_file(_stack_file(tmp_path, {"mailserver:mailboxPassword": {"secure": "v1:abc"}}))
    with pytest.raises(SettingsError) as info:
        settings.parse_settings(raw)
    assert "mailboxPassword" in info.value.keys


def test_a_key_without_namespace_is_named(tmp_path: Path) -> None:
    raw = settings.read_stack_file(_stack_file(tmp_path, {"domains": ["example.org"]}))
    with pytest.raises(SettingsError) as info:
        settings.parse_settings(raw)
    assert ":domains" in info.value.keys and "mailserver:domains" in str(info.value)


def test_a_misspelt_section_of_the_stack_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        settings.read_stack_file(_stack_file(tmp_path, {}, {"conifg": {"mailserver:domains": ["example.org"]}}))
    assert "Pulumi.hostile.yaml:conifg: is not a section" in str(info.value) and "did you mean config?" in str(
        info.value)


def test_known_provider_keys_pass(tmp_path: Path) -> None:
    extra = {"aws:profile": "mail", "cloudflare:apiToken": {"secure": "v1:abc"}, "pulumi:tags": {"team": "mail"},
             "aws:defaultTags": {"tags": {"app": "mail"}}}
    raw = settings.read_stack_file(_stack_file(tmp_path, extra))
    settings.parse_settings(raw)


def test_the_provider_key_lists_match_the_installed_sdks() -> None:
    """catalog.PROVIDER_CONFIG_KEYS names what each pinned provider SDK reads from its config
    namespace (its config/vars.py), no more, no less."""
    import importlib.util
    import re

    for package, keys in catalog.PROVIDER_CONFIG_KEYS.items():
        if package == "pulumi":
            continue
        spec = importlib.util.find_spec(f"pulumi_{package}")
        assert spec is not None and spec.origin, package
        vars_py = Path(spec.origin).parent / "config" / "vars.py"
        read = set(re.findall(r"__config__\.get\w*\('([^']+)'\)", vars_py.read_text())) if vars_py.exists() else set()
        assert read == set(keys), f"{package}: {sorted(read ^ set(keys))}"


def test_ssh_from_anywhere_does_not_exempt_the_internet_from_fail2ban() -> None:
    s = dev_settings(adminCidrs=["0.0.0.0/1", "128.0.0.0/1", "::/0"], allowSshFromAnywhere=True)[0]
    assert render.fail2ban_ignoreip(s) == ["127.0.0.1/32", "::1/128"]
    assert render.fail2ban_ignoreip(dev_settings()[0]) == ["127.0.0.1/32", "::1/128", "198.51.100.7/32"]


JUNK: list[Any] = [0, -1, 10**30, True, 1.5, [1], [[]], {"a": 1}, "9" * 5000, "[" * 50_000, "\u202e"]


@pytest.mark.parametrize("key", schema_keys(), ids=lambda k: k.name)
def test_junk_of_any_type_is_a_settings_error_never_a_traceback(key: settings.Key) -> None:
    for junk in JUNK:
        try:
            settings.parse(dev_raw(**{key.name: junk}))
        except SettingsError as e:
            assert e.problems
