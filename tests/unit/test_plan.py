"""Pure plans: firewall rules, DNS records, client settings. No Pulumi."""

from __future__ import annotations

from typing import Any

import pytest

from mailserver.core import catalog, certificates, firewall, outputs, records, settings
from mailserver.core.settings import ROOT, Settings

IP = "203.0.113.9"


def load(**overrides: Any) -> Settings:
    raw = settings.read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["mailboxPasswords"] = ["alice@example.com:alice-l0ng-passw0rd", "bob@example.net:bob-l0ng-passw0rd"]
    raw.update(overrides)
    return settings.parse(raw)[0]


def ingress(s: Settings) -> set[tuple[int, str]]:
    return {(r.from_port, r.cidr) for r in firewall.firewall_rules(s) if r.direction == "ingress"}


# --- firewall ---------------------------------------------------------------------------


def test_ingress_is_mail_ports_from_anywhere_and_ssh_from_admins() -> None:
    public = {25, 587, 465, 110, 143, 993, 995, 4190}
    assert ingress(load()) == {(p, c) for p in public for c in ("0.0.0.0/0", "::/0")} | {(22, "198.51.100.7/32")}


def test_managesieve_is_open_on_the_primary_and_closed_on_the_secondary() -> None:
    """The backup MX has no mailboxes: a ManageSieve port there would be one more place to
    guess passwords at."""
    s = load(secondaryMx=True, acmeServer="letsencrypt")
    sieve = {(4190, "0.0.0.0/0"), (4190, "::/0")}
    assert sieve <= ingress(s)
    secondary = {(r.from_port, r.cidr) for r in firewall.firewall_rules(s, "secondary") if r.direction == "ingress"}
    assert (25, "0.0.0.0/0") in secondary and not any(port == 4190 for port, _ in secondary)


def test_submission_off_removes_587_only() -> None:
    with_587 = ingress(load())
    without = ingress(load(submission=False))
    assert with_587 - without == {(587, "0.0.0.0/0"), (587, "::/0")}
    assert without < with_587


def test_ssh_rule_per_admin_cidr_with_the_right_family() -> None:
    admins = load(adminCidrs=["203.0.113.0/29", "2001:db8::/48"])
    rules = [r for r in firewall.firewall_rules(admins) if r.from_port == 22]
    assert {(r.cidr, r.is_ipv6) for r in rules} == {("203.0.113.0/29", False), ("2001:db8::/48", True)}
    assert all(r.direction == "ingress" and r.protocol == "tcp" for r in rules)


def test_rules_are_single_port_single_cidr_with_unique_names() -> None:
    rules = firewall.firewall_rules(load(adminCidrs=["203.0.113.0/29", "198.51.100.7/32"]))
    assert len({r.name for r in rules}) == len(rules)
    for r in rules:
        assert r.from_port == r.to_port
        assert r.is_ipv6 == (":" in r.cidr)


def test_egress_covers_what_the_host_needs() -> None:
    egress = {(r.protocol, r.from_port, r.cidr) for r in firewall.firewall_rules(load()) if r.direction == "egress"}
    for proto, port, _ in catalog.EGRESS:
        assert {(proto, port, "0.0.0.0/0"), (proto, port, "::/0")} <= egress
    assert not any(r.protocol not in ("tcp", "udp") for r in firewall.firewall_rules(load()))


# --- DNS --------------------------------------------------------------------------------


def test_dns_a_record_and_one_mx_per_domain() -> None:
    planned = records.dns_records(load(), IP)
    by_type: dict[str, list[records.Record]] = {}
    for r in planned:
        by_type.setdefault(r.type, []).append(r)
    (a,) = by_type["A"]
    assert (a.fqdn, a.content, a.zone_id) == ("mail.example.com", IP, "023e105f4ecef8ad9ca31a8372d0c353")
    mx = {r.fqdn: r for r in by_type["MX"]}
    assert set(mx) == {"example.com", "example.net"}
    assert mx["example.net"].zone_id == "5b7d3f0c1e2a4b6c8d9e0f1a2b3c4d5e"
    assert all(r.content == "mail.example.com" and r.priority == 10 for r in mx.values())
    assert set(by_type) == {"A", "MX"}


def test_dns_records_are_fqdn_dns_only_with_unique_names() -> None:
    planned = records.dns_records(load(), IP)
    assert len({r.name for r in planned}) == len(planned)
    for r in planned:
        assert r.fqdn != "@" and not r.fqdn.endswith(".")
        assert r.proxied is False
        assert 60 <= r.ttl <= 86400


def test_a_record_lives_in_the_zone_of_the_hostname() -> None:
    s = load(hostname="mx1.example.net")
    (a,) = [r for r in records.dns_records(s, IP) if r.type == "A"]
    assert a.zone_id == "5b7d3f0c1e2a4b6c8d9e0f1a2b3c4d5e"
    assert all(r.content == "mx1.example.net" for r in records.dns_records(s, IP) if r.type == "MX")


# --- client settings --------------------------------------------------------------------


def test_client_settings_list_login_ports_only() -> None:
    cs = outputs.client_settings(load())
    assert {name: (v["port"], v["security"]) for name, v in cs.items()} == {
        "submission": (587, "STARTTLS"),
        "submissions": (465, "SSL/TLS"),
        "pop3": (110, "STARTTLS"),
        "imap": (143, "STARTTLS"),
        "imaps": (993, "SSL/TLS"),
        "pop3s": (995, "SSL/TLS"),
        "sieve": (4190, "STARTTLS"),
    }
    assert all(v["host"] == "mail.example.com" for v in cs.values())


def test_client_settings_follow_submission() -> None:
    assert "submission" not in outputs.client_settings(load(submission=False))


def test_ssh_command() -> None:
    assert outputs.ssh_command(load(), IP) == f"ssh ec2-user@{IP}"


# --- certificate renewal schedule -------------------------------------------------------------


def test_renewal_days_suit_lets_encrypts_lifetimes() -> None:
    """acme.sh gets --days 28: it renews 27 days after issue, and its first two daily tries
    come while a third of a 90-, 64- or 45-day certificate is left."""
    assert certificates.acme_renewal_days() == 28
    for lifetime in catalog.CERT_LIFETIMES_DAYS:
        for attempt in range(1, catalog.ACME_RENEWAL_ATTEMPTS + 1):
            assert certificates.renewal_days_left(lifetime, 28, attempt) >= lifetime * catalog.CERT_RENEW_KEEP


@pytest.mark.parametrize("lifetime,days_left", [
    (90, (61, 60)),  # hours are dropped: each try leaves 23 h more than this
    (64, (35, 34)),
    (45, (16, 15)),  # a third of 45 is 15: the second try is the last one in time
])
def test_renewal_tries_leave_these_days(lifetime: int, days_left: tuple[int, int]) -> None:
    tries = [certificates.renewal_days_left(lifetime, certificates.acme_renewal_days(), k) for k in (1, 2)]
    assert [int(d) for d in tries] == list(days_left)


def test_renewal_days_are_the_latest_that_work() -> None:
    """One day more and the second try on a 45-day certificate can come too late. acme.sh 3.1.3's
    default (30 days, no --days) can miss a third already at the first try, by an hour."""
    days = certificates.acme_renewal_days()
    assert certificates.renewal_days_left(45, days + 1, 2) < 15 <= certificates.renewal_days_left(45, days + 1, 1)
    assert 15 - certificates.renewal_days_left(45, 30, 1) == certificates.CERT_BACKDATE_DAYS


def test_renewal_days_follow_the_shortest_lifetime_and_refuse_impossible_ones() -> None:
    assert certificates.acme_renewal_days((90,)) == 58
    assert certificates.acme_renewal_days((90, 6)) == 2  # a short-lived certificate: tries on days 1 and 2
    with pytest.raises(ValueError, match="3-day certificate"):
        certificates.acme_renewal_days((3,))
