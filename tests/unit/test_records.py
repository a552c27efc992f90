"""Deliverability and client-setup record plans, checked by independent libraries: pyspf
evaluates the SPF record against the planned A and MX records, dkimpy's RFC 6376 tag-value
parser reads DMARC and DKIM. A record that disagrees with the server fails here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import spf
from dkim.util import parse_tag_value

from mailserver.core import catalog, records, web
from mailserver.lab.server import generate_rsa_key, public_key_pem
from tests.support import dev_settings

IP = "198.51.100.7"


def zone(settings: Any) -> list[records.Record]:
    return [*records.dns_records(settings, IP), *records.deliverability_records(settings),
            *records.srv_records(settings)]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[tuple[str, str], list[Any]]]:
    """pyspf's resolver, answering from the planned records only."""
    answers: dict[tuple[str, str], list[Any]] = {}

    def lookup(name: str, qtype: str, *args: Any, **kwargs: Any) -> list[Any]:
        return [((name, qtype), v) for v in answers.get((name.rstrip(".").lower(), qtype), [])]

    monkeypatch.setattr(spf, "DNSLookup", lookup)
    yield answers


def load(answers: dict[tuple[str, str], list[Any]], recs: list[records.Record]) -> None:
    for r in recs:
        if r.type == "TXT":
            value: Any = tuple(s.encode() for s in records.untxt_strings(r.content))
        elif r.type == "MX":
            value = (r.priority, r.content)
        else:
            value = r.content
        answers.setdefault((r.fqdn, r.type), []).append(value)


@pytest.mark.parametrize("domain", ["example.com", "example.net"])
def test_spf_passes_the_mail_host_and_fails_everyone_else(fake_dns: dict[tuple[str, str], list[Any]],
                                                          domain: str) -> None:
    settings, _ = dev_settings()
    load(fake_dns, zone(settings))
    result, _ = spf.check2(i=IP, s=f"alice@{domain}", h=settings.hostname)
    assert result == "pass"
    result, _ = spf.check2(i="203.0.113.99", s=f"alice@{domain}", h="attacker.example")
    assert result == "fail"


def test_spf_extra_mechanisms_are_honoured(fake_dns: dict[tuple[str, str], list[Any]]) -> None:
    settings, _ = dev_settings(spfExtra=["ip4:203.0.113.0/24"])
    load(fake_dns, zone(settings))
    assert spf.check2(i="203.0.113.99", s="alice@example.com", h="relay.example")[0] == "pass"
    assert spf.check2(i="192.0.2.1", s="alice@example.com", h="relay.example")[0] == "fail"


def test_dmarc_policy_parses_and_reports_reach_an_existing_address() -> None:
    settings, _ = dev_settings(dmarcPolicy="reject", dmarcPct=50)
    dmarcs = [r for r in records.deliverability_records(settings) if r.fqdn.startswith("_dmarc.")]
    assert {r.fqdn for r in dmarcs} == {f"_dmarc.{d}" for d in settings.domains}
    for r in dmarcs:
        tags = parse_tag_value(records.untxt(r.content).encode())
        assert tags[b"v"] == b"DMARC1"
        assert tags[b"p"] == b"reject" and tags[b"pct"] == b"50"
        rua = tags[b"rua"].decode()
        assert rua.startswith("mailto:")
        address = rua.removeprefix("mailto:")
        assert address in settings.mailboxes or address in {a.source for a in settings.aliases}


def test_cross_domain_dmarc_reports_are_authorised() -> None:
    settings, _ = dev_settings()
    names = {r.fqdn for r in records.deliverability_records(settings)}
    report_domain = settings.dmarc_report_address.split("@")[1]
    for d in settings.domains:
        if d != report_domain:
            assert f"{d}._report._dmarc.{report_domain}" in names


def test_dkim_record_carries_the_public_key_split_for_cloudflare() -> None:
    pub = public_key_pem(generate_rsa_key())
    content = records.txt(records.dkim(pub))
    chunks = records.untxt_strings(content)
    assert len(chunks) > 1 and all(len(c) <= 255 for c in chunks)
    tags = parse_tag_value(records.untxt(content).encode())
    assert tags[b"v"] == b"DKIM1" and tags[b"k"] == b"rsa"
    assert tags[b"p"].decode() == records.dkim_public_key_b64(pub)


def test_caa_allows_only_lets_encrypt_on_the_mail_host() -> None:
    settings, _ = dev_settings()
    caa = [r for r in records.deliverability_records(settings) if r.type == "CAA"]
    assert {r.fqdn for r in caa} == {settings.hostname}
    assert {dict(r.data)["tag"]: dict(r.data)["value"] for r in caa} == {"issue": "letsencrypt.org", "issuewild": ";"}


def test_srv_records_follow_the_port_table() -> None:
    settings, _ = dev_settings(submission=False)
    srv = {r.fqdn: dict(r.data) for r in records.srv_records(settings)}
    for d in settings.domains:
        for svc in catalog.SERVICES:
            if svc.protocol in ("imap", "pop3", "sieve") or svc.name in ("submission", "submissions"):
                data = srv[f"_{svc.name}._tcp.{d}"]
                if svc in settings.services:
                    assert (data["port"], data["target"]) == (svc.port, settings.hostname)
                    assert data["priority"] == (0 if svc.tls == "implicit" else 10)
                else:  # 587 switched off: "not offered" (RFC 6186 target ".")
                    assert (data["port"], data["target"]) == (0, ".")
    assert not any("_smtp._tcp" in name for name in srv)


def test_managesieve_srv_record_per_domain() -> None:
    """RFC 5804 1.8: sieve clients look up _sieve._tcp.<domain> for host and port."""
    settings, _ = dev_settings()
    sieve = {r.fqdn: r for r in records.srv_records(settings) if r.fqdn.startswith("_sieve._tcp.")}
    assert set(sieve) == {f"_sieve._tcp.{d}" for d in settings.domains}
    for d in settings.domains:
        r = sieve[f"_sieve._tcp.{d}"]
        assert r.zone_id == settings.zone_id(d)
        assert r.content == f"10 1 4190 {settings.hostname}"
        assert dict(r.data) == {"priority": 10, "weight": 1, "port": 4190, "target": settings.hostname}


def test_autoconfig_offers_no_managesieve() -> None:
    """Thunderbird's format has no ManageSieve server: 4190 as an incoming server would be
    taken for a mailbox to read."""
    settings, _ = dev_settings()
    xml = web.autoconfig_xml(settings)
    assert "4190" not in xml and "sieve" not in xml.lower()
    assert "<port>993</port>" in xml  # the document itself is rendered


def test_records_are_full_names_dns_only_with_short_ttl() -> None:
    settings, _ = dev_settings()
    for r in zone(settings):
        assert r.fqdn != "@" and "." in r.fqdn and not r.fqdn.endswith(".")
        assert r.proxied is False
        assert r.ttl == records.DNS_TTL
        assert r.zone_id in dict(settings.zone_ids).values()


def test_txt_refuses_quotes() -> None:
    with pytest.raises(ValueError):
        records.txt('v=spf1 "oops"')


# --- MTA-STS and TLS-RPT (the Worker that serves the policy: tests/tools/test_web_worker.py) -


def test_policy_id_changes_when_the_policy_changes() -> None:
    def sts_id(mode: str) -> bytes:
        s, _ = dev_settings(mtaStsMode=mode)
        [rec] = [r for r in records.deliverability_records(s) if r.fqdn == "_mta-sts.example.com"]
        tags = parse_tag_value(records.untxt(rec.content).encode())
        assert tags[b"v"] == b"STSv1"
        return bytes(tags[b"id"])

    assert sts_id("testing") != sts_id("enforce")
    assert sts_id("testing") == sts_id("testing")


def test_tls_rpt_reports_reach_an_existing_address() -> None:
    settings, _ = dev_settings()
    for rec in records.deliverability_records(settings):
        if rec.fqdn.startswith("_smtp._tls."):
            tags = parse_tag_value(records.untxt(rec.content).encode())
            assert tags[b"v"] == b"TLSRPTv1"
            address = tags[b"rua"].decode().removeprefix("mailto:")
            assert address in {a.source for a in settings.aliases} | set(settings.mailboxes)
