"""The backup MX's outage, at a larger count than the test's (tests/lab/test_secondary.py): the
primary's postfix stopped, N messages from an outside client to the secondary, then the primary
back and the secondary's queue flushed; how long accepting and draining took, and that every
message arrived once, none bounced (docs/scale-out.md).

    sudo .venv/bin/python -m bench.secondary_outage --count 500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mailserver import clients
from mailserver.core import catalog
from mailserver.core.settings import parse
from mailserver.core.stack import load_stack, random_passwords
from mailserver.lab import netns
from mailserver.lab.server import Lab
from mailserver.waiting import wait_until

from .common import BenchError

RESULTS = Path(__file__).parent / "results" / "secondary-outage.json"


def stored(lab: Lab, address: str, marker: str) -> int:
    return sum(marker.encode() in p.read_bytes()[:4096] for p in lab.maildir_files(address))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.secondary_outage", description=__doc__)
    ap.add_argument("--count", type=int, default=500, help="messages sent during the outage (default 500)")
    args = ap.parse_args(argv)
    raw = load_stack("dev")
    raw.update(mailboxPasswords=random_passwords(raw), secondaryMx=True, acmeServer="letsencrypt")
    settings, secrets = parse(raw)
    rcpts = settings.mailboxes
    marker = f"outage-bench-{time.time_ns()}"
    with Lab(settings, secrets) as primary, Lab(settings, secrets, role="secondary") as secondary:
        secondary.link_to(primary)
        secondary.trust_ca(Path(primary.layout.cert_file).read_text())
        primary.stop_postfix()
        started = time.monotonic()
        with netns.entered(secondary.ns), clients.smtp(catalog.SMTP_PORT) as conn:
            conn.ehlo("mx.outside.example")
            for i in range(args.count):
                rcpt = rcpts[i % len(rcpts)]
                conn.send_message(clients.message("someone@outside.example", [rcpt], f"{marker} {i}"))
        accepted = time.monotonic() - started
        wait_until(lambda: len(secondary.queue_ids()) == args.count
                   and all('"deferred"' in q for q in secondary.queue_ids()), 300, 0.5,
                   "every message deferred on the secondary", error=BenchError)
        queued = len(secondary.queue_ids())
        primary.start_postfix()
        primary.wait_ready()
        flushed = time.monotonic()
        secondary.flush_queue()
        wait_until(lambda: sum(stored(primary, r, marker) for r in rcpts) >= args.count and not secondary.queue_ids(),
                   600, 0.2, "every message at the primary", error=BenchError)
        drained = time.monotonic() - flushed
        arrived = sum(stored(primary, r, marker) for r in rcpts)
        bounced = sum("status=bounced" in line for lab in (primary, secondary) for line in lab.log().splitlines())
    figures = {"measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sent": args.count,
               "accept_seconds": round(accepted, 2), "queued": queued, "drain_seconds_after_flush": round(drained, 2),
               "arrived": arrived, "lost": args.count - arrived, "bounced": bounced}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    return 0 if arrived == args.count and bounced == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
