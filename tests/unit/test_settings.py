"""Stack settings: every invalid input is refused with its key and a way to fix it."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from typing import Any

import pytest

from mailserver.core import catalog, settings, settings_rules
from mailserver.core.settings import ROOT, Settings, SettingsError

ALICE_PW = "alice-Secr3t-Pa55-d0e1f2"
BOB_PW = "bob-Secr3t-Pa55-a9b8c7"


def base(**overrides: Any) -> dict[str, Any]:
    raw = settings.read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["mailboxPasswords"] = [f"alice@example.com:{ALICE_PW}", f"bob@example.net:{BOB_PW}"]
    raw.update(overrides)
    return raw


def parse(**overrides: Any) -> Settings:
    return settings.parse(base(**overrides))[0]


def refused(key: str, fix: str, **overrides: Any) -> SettingsError:
    """Parse, expect a problem under `key` whose fix mentions `fix`; return the error."""
    with pytest.raises(SettingsError) as info:
        settings.parse(base(**overrides))
    err = info.value
    assert key in err.keys, f"expected a problem with {key}, got {err}"
    fixes = [p.fix for p in err.problems if p.key == key]
    assert any(fix in f for f in fixes), f"no fix for {key} mentions {fix!r}: {fixes}"
    assert f"mailserver:{key}:" in str(err) and "Fix:" in str(err)
    return err


# --- the valid base ---------------------------------------------------------------------


def test_dev_stack_parses() -> None:
    s = parse()
    assert s.domains == ("example.com", "example.net")
    assert s.zone_id("example.net") == "5b7d3f0c1e2a4b6c8d9e0f1a2b3c4d5e"
    assert s.instance_type == "t4g.micro" and s.architecture == "arm64"
    assert s.acme_server == "letsencrypt_test"
    assert s.admin_cidrs == ("198.51.100.7/32",)


def test_hostname_defaults_to_mail_dot_primary() -> None:
    s = parse()
    assert s.hostname == "mail.example.com"
    assert s.hostname_zone == "example.com"


def test_role_aliases_default_to_the_first_mailbox() -> None:
    aliases = {a.source: a.targets for a in parse().aliases}
    for domain in ("example.com", "example.net"):
        assert aliases[f"postmaster@{domain}"] == ("alice@example.com",)
        assert aliases[f"abuse@{domain}"] == ("alice@example.com",)


def test_explicit_role_alias_is_kept() -> None:
    s = parse(aliases=["postmaster@example.net=bob@example.net"])
    assert {a.source: a.targets for a in s.aliases}["postmaster@example.net"] == ("bob@example.net",)


# --- one test per invalid input ---------------------------------------------------------


def test_invalid_dns_domain() -> None:
    refused("domains", "example.com", domains=["example..com", "example.net"])


def test_hostname_outside_the_domains() -> None:
    refused("hostname", "mail.example.com", hostname="mail.example.org")


def test_mailbox_in_unconfigured_domain() -> None:
    refused("mailboxes", "add the domain", mailboxes=["alice@example.com", "bob@example.net", "carol@example.org"],
            mailboxPasswords=[f"alice@example.com:{ALICE_PW}", f"bob@example.net:{BOB_PW}",
                              "carol@example.org:carol-l0ng-passw0rd"])


def test_alias_in_unconfigured_domain() -> None:
    refused("aliases", "add the domain", aliases=["sales@example.org=alice@example.com"])


def test_duplicate_mailboxes() -> None:
    err = refused("mailboxes", "once", mailboxes=["alice@example.com", "bob@example.net", "Alice@example.com"])
    assert any("listed twice" in p.message for p in err.problems)


def test_missing_password() -> None:
    err = refused("mailboxPasswords", "pulumi config set --secret", mailboxPasswords=[f"alice@example.com:{ALICE_PW}"])
    assert any("bob@example.net" in p.message for p in err.problems)


def test_too_short_password() -> None:
    refused("mailboxPasswords", "passwordMinLength",
            mailboxPasswords=["alice@example.com:short-pw", f"bob@example.net:{BOB_PW}"])


def test_password_min_length_is_a_setting() -> None:
    fourteen = [f"alice@example.com:{'x' * 14}", f"bob@example.net:{BOB_PW}"]
    parse(mailboxPasswords=fourteen)  # the default minimum (12) accepts it
    refused("mailboxPasswords", "passwordMinLength", mailboxPasswords=fourteen, passwordMinLength=20)


def test_invalid_admin_cidr() -> None:
    err = refused("adminCidrs", "198.51.100.0/24", adminCidrs=["198.51.100.7/24"])
    assert any("did you mean 198.51.100.0/24" in p.fix for p in err.problems)


def test_invalid_mynetworks_cidr() -> None:
    refused("mynetworks", "198.51.100.0/24", mynetworks=["127.0.0.1/32", "localhost"])


def test_ssh_from_anywhere_needs_explicit_opt_in() -> None:
    refused("adminCidrs", "allowSshFromAnywhere", adminCidrs=["0.0.0.0/0"])
    refused("adminCidrs", "allowSshFromAnywhere", adminCidrs=["::/0"])
    assert parse(adminCidrs=["0.0.0.0/0"], allowSshFromAnywhere=True).admin_cidrs == ("0.0.0.0/0",)
    assert parse(adminCidrs=["0.0.0.0/0"], allowSshFromAnywhere="true").admin_cidrs == ("0.0.0.0/0",)


def test_unknown_os() -> None:
    refused("os", "centos-stream-9", os="ubuntu-24.04")


def test_unknown_acme_server() -> None:
    refused("acmeServer", "letsencrypt_test", acmeServer="zerossl")


@pytest.mark.parametrize("key", ["messageSizeLimit", "mailboxSizeLimit"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_size_limits(key: str, value: int) -> None:
    refused(key, "10485760", **{key: value})


def test_missing_cloudflare_zone_id() -> None:
    err = refused("cloudflareZoneIds", "example.net=",
                  cloudflareZoneIds=["example.com=023e105f4ecef8ad9ca31a8372d0c353"])
    assert any("no Cloudflare zone id for example.net" in p.message for p in err.problems)


def test_relay_restrictions_must_refuse_unauthorised_relaying() -> None:
    refused("relayRestrictions", "reject_unauth_destination",
            relayRestrictions=["permit_mynetworks", "permit_sasl_authenticated"])


def test_mynetworks_whole_internet_is_an_open_relay() -> None:
    refused("mynetworks", "127.0.0.1/32", mynetworks=["127.0.0.1/32", "0.0.0.0/0"])


def test_mail_domain_in_mydestination() -> None:
    refused("mydestination", "remove it", mydestination="$myhostname, localhost, example.net")


def test_unknown_config_key() -> None:
    err = refused("mailboxSize", "check the spelling", mailboxSize=5)
    assert any("mailboxSizeLimit" in p.fix for p in err.problems if p.key == "mailboxSize")


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        settings.parse(base(os="bsd", acmeServer="zerossl", messageSizeLimit=0))
    assert {"os", "acmeServer", "messageSizeLimit"} <= info.value.keys


# --- secrecy ----------------------------------------------------------------------------


def test_passwords_never_printed() -> None:
    s, secrets = settings.parse(base())
    assert secrets.passwords == {"alice@example.com": ALICE_PW, "bob@example.net": BOB_PW}
    for text in (str(secrets), repr(secrets), repr(s)):
        assert ALICE_PW not in text and BOB_PW not in text

    # Every way a password entry can be wrong; none may echo the password.
    bad_entries = {
        "too short": "alice@example.com:Sh0rt-Pw!",
        "control char": "alice@example.com:Secret-With\x07Bell-99",
        "unknown mailbox": "carol@example.com:Carol-Secret-77aa",
        "swapped order": "Swapped-Secret-42zz:alice@example.com",
        "no separator": "NoSeparatorSecret-13qq",
    }
    for label, entry in bad_entries.items():
        password = entry.split(":", 1)[1] if label not in ("swapped order", "no separator") else entry.split(":")[0]
        with pytest.raises(SettingsError) as info:
            settings.parse(base(mailboxPasswords=[entry, f"bob@example.net:{BOB_PW}"]))
        err = info.value
        for text in (str(err), repr(err), *(str(p) for p in err.problems)):
            assert password not in text and password.lower() not in text, f"{label}: password printed"
            assert BOB_PW not in text


# --- brute force, inbound abuse, hardening ----------------------------------------------


def test_abuse_defaults() -> None:
    s = parse()
    assert (s.fail2ban_max_retry, s.fail2ban_find_time, s.fail2ban_ban_time) == (5, 600, 3600)
    assert s.postscreen_dnsbl_sites == ("zen.spamhaus.org=127.0.0.[2..11]*3",)
    assert s.smtpd_forbid_bare_newline == "normalize"
    assert (s.smtp_tls_security_level, s.auto_updates) == ("dane", "all")


@pytest.mark.parametrize("key,value,fix", [
    ("fail2banMaxRetry", 0, "use 5"),
    ("fail2banMaxRetry", 1000, "at most 100"),
    ("fail2banFindTime", 5, "at least 60"),
    ("fail2banBanTime", 0, "at least 60"),
    ("smtpdAuthRateLimit", -1, "0 for no limit"),
    ("postscreenDnsblThreshold", 0, "at least 1"),
    ("smtpdForbidBareNewline", "yes", "normalize"),
    ("smtpTlsSecurityLevel", "encrypt", "may, dane"),
    ("autoUpdates", "sometimes", "all, security, off"),
])
def test_abuse_settings_are_checked(key: str, value: Any, fix: str) -> None:
    refused(key, fix, **{key: value})


@pytest.mark.parametrize("site", ["zen.spamhaus.org=127.0.0*3", "not a domain", "bl.example=127.0.0.[2..11",
                                  "bl.example=127.0.0.2*x"])
def test_malformed_dnsbl_entries_are_refused(site: str) -> None:
    refused("postscreenDnsblSites", "name[=reply filter][*weight]", postscreenDnsblSites=[site])


def test_spamhaus_without_a_reply_filter_is_refused() -> None:
    # Unfiltered, Spamhaus' "refused" answer (127.255.255.254) would count as a listing.
    refused("postscreenDnsblSites", "=127.0.0.[2..11]", postscreenDnsblSites=["zen.spamhaus.org*3"])


def test_a_threshold_no_list_can_reach_is_refused() -> None:
    refused("postscreenDnsblThreshold", "lower the threshold",
            postscreenDnsblSites=["bl.spamcop.net=127.0.0.2*1"], postscreenDnsblThreshold=2)


def test_dnsbl_lists_and_their_scores_are_accepted() -> None:
    s = parse(postscreenDnsblSites=["zen.spamhaus.org=127.0.0.[2..11]*3", "bl.spamcop.net=127.0.0.2*2",
                                    "list.dnswl.org=127.0.[0..255].[1;2;3]*-2"], postscreenDnsblThreshold=3)
    assert len(s.postscreen_dnsbl_sites) == 3
    assert parse(postscreenDnsblSites=[]).postscreen_dnsbl_sites == ()


# --- settings without secrets, secrets against settings ---------------------------------


def test_settings_parse_without_any_secret() -> None:
    raw = base()
    del raw["mailboxPasswords"]
    s = settings.parse_settings(raw)
    assert s == parse()


def test_secrets_are_checked_against_the_settings() -> None:
    s = parse()
    assert settings.parse_secrets(base(), s).passwords["bob@example.net"] == BOB_PW
    with pytest.raises(SettingsError) as info:
        settings.parse_secrets(base(mailboxPasswords=[f"alice@example.com:{ALICE_PW}"]), s)
    assert info.value.keys == {"mailboxPasswords"}
    assert ALICE_PW not in str(info.value)


def test_parse_lists_the_problems_of_settings_and_secrets_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        settings.parse(base(os="bsd", mailboxPasswords=[f"alice@example.com:{ALICE_PW}"]))
    assert info.value.keys == {"os", "mailboxPasswords"}


def test_the_core_never_imports_pulumi() -> None:
    """Reading settings is pure: Pulumi's config reaches it through components/config.py."""
    modules = sorted(f"mailserver.core.{p.stem}" for p in (ROOT / "mailserver" / "core").glob("*.py"))
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in sys.modules if 'pulumi' in m))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the schema, the rules and the types agree ------------------------------------------


def test_every_rule_is_for_a_key_of_the_schema() -> None:
    keys = settings.schema()
    for table in (settings_rules.RULES, settings_rules.NORMALIZE, settings_rules.DERIVED_DEFAULTS):
        assert set(table) <= set(keys)


def test_pulumi_yaml_names_exactly_the_allowed_values_of_each_enumerated_key() -> None:
    """Backticks in a key's description mark the values it accepts, and mark nothing else, so
    the README's config table (generated from the descriptions) says what the rules accept."""
    enumerated = settings_rules.enumerated()
    assert {"os", "relay", "acmeServer", "mtaStsMode", "dmarcPolicy", "autoUpdates"} <= set(enumerated)
    for name, key in settings.schema().items():
        named = set(re.findall(r"`([^`]+)`", key.description))
        assert named == set(enumerated.get(name, ())), f"{name}: Pulumi.yaml names {sorted(named)}"
        if name in enumerated:
            assert key.default in enumerated[name], name


def test_settings_types_each_enumerated_key_as_the_literal_of_its_allowed_values() -> None:
    hints = typing.get_type_hints(Settings)
    literal_fields = {f for f, hint in hints.items() if typing.get_origin(hint) is typing.Literal}
    enumerated = {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(): values
                  for name, values in settings_rules.enumerated().items()}
    assert literal_fields == set(enumerated)
    for field, values in enumerated.items():
        assert typing.get_args(hints[field]) == values, field


def test_every_os_has_an_image_epel_and_an_update_tool() -> None:
    for table in (catalog.OS_IMAGES, catalog.EPEL_RELEASE, catalog.AUTO_UPDATES):
        assert tuple(table) == catalog.OS_NAMES
