"""python -m bench.variants ROWS VARIANT...: one change at a time, before and after, in one lab.

Starts the lab (the dev stack as the bench configures it) and the seed, measures ROWS on the
configuration as rendered ("base"), then, for each VARIANT in turn, puts the rendered files back,
applies the variant (a few lines of shell against the lab's own files, in its namespace),
reloads, and measures the rows again. Each row runs ours, seed, seed, ours; it prints ours/seed
and the CPU per message of the busiest processes. For trying a change before writing it into the
templates, and for the figures of docs/benchmarks.md's "tried and not kept"; the lab's files are
edited, never the templates. Needs root, like the bench.

It also prints the lab's memory (PSS) before the rows and at its peak during them, by process.
Memory after a reload is not memory after a fresh start (rspamd's processes are new): compare
variants with each other, and confirm a memory gain with a fresh start before trusting it.

ROWS: comma-separated SIZExSESSIONSxCOUNT, e.g. 4096x10x600,102400x20x300.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from mailserver.lab.server import Lab

from . import delivery, outside
from .__main__ import bench_settings
from .common import MIB, MemorySampler, cpu_ms_by_process, cpu_ticks, memory
from .seed import Seed

# name -> (what it changes, the shell that changes it). @P@ is postfix's configuration directory,
# @D@ dovecot.conf, @O@ rspamd's local.d/worker-proxy.inc (the milter), @S@ rspamd's
# local.d/options.inc, @R@ the lab's root.
VARIANTS: dict[str, tuple[str, str]] = {
    "milter-tcp": ("the milter on loopback TCP (127.0.0.1:11332, rspamd's default), not a unix socket", """
        sed -i 's|^bind_socket = .*|bind_socket = "127.0.0.1:11332";|' @O@
        postconf -c @P@ -e smtpd_milters=inet:127.0.0.1:11332"""),
    "no-hyperscan": ("rspamd without hyperscan (no hs_helper process, no compiled regexps; PCRE instead)", """
        echo 'disable_hyperscan = true;' >> @S@"""),
    "no-neural": ("rspamd without its neural-network module (which trains in the controller, on Redis)", """
        printf 'enabled = false;\n' > @R@/etc/rspamd/local.d/neural.conf"""),
    "quota-count": ("dovecot's quota backend count (quota_vsizes, mailbox list indexes) instead of maildir", """
        sed -i 's/quota = maildir:User quota/quota = count:User quota\\n  quota_vsizes = yes/' @D@
        sed -i 's/^protocols = /mailbox_list_index = yes\\nprotocols = /' @D@"""),
    "lmtp-index-memory": ("LMTP keeps no index on disk (INDEX=MEMORY)", """
        sed -i 's|^protocol lmtp {|protocol lmtp {\\n  mail_location = maildir:~/Maildir:INDEX=MEMORY|' @D@"""),
    "no-rcpt-quota": ("no quota check at LMTP's RCPT (still checked when saving)", """
        sed -i 's/^lmtp_rcpt_check_quota = yes/lmtp_rcpt_check_quota = no/' @D@"""),
    "no-stats-writer": ("dovecot's processes send no statistics", """
        sed -i 's/^protocols = /stats_writer_socket_path =\\nprotocols = /' @D@"""),
    "lmtp-concurrency-4": ("postfix delivers to dovecot over at most 4 LMTP connections, not 20", """
        postconf -c @P@ -e lmtp_destination_concurrency_limit=4"""),
    # Attribution only: what a protection costs. None of these is an option (issue 14).
    "no-milter": ("no milter at all (attribution only)", """
        postconf -c @P@ -e smtpd_milters= non_smtpd_milters="""),
    "no-postscreen": ("smtpd answers port 25 itself (attribution only)", """
        sed -i 's/^smtp  *inet .*postscreen$/smtp inet n - n - - smtpd/' @P@/master.cf"""),
    "no-quota-sieve": ("no quota and no Sieve (attribution only)", """
        sed -i -e 's/^mail_plugins = \\$mail_plugins quota$/mail_plugins = $mail_plugins/' \\
          -e 's/^  mail_plugins = \\$mail_plugins sieve$/  mail_plugins = $mail_plugins/' \\
          -e 's/^  mail_plugins = \\$mail_plugins imap_quota$//' -e 's/^lmtp_rcpt_check_quota = yes$//' @D@"""),
}
# The files a variant may change, and how every daemon is made to read them again (rspamd's
# HUP starts new workers, on a new socket if the variant changed it).
RELOAD = """
    postfix -c @P@ stop >/dev/null 2>&1; postfix -c @P@ start >/dev/null 2>&1
    doveadm -c @D@ reload
    kill -HUP "$(cat @R@/run/rspamd/rspamd.pid)"
    sleep 4"""


def proxy_conf(lab: Lab) -> str:
    return f"{lab.layout.rspamd_local_dir}/local.d/worker-proxy.inc"


def options_conf(lab: Lab) -> str:
    return f"{lab.layout.rspamd_local_dir}/local.d/options.inc"


def shell(lab: Lab, script: str) -> None:
    files = {"@P@": lab.layout.postfix_dir, "@D@": lab.layout.dovecot_conf, "@O@": proxy_conf(lab),
             "@S@": options_conf(lab), "@R@": str(lab.root)}
    for token, path in files.items():
        script = script.replace(token, path)
    lab.run(["bash", "-euc", script])


def mib(n: int) -> str:
    return f"{n / MIB:.0f}"


def measure(lab: Lab, seed: Seed, name: str, rows: list[tuple[int, int, int]]) -> list[str]:
    """The rows, ours and the seed interleaved; and the lab's memory (PSS) idle before them and
    at its peak during them, with the largest processes."""
    out = []
    stored = delivery.lab_stored(lab)
    idle = memory(lab.ns)
    sampler = MemorySampler(lab.ns)
    with sampler:
        out += rows_measured(lab, seed, name, rows, stored)
    for label, m in (("idle", idle), ("peak", sampler.peak)):
        top = ", ".join(f"{k} {mib(v)}" for k, v in list(m.by_process.items())[:8])
        out.append(f"{name:20} memory {label}: {mib(m.pss)} MiB PSS, {m.processes} processes ({top})")
        print(out[-1], flush=True)
    return out


def rows_measured(lab: Lab, seed: Seed, name: str, rows: list[tuple[int, int, int]],
                  stored: Callable[[], int]) -> list[str]:
    out = []
    ours, theirs = outside.SERVER_ADDRESS, delivery.LOOPBACK
    for size, sessions, count in rows:
        before = cpu_ticks(lab.ns)
        o1 = delivery.deliver_to(lab.run, stored, delivery.RECIPIENT, sessions, size, count, ours)
        cpu = cpu_ms_by_process(before, cpu_ticks(lab.ns))
        s1 = delivery.deliver_to(seed.run, seed.delivered, seed.address, sessions, size, count, theirs)
        s2 = delivery.deliver_to(seed.run, seed.delivered, seed.address, sessions, size, count, theirs)
        o2 = delivery.deliver_to(lab.run, stored, delivery.RECIPIENT, sessions, size, count, ours)
        lab.wait_queue_empty(60)
        ratio = (s1.seconds + s2.seconds) / (o1.seconds + o2.seconds)  # the rates' ratio, same counts
        busiest = ", ".join(f"{k} {v / count:.2f}" for k, v in sorted(cpu.items(), key=lambda x: -x[1])[:5])
        out.append(f"{name:20} {size:>6} B {sessions:>2} sessions: ours {o1.rate:.0f}, {o2.rate:.0f}; "
                   f"seed {s1.rate:.0f}, {s2.rate:.0f}; ours/seed {ratio:.2f}; CPU ms/msg "
                   f"{sum(cpu.values()) / count:.1f} ({busiest})")
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.variants", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="variants: " + "; ".join(f"{k}: {v[0]}" for k, v in VARIANTS.items()))
    ap.add_argument("rows")
    ap.add_argument("variants", nargs="*", choices=sorted(VARIANTS))
    args = ap.parse_args(argv)
    rows = [(int(a), int(b), int(c)) for a, b, c in (r.split("x") for r in args.rows.split(","))]
    if os.geteuid() != 0:
        print("bench.variants: run as root", file=sys.stderr)
        return 2
    settings, secrets = bench_settings()
    results = []
    with Lab(settings, secrets) as lab, outside.Outside(lab), Seed() as seed:
        lab.start_fail2ban()
        time.sleep(2)
        saved = lab.root / "rendered"
        conf = [f"{lab.layout.postfix_dir}/main.cf", f"{lab.layout.postfix_dir}/master.cf",
                lab.layout.dovecot_conf, proxy_conf(lab), options_conf(lab)]
        # The base is reloaded too, as each variant is: rspamd's memory right after a HUP is not
        # what it is after a fresh start (no-hyperscan: 302 MiB peak after a HUP, 415 at a fresh
        # start with the option rendered, as without it), so both sides are measured alike.
        shell(lab, f"mkdir {saved}; cp {' '.join(conf)} {saved}/" + RELOAD)
        results += measure(lab, seed, "base", rows)
        for name in args.variants:
            shell(lab, "".join(f"cp {saved}/{os.path.basename(f)} {f}\n" for f in conf) + VARIANTS[name][1] + RELOAD)
            results += measure(lab, seed, name, rows)
    print("\n".join(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
