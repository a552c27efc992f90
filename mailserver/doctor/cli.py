"""The command line: `python -m mailserver doctor`. Builds the Target from a stack (or
--domain), its outputs and the options, runs every check, prints the table or JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mailserver.core import catalog
from mailserver.core.settings import AWS_REGION_KEY, Settings, parse_settings
from mailserver.core.stack import StackFileError, load_stack
from mailserver.doctor.checks import CHECKS, Reach
from mailserver.doctor.dnscheck import (
    check_aaaa,
    check_blocklists,
    check_dbl,
    check_dns,
    check_ptr,
    lookup,
    make_resolver,
)
from mailserver.doctor.host import LocalRunner, SshRunner, check_inside
from mailserver.doctor.intent import dkim_names
from mailserver.doctor.probes import check_open_relay, check_plaintext_login, check_ports, check_smtp_auth, check_tls
from mailserver.doctor.report import as_json, render_table
from mailserver.doctor.secondary import check_secondary
from mailserver.doctor.target import Runner, Target
from mailserver.doctor.verdicts import EXIT_SETUP, Result, exit_code, show, unreached
from mailserver.doctor.webcheck import check_autoconfig, check_mta_sts_policy


def run(t: Target) -> list[Result]:
    """Every check of the target's (t.checks; None: all), in CHECKS order."""
    res = make_resolver(t.resolver, t.timeout)
    out = check_dns(t, res)
    if t.wants("web-mta-sts") or t.wants("web-autoconfig"):
        out += check_mta_sts_policy(t, res) + check_autoconfig(t, res)
    out += check_aaaa(t, res) + check_ptr(t, res)
    port_results, probes = check_ports(t)
    out += port_results + check_tls(t, probes)
    out += check_open_relay(t, probes) + check_smtp_auth(t, probes) + check_plaintext_login(t, probes)
    out += check_blocklists(t) + check_dbl(t)
    out += check_inside(t)
    out += check_secondary(t)
    order = {c.id: i for i, c in enumerate(CHECKS)}
    return sorted((r for r in out if t.wants(r.check)), key=lambda r: order[r.check])


class SetupError(Exception):
    """The doctor cannot run its checks: nothing was judged."""


def read_outputs(path: str | None, stack: str | None) -> dict[str, Any]:
    """The stack's outputs: a file of `pulumi stack output --json`, or the CLI when present."""
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SetupError(f"cannot read the outputs file {path}: {e}") from e
        if not isinstance(data, dict):
            raise SetupError(f"{path} is not the JSON object `pulumi stack output --json` prints")
        return data
    if stack and shutil.which("pulumi"):
        proc = subprocess.run(["pulumi", "stack", "output", "--json", "--stack", stack], capture_output=True,
                              text=True, check=False, timeout=120)
        if proc.returncode == 0:
            data = json.loads(proc.stdout)
            return data if isinstance(data, dict) else {}
        print(f"doctor: pulumi stack output failed, going on without outputs: {proc.stderr.strip()[:200]}",
              file=sys.stderr)
    return {}


def adhoc_raw(domains: list[str], host: str | None) -> dict[str, Any]:
    """Settings for --domain/--host without a stack file: the program's defaults for those
    domains (the placeholders below only feed keys the doctor never reads)."""
    return {
        "domains": domains, "hostname": host or "",
        "cloudflareZoneIds": [f"{d}={'0' * 32}" for d in domains], "cloudflareAccountId": "0" * 32,
        "adminCidrs": ["192.0.2.1/32"], "mailboxes": [f"postmaster@{domains[0]}"],
    }


def build_target(args: argparse.Namespace) -> Target:
    if args.domain:
        raw = adhoc_raw(args.domain, args.host)
    else:
        try:
            raw = load_stack(args.stack)
        except StackFileError as e:
            raise SetupError(str(e)) from None
        if args.host:
            raw["hostname"] = args.host
    # The settings alone: the doctor never logs in, so it needs no password.
    settings = parse_settings(raw)
    outputs = read_outputs(args.outputs, None if args.domain else args.stack)
    res = make_resolver(args.resolver, args.timeout)
    ip = args.ip or outputs.get("publicIp")
    if not ip:
        found, _ = lookup(res, settings.hostname, "A")
        if not found:
            raise SetupError(f"no IP: {settings.hostname} does not resolve; give --ip or --outputs")
        ip = found[0]
    dkim, ses_dkim = dkim_from_outputs(settings, outputs)
    runner = build_runner(args)
    secondary_ip = None
    if settings.secondary_mx:
        secondary_ip = getattr(args, "secondary_ip", None) or (outputs.get("secondaryMx") or {}).get("publicIp")
        if not secondary_ip:
            found, _ = lookup(res, settings.secondary_hostname, "A")
            secondary_ip = found[0] if found else None
    return Target(settings=settings, ip=str(ip), dkim=dkim, resolver=args.resolver,
                  blocklist_resolver=args.blocklist_resolver, cafile=args.cafile, source=args.source,
                  timeout=args.timeout, runner=runner, ses_dkim=ses_dkim,
                  volume_id=args.volume_id or outputs.get("dataVolumeId"),
                  aws_region=args.aws_region or str(raw.get(AWS_REGION_KEY) or "") or None,
                  ipv6=str(outputs["publicIpv6"]) if outputs.get("publicIpv6") else None,
                  secondary_ip=str(secondary_ip) if secondary_ip else None,
                  secondary_runner=build_secondary_runner(args))


def dkim_from_outputs(settings: Settings, outputs: dict[str, Any]
                      ) -> tuple[dict[str, str | None], list[tuple[str, str]]]:
    """The DKIM TXT content the outputs name per selector name (None: not in the outputs, then
    checked for presence only), and SES's Easy DKIM CNAMEs (name, target)."""
    dkim: dict[str, str | None] = {name: None for name in dkim_names(settings)}
    ses_dkim: list[tuple[str, str]] = []
    for rec in outputs.get("dnsRecords") or []:
        name = str(rec.get("name", "")).lower().rstrip(".")
        if rec.get("type") == "TXT" and name in dkim:
            dkim[name] = str(rec.get("content"))
    for rec in (outputs.get("sesRelay") or {}).get("dnsRecords") or []:
        if rec.get("type") == "CNAME" and "._domainkey." in str(rec.get("name")):
            ses_dkim.append((str(rec["name"]).lower().rstrip("."), str(rec["content"])))
    return dkim, ses_dkim


def build_runner(args: argparse.Namespace) -> Runner | None:
    """Where the inside checks run: over ssh, in the lab's namespace, on this host, or nowhere."""
    if args.ssh:
        return SshRunner(args.ssh, options=tuple(args.ssh_option or ()))
    if args.inside == "lab":
        if not args.lab_root:
            raise SetupError("--inside lab needs --lab-root (the lab's directory)")
        return LocalRunner(catalog.lab_layout(Path(args.lab_root)), where="lab")
    if args.inside == "local":
        return LocalRunner(catalog.VM_LAYOUT)
    return None


def build_secondary_runner(args: argparse.Namespace) -> Runner | None:
    """Where the secondary MX's queue is read: over ssh, or in the secondary lab's namespace."""
    # getattr: a Namespace built by hand (the tests', a script's) may predate these options.
    if getattr(args, "secondary_ssh", None):
        return SshRunner(args.secondary_ssh, options=tuple(args.ssh_option or ()))
    if getattr(args, "secondary_lab_root", None):
        return LocalRunner(catalog.lab_layout(Path(args.secondary_lab_root)), where="lab")
    return None


def reach_names(t: Target) -> dict[Reach, str]:
    """What each kind of check had to reach, named as the operator gave it."""
    resolver = f"the DNS resolver {t.resolver}" if t.resolver else "the system's DNS resolver"
    runner = t.runner
    host = (f"the host over ssh as {runner.destination}" if isinstance(runner, SshRunner)
            else "a root shell on the host" if runner is not None and runner.where == "local"
            else "the lab's host")
    return {
        "resolver": resolver,
        "blocklist-resolver": "the blocklists through " + (f"the DNS resolver {t.blocklist_resolver}"
                                                           if t.blocklist_resolver else resolver),
        "ports": f"the mail ports of {t.ip}",
        "web": "the web hostnames (mta-sts.<domain>, autoconfig.<domain>) through " + resolver,
        "host": host,
        "aws": "AWS (the snapshot lookup, through the AWS CLI)",
        "secondary": f"the secondary MX ({t.secondary_ip or t.settings.secondary_hostname}: port 25, and a shell "
                     "there for its queue)",
    }


def unreached_message(results: list[Result], t: Target) -> str:
    """What the doctor could not check, by what it could not reach, with the checks concerned and
    why (the first such answer); empty when every check could be made. Exit 3 prints it, and so
    does exit 1 when unknowns come with errors."""
    groups = unreached(results)
    if not groups:
        return ""
    total = sum(len(rs) for rs in groups.values())
    head = ("no error found, but" if exit_code(results) != 1 else "besides the errors,")
    lines = [(f"doctor: {head} {total} result{'s' if total > 1 else ''} could not be checked (unknown); "
              "it could not reach, or got no usable answer from:")]
    names = reach_names(t)
    for what, rs in groups.items():
        checks = ", ".join(dict.fromkeys(r.check for r in rs))
        why = show([rs[0].found], 160)
        lines.append(f"  - {names[what]} ({checks}; {len(rs)} unknown): {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from mailserver import doctor  # the package's docstring is the --help text

    ap = argparse.ArgumentParser(prog="python -m mailserver doctor", description=doctor.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", default="dev", help="stack whose settings to check (Pulumi.<stack>.yaml)")
    ap.add_argument("--domain", action="append", help="check these mail domains with default settings "
                    "instead of a stack (repeat for several; the first is primary)")
    ap.add_argument("--host", help="the mail host name (default: the stack's, or mail.<first domain>)")
    ap.add_argument("--ip", help="the server's IP (default: the outputs' publicIp, else the host's A record)")
    ap.add_argument("--outputs", help="file holding `pulumi stack output --json` (default: ask the Pulumi CLI "
                    "when installed); gives the IP and the DKIM keys to compare")
    ap.add_argument("--resolver", help="DNS resolver IP (default: the system's)")
    ap.add_argument("--blocklist-resolver", help="resolver for blocklist lookups; Spamhaus refuses public "
                    "resolvers (default: --resolver)")
    ap.add_argument("--cafile", help="trusted roots for the certificate check (default: the system's)")
    ap.add_argument("--source", help="source address of the probes (the lab: 127.0.0.2)")
    ap.add_argument("--timeout", type=float, default=8.0, help="seconds per network operation")
    ap.add_argument("--ssh", help="user@host: run the inside checks over ssh ... sudo bash -s")
    ap.add_argument("--ssh-option", action="append", help="extra ssh option, e.g. -i key (repeatable)")
    ap.add_argument("--inside", choices=("lab", "local"), help="run the inside checks here: on the host "
                    "itself (local), or inside the lab's namespace (lab, with --lab-root)")
    ap.add_argument("--lab-root", help="the lab's directory (printed by python -m mailserver lab)")
    ap.add_argument("--secondary-ip", help="the secondary MX's IP (default: the outputs' secondaryMx.publicIp, "
                                           "else its A record)")
    ap.add_argument("--secondary-ssh", help="user@host: read the secondary MX's queue over ssh ... sudo bash -s")
    ap.add_argument("--secondary-lab-root", help="the secondary lab's directory: read its queue in the lab")
    ap.add_argument("--volume-id", help="EBS volume whose snapshots to check (default: the outputs' dataVolumeId)")
    ap.add_argument("--aws-region", help="region for the snapshot lookup (default: the stack's aws:region)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--verbose", action="store_true", help="one table row per result, even for checks all ok")
    args = ap.parse_args(argv)
    try:
        target = build_target(args)
    except SetupError as e:
        print(f"doctor: {e}", file=sys.stderr)
        return EXIT_SETUP
    started = time.monotonic()
    results = run(target)
    if args.json:
        print(as_json(results))
    else:
        render_table(results, verbose=args.verbose)
        print(f"doctor: {time.monotonic() - started:.1f}s")
    message = unreached_message(results, target)
    if message:
        print(message, file=sys.stderr)
    return exit_code(results)
