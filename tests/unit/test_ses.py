"""relay: ses, without AWS: the settings and the pure plan (the SMTP password, the SES
records, the relayhost in main.cf). The resource graph is in tests/program/test_ses.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mailserver.core import catalog, relay, render
from mailserver.core.settings import SettingsError
from tests.cloud_facts import easy_dkim_tokens
from tests.support import dev_settings, main_cf_value

# --- settings -----------------------------------------------------------------------------


def test_relay_defaults_to_none_and_sesregion_to_the_stacks_region() -> None:
    s, _ = dev_settings(relay="none")
    assert (s.relay, s.ses_region) == ("none", "")
    s, _ = dev_settings(relay="ses")
    assert (s.relay, s.ses_region) == ("ses", "eu-central-1")  # aws:region of Pulumi.dev.yaml
    s, _ = dev_settings(relay="ses", sesRegion="us-west-2")
    assert s.ses_region == "us-west-2"


@pytest.mark.parametrize(("overrides", "key", "fix"), [
    ({"relay": "sendgrid"}, "relay", "ses"),
    ({"relay": "ses", "sesRegion": "Frankfurt"}, "sesRegion", "eu-central-1"),
    ({"relay": "ses", "aws:region": None}, "sesRegion", "aws:region"),
    ({"relay": "ses", "aws:region": "mars-1"}, "sesRegion", "aws:region"),
])
def test_bad_relay_settings_name_the_key_and_the_fix(overrides: dict[str, Any], key: str, fix: str) -> None:
    with pytest.raises(SettingsError) as err:
        dev_settings(**overrides)
    problems = [p for p in err.value.problems if p.key == key]
    assert problems and any(fix in p.fix for p in problems), str(err.value)
    assert f"mailserver:{key}:" in str(err.value)


# --- pure plan ----------------------------------------------------------------------------


@pytest.mark.parametrize(("region", "secret", "password"), [
    # terraform-provider-aws's TestSESSMTPPasswordFromSecretKeySigV4 (internal/service/iam):
    # the conversion behind the provider's ses_smtp_password_v4, known to work against SES.
    ("eu-central-1", "some+secret+key", "BMXhUYlu5Z3gSXVQORxlVa7XPaz91aGWdfHxvkOZdWZ2"),
    ("eu-central-1", "another+secret+key", "BBbphbrQmrKMx42d1N6+C7VINYEBGI5v9VsZeTxwskfh"),
    ("us-west-1", "some+secret+key", "BH+jbMzper5WwlwUar9E1ySBqHa9whi0GPo+sJ0mVYJj"),
    ("us-west-1", "another+secret+key", "BKVmjjMDFk/qqw8EROW99bjCS65PF8WKvK5bSr4Y6EqF"),
])
def test_smtp_password_matches_the_providers_conversion(region: str, secret: str, password: str) -> None:
    assert relay.ses_smtp_password(secret, region) == password


def test_ses_records_with_real_tokens() -> None:
    s, _ = dev_settings(relay="ses")
    tokens = {d: easy_dkim_tokens(d) for d in s.domains}
    recs = {(r.fqdn, r.type): r for r in relay.ses_records(s, tokens)}
    assert len(recs) == len(s.domains) * (catalog.SES_DKIM_TOKENS + 2)
    for d in s.domains:
        for t in tokens[d]:
            assert recs[(f"{t}._domainkey.{d}", "CNAME")].content == f"{t}.dkim.amazonses.com"
        assert recs[(f"bounce.{d}", "MX")].content == "feedback-smtp.eu-central-1.amazonses.com"
        assert recs[(f"bounce.{d}", "TXT")].content == '"v=spf1 include:amazonses.com -all"'
    assert "{" not in json.dumps([r.fqdn + r.content for r in recs.values()])  # no placeholder left


def test_relayhost_is_rendered_once_for_main_cf_and_the_credentials_key() -> None:
    s, _ = dev_settings(relay="ses", sesRegion="ap-southeast-2")
    b = render.render(s)
    main_cf = b.file(f"{catalog.VM_LAYOUT.postfix_dir}/main.cf").content
    relayhost = "[email-smtp.ap-southeast-2.amazonaws.com]:587"
    assert main_cf_value(main_cf, "relayhost") == relayhost
    assert f"relayhost='{relayhost}'" in b.scripts["set-relay-credentials.sh"]
    assert f"key='{relayhost}'" in b.scripts["apply.sh"]
