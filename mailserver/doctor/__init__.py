"""`python -m mailserver doctor`: status checks of a deployed (or lab) mail server.

A server that "deployed" can still be broken in ways `pulumi up` never sees: DNS not yet
propagated or edited by hand, port 25 blocked by AWS, a certificate still from staging or
about to expire, a daemon down, the IP on a blocklist. The doctor looks at the server the way
a sender, a mail client and a receiver do, compares what it finds with what the stack intends
(the same plan the program creates records from: `records.planned_records`), and says, per
check, what it expected, what it found and how to fix it.

CHECKS is the one list of checks: the README's table is generated from it, and every result
names one of its ids. Outside checks need nothing but the network; inside checks run a small
shell script on the host (over `ssh user@host sudo bash -s`, or directly in the lab).
"""

# The package, by concern (each module's docstring says more):
#   checks    CHECKS, the list of checks as data, with the thresholds their texts cite
#   verdicts  Status, Result, result(), exit codes, and the pure judgements (expiry, disk...)
#   target    Target (what is examined) and the Runner protocol
#   intent    what the stack plans: expected records, DKIM names, fail2ban jails
#   dnscheck  resolver and lookups; the DNS, PTR and blocklist checks
#   probes    the public ports: protocol, TLS, relay, AUTH and plaintext-login probes
#   host      the inside checks (one function each) and the ssh/local runners
#   aws       the snapshots check, through the AWS CLI
#   report    table, JSON, the README's table of checks
#   cli       build_target, run (every check in CHECKS order) and main
# Below: the names other code imports from `mailserver.doctor`.

from __future__ import annotations

from mailserver.doctor.aws import check_snapshots
from mailserver.doctor.checks import CHECK_IDS, CHECKS, Check
from mailserver.doctor.cli import build_target, main, run
from mailserver.doctor.dnscheck import compare_records
from mailserver.doctor.host import LocalRunner, SshRunner, check_inside
from mailserver.doctor.intent import dkim_names, expected_records
from mailserver.doctor.probes import PortProbe, check_ports, name_matches, probe_timeout, tls_version_result
from mailserver.doctor.report import check_table
from mailserver.doctor.target import Runner, Target
from mailserver.doctor.verdicts import (
    Result,
    Status,
    blocklist_status,
    disk_status,
    exit_code,
    expiry_status,
    memory_status,
    queue_status,
    relay_status,
    result,
    snapshot_status,
    summary,
)

__all__ = [
    "CHECKS", "CHECK_IDS", "Check", "LocalRunner", "PortProbe", "Result", "Runner", "SshRunner", "Status", "Target",
    "blocklist_status", "build_target", "check_inside", "check_ports", "check_snapshots", "check_table",
    "compare_records", "disk_status", "dkim_names", "exit_code", "expected_records", "expiry_status", "main",
    "memory_status", "name_matches", "probe_timeout", "queue_status", "relay_status", "result", "run",
    "snapshot_status", "summary", "tls_version_result",
]
