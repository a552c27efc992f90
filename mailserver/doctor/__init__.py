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

Exit codes: 0 every check could be made and none is an error (warnings included); 1 at least
one check is an error; 2 the doctor could not start checking (no IP, unreadable outputs, bad
arguments); 3 no error, but some checks could not be made (unknown): a message on stderr
then says what the doctor could not reach (the DNS resolver, the blocklists' resolver, the
mail ports, the host over ssh, AWS), for which checks, and why. An error beats an unknown: 1,
with the same message when unknowns come with it.
"""

# The package, by concern (each module's docstring says more):
#   checks    CHECKS, the list of checks as data, with the thresholds their texts cite
#   verdicts  Status, Result, result(), exit codes, and the pure judgements (expiry, disk...)
#   target    Target (what is examined) and the Runner protocol
#   intent    what the stack plans: expected records, DKIM names, fail2ban jails
#   dnscheck  resolver and lookups; the DNS, stray AAAA, PTR, IP and domain blocklist checks
#   webcheck  the MTA-STS policy and autoconfig document over HTTPS, against the plan
#   probes    the public ports: protocol, TLS, relay, AUTH and plaintext-login probes
#   host      the inside checks (one function each) and the ssh/local runners
#   aws       the snapshots check, through the AWS CLI
#   report    table, JSON, the README's table of checks
#   cli       build_target, run (every check in CHECKS order) and main
# Below: the names other code imports from `mailserver.doctor`.

from __future__ import annotations

from mailserver.doctor.aws import check_snapshots
from mailserver.doctor.checks import CHECK_IDS, CHECKS, Check, Reach, reach
from mailserver.doctor.cli import build_target, main, run
from mailserver.doctor.dnscheck import compare_records
from mailserver.doctor.host import LocalRunner, SshRunner, check_inside
from mailserver.doctor.intent import dkim_names, expected_records
from mailserver.doctor.probes import PortProbe, check_ports, name_matches, probe_timeout, tls_version_result
from mailserver.doctor.report import check_table
from mailserver.doctor.target import Runner, Target
from mailserver.doctor.verdicts import (
    EXIT_ERROR_FOUND,
    EXIT_OK,
    EXIT_SETUP,
    EXIT_UNCHECKED,
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
    unreached,
)

__all__ = [
    "CHECKS", "CHECK_IDS", "EXIT_ERROR_FOUND", "EXIT_OK", "EXIT_SETUP", "EXIT_UNCHECKED", "Check", "LocalRunner",
    "PortProbe", "Reach", "Result", "Runner", "SshRunner", "Status", "Target",
    "blocklist_status", "build_target", "check_inside", "check_ports", "check_snapshots", "check_table",
    "compare_records", "disk_status", "dkim_names", "exit_code", "expected_records", "expiry_status", "main",
    "memory_status", "name_matches", "probe_timeout", "queue_status", "reach", "relay_status", "result", "run",
    "snapshot_status", "summary", "tls_version_result", "unreached",
]
