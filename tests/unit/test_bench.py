"""The benchmark's own arithmetic and hygiene (the measurements themselves need root and the lab)."""

from __future__ import annotations

import os
from pathlib import Path

from bench import delivery
from bench.__main__ import Row
from bench.common import cpu_ms_by_process


def test_the_disk_ceiling_stores_files_as_maildir_does_and_leaves_nothing(tmp_path: Path) -> None:
    c = delivery.maildir_ceiling(tmp_path, threads=3, size=4096, seconds=0.2)
    assert c.count > 0 and c.threads == 3 and c.rate == c.count / c.seconds
    assert list(tmp_path.iterdir()) == []  # beside the Maildirs: nothing may stay behind


def test_cpu_is_counted_by_process_name_and_only_what_was_spent_in_between() -> None:
    before = {1: ("smtpd", 100), 2: ("smtpd", 50), 3: ("dovecot/lmtp", 10), 4: ("qmgr", 7)}
    # pid 4 exited; pid 5 started in between and all its time counts.
    after = {1: ("smtpd", 110), 2: ("smtpd", 55), 3: ("dovecot/lmtp", 40), 5: ("lmtp", 3)}
    hz = os.sysconf("SC_CLK_TCK")
    ticks = {k: round(v * hz / 1000) for k, v in cpu_ms_by_process(before, after).items()}
    assert ticks == {"smtpd": 15, "dovecot/lmtp": 30, "lmtp": 3}


def test_a_row_compares_pairs_run_by_run_and_rates_over_all_runs() -> None:
    row = Row(4096, 10, ours=[delivery.Run(10, 4096, 100, 2.0), delivery.Run(10, 4096, 100, 1.0)],
              seed=[delivery.Run(10, 4096, 100, 1.0), delivery.Run(10, 4096, 100, 1.0)])
    assert row.ratios() == [0.5, 1.0]
    assert Row.rate(row.ours) == 200 / 3.0
