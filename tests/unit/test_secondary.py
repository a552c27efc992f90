"""The backup MX's pure parts (secondaryMx): its settings, its zone, its records and policy, the
doctor's judgement of its queue. The bundle is read by postconf in tests/tools, the hosts under
mocks in tests/program, the outage on real postfix in tests/lab."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pytest

from mailserver.core import catalog, preflight, records, render, web
from mailserver.core.settings import SettingsError
from mailserver.doctor import Target
from mailserver.doctor.secondary import check_secondary, oldest_hours
from mailserver.doctor.verdicts import secondary_queue_status
from tests.support import dev_raw, dev_settings, settings_problems

ON = {"secondaryMx": True, "acmeServer": "letsencrypt"}


def test_off_by_default_with_a_derived_name() -> None:
    s, _ = dev_settings()
    assert not s.secondary_mx and s.mx_hosts == (s.hostname,)
    assert dev_settings(**ON)[0].secondary_hostname == "mx2.example.com"


@pytest.mark.parametrize(("name", "why"), [
    ("mail.example.com", "is the primary's hostname"),
    ("example.net", "is itself a mail domain"),
    ("mx2.example.org", "is outside the mail domains"),
    ("mx2..example.com", "not a valid DNS name"),
])
def test_a_bad_secondary_name_is_refused_with_its_key(name: str, why: str) -> None:
    problems = settings_problems(**ON, secondaryHostname=name)
    assert why in problems["secondaryHostname"]


def test_the_name_is_not_checked_while_the_setting_is_off() -> None:
    s, _ = dev_settings(secondaryHostname="mail.example.com")
    assert not s.secondary_mx


def test_staging_certificates_are_refused_for_the_secondary() -> None:
    problems = settings_problems(secondaryMx=True)  # the dev stack uses letsencrypt_test
    assert "letsencrypt_test" in problems["secondaryMx"] and "acmeServer letsencrypt" in problems["secondaryMx"]


def _facts(offered: tuple[str, ...]) -> preflight.AwsFacts:
    return preflight.AwsFacts(region="eu-central-1", image_ids=("ami-0123456789abcdef0",), pinned_image=None,
                              offered_zones=offered, standard_zones=("eu-central-1a", "eu-central-1b", "eu-central-1c"),
                              default_vpc="vpc-1")


def test_the_secondary_goes_to_the_next_zone_offering_the_type() -> None:
    s, _ = dev_settings(**ON)
    placement = preflight.resolve(s, _facts(("eu-central-1c", "eu-central-1b", "eu-central-1a")))
    assert (placement.availability_zone, placement.secondary_zone) == ("eu-central-1a", "eu-central-1b")
    off = preflight.resolve(dev_settings()[0], _facts(("eu-central-1a",)))
    assert off.secondary_zone == ""  # off: one zone is enough


def test_a_region_with_one_zone_for_the_type_is_refused() -> None:
    s, _ = dev_settings(**ON)
    with pytest.raises(SettingsError) as e:
        preflight.resolve(s, _facts(("eu-central-1a",)))
    (problem,) = e.value.problems
    assert problem.key == "secondaryMx" and "eu-central-1a" in problem.message


def test_records_policy_and_preferences() -> None:
    s, _ = dev_settings(**ON)
    planned = records.planned_records(s, "192.0.2.1", "192.0.2.2")
    mx = {(r.fqdn, r.content, r.priority) for r in planned if r.type == "MX"}
    assert mx == {(d, h, p) for d in s.domains for h, p in (("mail.example.com", catalog.MX_PREFERENCE),
                                                             ("mx2.example.com", catalog.SECONDARY_MX_PREFERENCE))}
    assert catalog.SECONDARY_MX_PREFERENCE > catalog.MX_PREFERENCE  # tried after the primary
    assert {(r.fqdn, r.content) for r in planned if r.type == "A"} == {("mail.example.com", "192.0.2.1"),
                                                                       ("mx2.example.com", "192.0.2.2")}
    policy = web.mta_sts_policy(s)
    assert "mx: mail.example.com\r\n" in policy and "mx: mx2.example.com\r\n" in policy
    # The policy changed, so its id did: senders fetch the new one.
    assert records.policy_id(policy) != records.policy_id(web.mta_sts_policy(dev_settings()[0]))


def test_oldest_message_age_from_postqueue_json() -> None:
    now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
    lines = "\n".join(json.dumps({"queue_name": "deferred", "arrival_time": int(now.timestamp()) - age})
                      for age in (60, 7200, 30))
    assert oldest_hours(lines, now) == (3, 2.0)
    assert oldest_hours("", now) == (0, None)


@pytest.mark.parametrize(("hours", "status"), [(None, "ok"), (0.5, "ok"), (1, "warning"), (95.9, "warning"),
                                               (96, "error")])
def test_queue_age_thresholds(hours: float | None, status: str) -> None:
    assert secondary_queue_status(hours) == status


def test_secondary_checks_are_skipped_while_it_is_off() -> None:
    s, _ = dev_settings()
    results = check_secondary(Target(settings=s, ip="192.0.2.1", dkim={}))
    assert {(r.check, r.status) for r in results} == {("secondary-smtp", "skipped"), ("secondary-queue", "skipped")}


def test_turning_it_on_changes_only_the_primarys_self_check_settings_and_relay_trust() -> None:
    """The primary's mail configuration needs almost nothing from the secondary: the setting adds
    a host. The self-check's copy of the settings changes (its dns-mx check then expects the
    backup MX, and would otherwise mail a false alarm every day), and rspamd trusts the backup
    MX's Received header for the mail it relays (external_relay.conf: otherwise that mail fails
    the sender's SPF and DMARC here) and files instead of refusing it (force_actions.conf: a
    refusal would make the backup MX bounce it to a forged sender)."""
    off, on = render.render(dev_settings(acmeServer="letsencrypt")[0]), render.render(dev_settings(**ON)[0])
    changed = {f.path for f in on.files} ^ {f.path for f in off.files} | {
        f.path for f in on.files if f.content != off.file(f.path).content}
    relay_trust = f"{catalog.VM_LAYOUT.rspamd_local_dir}/local.d/external_relay.conf"
    no_bounce = f"{catalog.VM_LAYOUT.rspamd_local_dir}/local.d/force_actions.conf"
    assert changed == {catalog.VM_LAYOUT.selfcheck_config, relay_trust, no_bounce}
    assert 'hostname_map = ["mx2.example.com"]' in on.file(relay_trust).content
    assert on.scripts == off.scripts and on.user_data == off.user_data


def test_the_doctor_finds_the_secondary_from_the_outputs_or_its_options(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailserver.doctor import SshRunner, cli

    raw = dev_raw(**ON)
    monkeypatch.setattr(cli, "load_stack", lambda stack: dict(raw))
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"publicIp": "198.51.100.20", "secondaryMx": {"publicIp": "198.51.100.21"}}))
    ns = argparse.Namespace(domain=None, stack="dev", host=None, outputs=str(outputs), resolver="192.0.2.53",
                            ip=None, timeout=1.0, ssh=None, ssh_option=["-i", "key"], inside=None, lab_root=None,
                            blocklist_resolver=None, cafile=None, source=None, volume_id=None, aws_region=None,
                            secondary_ip=None, secondary_ssh="ec2-user@mx2.example.com", secondary_lab_root=None)
    t = cli.build_target(ns)
    assert (t.ip, t.secondary_ip) == ("198.51.100.20", "198.51.100.21")
    assert isinstance(t.secondary_runner, SshRunner)
    assert (t.secondary_runner.destination, t.secondary_runner.options) == ("ec2-user@mx2.example.com", ("-i", "key"))
    ns.secondary_ip = "198.51.100.99"
    assert cli.build_target(ns).secondary_ip == "198.51.100.99"
