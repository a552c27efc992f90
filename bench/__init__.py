"""Benchmarks of the mail server on the lab's real postfix and dovecot: delivery throughput
against the seed guide's stock postfix and the disk's fsync ceiling, submission, IMAP,
memory footprint (and the EC2 instance it needs), and the cost of the Pulumi program.

Run `python -m bench` (or `--quick`) as root; see bench/__main__.py. These are measurements,
not tests: they fail only when a run cannot be measured (a message missing, a daemon down).
"""
