"""Deliverability settings: each invalid value is refused with its key and a fix."""

from __future__ import annotations

from typing import Any

import pytest

from mailserver.core.settings import SettingsError
from tests.support import dev_settings


@pytest.mark.parametrize("overrides,key", [
    ({"dmarcPolicy": "block"}, "dmarcPolicy"),
    ({"dmarcPct": 0}, "dmarcPct"),
    ({"dmarcPct": 101}, "dmarcPct"),
    ({"dmarcReportAddress": "not-an-address"}, "dmarcReportAddress"),
    ({"dmarcReportAddress": "nobody@example.com"}, "dmarcReportAddress"),
    ({"tlsRptAddress": "nobody@example.net"}, "tlsRptAddress"),
    ({"mtaStsMode": "strict"}, "mtaStsMode"),
    ({"cloudflareAccountId": "my-account"}, "cloudflareAccountId"),
    ({"dkimSelector": "Mail_2027"}, "dkimSelector"),
    ({"dkimRetiredSelectors": ["mail"]}, "dkimRetiredSelectors"),
    ({"spfExtra": ["+all"]}, "spfExtra"),
    ({"spfExtra": ["include"]}, "spfExtra"),
    ({"blocklists": ["zen.spamhaus.org", "not a zone"]}, "blocklists"),
    ({"blocklists": ["zen.spamhaus.org", "ZEN.spamhaus.org."]}, "blocklists"),
])
def test_invalid_deliverability_settings_name_the_key(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingsError) as err:
        dev_settings(**overrides)
    assert key in err.value.keys
    problem = next(p for p in err.value.problems if p.key == key)
    assert problem.fix


def test_report_addresses_default_to_aliases_that_exist() -> None:
    settings, _ = dev_settings()
    sources = {a.source: a.targets for a in settings.aliases}
    assert sources["dmarc-reports@example.com"] == (settings.mailboxes[0],)
    assert sources["tls-reports@example.com"] == (settings.mailboxes[0],)


def test_report_address_may_be_outside_our_domains() -> None:
    settings, _ = dev_settings(dmarcReportAddress="reports@dmarc-service.example")
    assert settings.dmarc_report_address == "reports@dmarc-service.example"
    assert "dmarc-reports@example.com" not in {a.source for a in settings.aliases}
