"""The doctor's checks as data. CHECKS is the one list: every result names one of its ids,
the README's table is generated from it (report.check_table), and its texts cite the
thresholds below, which the verdicts apply. A check the lab cannot answer says why in
`lab_skip`; the inside checks' runner then reports it "skipped in lab" (host.check_inside)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from mailserver.core import catalog

# secondary: the backup MX's own checks (secondaryMx), from outside and on it (doctor/secondary.py).
Category = Literal["outside", "inside", "secondary"]
# What a check has to reach before it can judge anything (see reach()): an unknown result is
# one whose check could not reach it or got no usable answer from it, and the doctor's exit-3
# message names these.
Reach = Literal["resolver", "blocklist-resolver", "ports", "web", "host", "aws", "secondary"]

# Certificate expiry, judged against the certificate's own lifetime (notAfter - notBefore), as
# Let's Encrypt's shrinks from 90 to 64 (2027) and 45 days (2028). Warning: less than
# catalog.CERT_RENEW_KEEP (a third) of it left. acme.sh renews while more is left, two daily tries
# before that point (certificates.acme_renewal_days), so less means renewal has failed at least twice.
# Error: expired, or in the last EXPIRY_ERROR_DAYS, the time left to fix renewal before senders
# that enforce MTA-STS stop delivering. A fixed floor, because fixing takes the same days whatever
# the lifetime; only a certificate too short to be warned about for twice that long (under 18
# days, none of Let's Encrypt's default ones) gets half its warning window instead, so a
# warning always comes before the error.
EXPIRY_ERROR_DAYS = 3
DISK_WARNING_PERCENT, DISK_ERROR_PERCENT = 80, 90
MEMORY_WARNING_PERCENT, MEMORY_ERROR_PERCENT = 15, 5  # available memory, % of total
QUEUE_WARNING, QUEUE_ERROR = 20, 200  # messages waiting
SNAPSHOT_WARNING_HOURS, SNAPSHOT_ERROR_HOURS = 26, 8 * 24
# The secondary MX's queue (secondaryMx): a message it holds for longer than the warning has
# not reached the primary at its retries (the primary down or refusing it, its certificate not
# verifying, port 25 blocked); by the error, half of its 8-day lifetime (catalog.
# SECONDARY_QUEUE_LIFETIME) is gone, and what is not handed over in the other half bounces.
SECONDARY_QUEUE_WARNING_HOURS, SECONDARY_QUEUE_ERROR_HOURS = 1, 4 * 24
# A new volume's first snapshot comes with DLM's next daily run (catalog.SNAPSHOT_TIME_UTC):
# up to 24 h after it was made, plus the time the snapshot takes to complete.
FIRST_SNAPSHOT_GRACE_HOURS = 27
# The key-value store's service on each OS, as the services check names it.
KV_SERVICES = ", ".join(f"{kv.service} on {os_name}" for os_name, kv in catalog.KV_STORES.items())


@dataclasses.dataclass(frozen=True)
class Check:
    id: str
    title: str
    category: Category
    verifies: str
    fix: str
    # What a failing server looks like to this check, in a reader's words (the README's table).
    fault: str
    # Why the lab cannot answer this check (no systemd, no AWS, no route out...): its result
    # there is "skipped in lab: <lab_skip>". Empty: the lab answers it as the VM would.
    lab_skip: str = ""


CHECKS: tuple[Check, ...] = (
    Check("dns-a", "Mail host address", "outside",
          "the mail host name's A record is the server's public IP",
          "pulumi up restores the record; changes need up to the TTL (300 s) to show",
          fault="the mail host's A record points elsewhere (an old address, a hand edit)"),
    Check("dns-mx", "MX records", "outside",
          "each mail domain's MX is exactly the mail host (an extra MX receives your mail elsewhere), and with "
          "secondaryMx the backup MX at the larger preference",
          "pulumi up restores the records; delete MX records the stack did not create",
          fault="an MX of another host beside or instead of ours (mail for the domain goes there)"),
    Check("dns-spf", "SPF", "outside",
          "each domain has exactly one v=spf1 record, the planned one",
          "pulumi up restores it; merge other senders through spfExtra, never a second SPF record",
          fault="a second v=spf1 record, or another one than planned (receivers then treat SPF as broken)"),
    Check("dns-dkim", "DKIM keys", "outside",
          "the public key of every selector is published and matches the key the host signs with",
          "pulumi up republishes the keys; after a selector change wait for the TTL",
          fault="a selector's key missing from DNS, or not the key the host signs with"),
    Check("dns-dmarc", "DMARC", "outside",
          "_dmarc of each domain (and the cross-domain report authorisation) as planned",
          "pulumi up restores it",
          fault="a _dmarc record with another policy than planned (p=none after a hand edit)"),
    Check("dns-mta-sts", "MTA-STS record", "outside",
          "_mta-sts TXT carries the id of the policy the Worker serves",
          "pulumi up restores it (the id changes with the policy)",
          fault="an _mta-sts id that is not the served policy's (senders keep a stale policy)"),
    Check("dns-tls-rpt", "TLS-RPT record", "outside",
          "_smtp._tls TXT names the TLS report address", "pulumi up restores it",
          fault="no _smtp._tls record (no TLS failure reports reach you)"),
    Check("dns-caa", "CAA", "outside",
          "only Let's Encrypt may issue certificates for the mail host",
          "pulumi up restores it; remove CAA records of other CAs",
          fault="a CAA record that lets another CA issue for the mail host"),
    Check("dns-srv", "Client SRV records", "outside",
          "RFC 6186 SRV records point clients to the enabled ports", "pulumi up restores them",
          fault="a client SRV record missing (clients cannot find the port by themselves)"),
    Check("dns-web", "MTA-STS and autoconfig names", "outside",
          "mta-sts.<domain> and autoconfig.<domain> resolve (the Worker's custom domains)",
          "pulumi up recreates the Worker's custom domains; check them in the Cloudflare dashboard",
          fault="mta-sts.<domain> or autoconfig.<domain> does not resolve"),
    Check("web-mta-sts", "MTA-STS policy", "outside",
          "https://mta-sts.<domain>/.well-known/mta-sts.txt answers 200 with a valid certificate, and its mode, "
          "mx and max_age are the planned ones (mode from mtaStsMode); the _mta-sts id is the served text's",
          "pulumi up redeploys the Worker and the _mta-sts record (the id changes with the policy); check the "
          "Worker's custom domains and their certificates in the Cloudflare dashboard",
          fault="the served policy lists another mx, has another mode than planned, or its certificate is untrusted"),
    Check("web-autoconfig", "Autoconfig document", "outside",
          "https://autoconfig.<domain>/mail/config-v1.1.xml answers 200 with a valid certificate and offers the "
          "mail host's ports and TLS (SSL/STARTTLS) of the port table, in the planned order",
          "pulumi up redeploys the Worker with the document rendered from the port table",
          fault="the document offers a port the port table does not have, or its certificate is untrusted"),
    Check("dns-aaaa", "No stray AAAA", "outside",
          "the mail host name has no AAAA record unless the instance has that IPv6 address (publicIpv6 in the "
          "outputs; the stack plans none): a stray one sends IPv6-capable senders where nothing answers",
          "delete the AAAA record of the mail host in Cloudflare (the stack creates none)",
          fault="an AAAA record for the mail host that the instance does not have"),
    Check("dns-ses", "SES MAIL FROM records", "outside",
          "with relay ses, the bounce.<domain> MX and SPF that SES's custom MAIL FROM needs",
          "pulumi up restores them",
          fault="SES's bounce.<domain> MX or SPF missing (with relay ses)"),
    Check("ptr", "Reverse DNS", "outside",
          "the PTR of the IP is the mail host name, and that name resolves back to the IP",
          "pulumi up sets the PTR (aws.ec2.EipDomainName) once the A record resolves; "
          "on a new account AWS may need the port-25 form first",
          fault="the PTR names another host (EC2's default ec2-...), or the name does not lead back to the IP"),
    Check("ports", "Public ports", "outside",
          "every public port of the port table answers its protocol (banner, STARTTLS or implicit TLS)",
          "check the security group and that the daemon runs (systemctl status postfix dovecot)",
          fault="a public port that does not answer (a security group rule gone, a daemon stopped)"),
    Check("tls-name", "Certificate name", "outside",
          "the certificate on every TLS port covers the mail host name",
          "re-run acme.sh for the host name (pulumi up), then systemctl reload postfix dovecot",
          fault="a certificate for another name on a TLS port"),
    Check("tls-chain", "Certificate chain", "outside",
          "the certificate chains to a trusted root (staging and self-signed are flagged)",
          "set acmeServer letsencrypt and pulumi up; a self-signed certificate means acme.sh "
          "has not installed one yet (see the acme step's log)",
          fault="a self-signed, staging or untrusted certificate"),
    Check("tls-expiry", "Certificate expiry", "outside",
          "more than a third of the certificate's own lifetime (notAfter - notBefore) is left (warning), "
          f"and it is neither expired nor in its last {EXPIRY_ERROR_DAYS} days (error)",
          f"renewal is failing: run {catalog.ACME_HOME}/acme.sh --cron on the host and read its output",
          fault="a certificate expired, in its last days, or with less than a third of its lifetime left"),
    Check("tls-version", "TLS 1.2 minimum", "outside",
          "TLS 1.0 and 1.1 handshakes are refused on every TLS port (a timeout or a failed STARTTLS "
          "is unknown, not refused)",
          "restore the rendered main.cf/dovecot.conf (pulumi up re-applies them)",
          fault="TLS 1.0 or 1.1 accepted on a TLS port"),
    Check("open-relay", "No open relay", "outside",
          "port 25 refuses an outside sender's mail to an outside recipient at RCPT as relaying "
          "(5xx Relay access denied; another refusal, e.g. a blocklisted probe address, is unknown)",
          "remove wide networks from mynetworks and keep relayRestrictions ending in "
          "reject_unauth_destination",
          fault="port 25 accepts mail from outside to outside (mynetworks too wide)"),
    Check("auth-before-tls", "No SMTP AUTH without TLS", "outside",
          "port 25 never offers AUTH; submission offers and accepts it only after STARTTLS",
          "restore smtpd_tls_auth_only = yes and the per-port settings of master.cf (pulumi up)",
          fault="AUTH offered before STARTTLS, or on port 25"),
    Check("plaintext-login", "No plaintext IMAP/POP3/ManageSieve login", "outside",
          "IMAP, POP3 and ManageSieve offer no login before STARTTLS (IMAP LOGINDISABLED; POP3 CAPA without "
          "USER; no AUTH or SASL PLAIN/LOGIN), read from the capabilities without trying one",
          "restore disable_plaintext_auth = yes in dovecot.conf (pulumi up)",
          fault="IMAP, POP3 or ManageSieve offering a login before STARTTLS"),
    Check("blocklists", "Blocklists", "outside",
          "the IP is on none of the blocklists of the blocklists setting",
          "ask the list for removal (each has a lookup page), after finding what sent the spam; "
          "'unknown' means the resolver was refused: use --blocklist-resolver with your own resolver",
          fault="the IP listed on a blocklist (or the blocklist refusing the resolver: unknown)"),
    Check("dbl", "Domain blocklist", "outside",
          "no mail domain is on the domain blocklists (" + ", ".join(catalog.DOMAIN_BLOCKLISTS) + "), looked up "
          "through the blocklists' resolver (a 127.255.255.x answer is a refusal: unknown)",
          "find what advertised the domain in spam (a compromised mailbox, a hijacked web page), stop it, then "
          "ask for removal at https://check.spamhaus.org; 'unknown' means the resolver was refused: use "
          "--blocklist-resolver with your own resolver",
          fault="a mail domain listed on Spamhaus's DBL (or the DBL refusing the resolver: unknown)"),
    Check("outbound-25", "Outbound port 25", "inside",
          "the host can open a connection to another mail server's port 25",
          "AWS blocks it on new accounts: file the 'Request to remove email sending limitations' "
          "form, or set relay ses", lab_skip="the namespace has no route out",
          fault="no connection out to port 25 (AWS's block on new accounts)"),
    Check("services", "Services running", "inside",
          f"{', '.join(catalog.MAIL_DAEMONS)} and the key-value store ({KV_SERVICES}) are running",
          f"systemctl restart {' '.join(catalog.MAIL_DAEMONS)} and the store ({KV_SERVICES}); journalctl -u <unit> "
          "says why it stopped",
          fault=f"{', '.join(catalog.MAIL_DAEMONS)} or the key-value store not running"),
    Check("spam-filter", "Spam filter and DKIM signing", "inside",
          "rspamd's controller answers /ping on {}:{}, the key-value store answers PING on {}:{}, and a message "
          "From each mail domain's postmaster, handed to rspamd as that user's (rspamc --user), comes back "
          "with a DKIM-Signature of the domain and the current selector".format(*catalog.RSPAMD_CONTROLLER,
                                                                                *catalog.KV_ADDRESS),
          f"{catalog.RSPAMD_VM_LOG} (or journalctl -u rspamd, or the store's unit) says why it does not "
          "answer; an unsigned domain's key "
          f"is {catalog.VM_LAYOUT.dkim_key_dir}/<domain>.<selector>.key (0600 {catalog.RSPAMD_USER}), which "
          "pulumi up re-delivers (set-dkim-keys.sh)",
          fault="rspamd or its key-value store not answering, or mail from a domain leaving unsigned (its DKIM key "
                "gone)"),
    Check("fail2ban", "fail2ban", "inside",
          "fail2ban runs with every jail the bundle enables (postfix-sasl, dovecot, sshd)",
          "pulumi up (apply.sh installs fail2ban-server, python3-systemd and nftables; not the fail2ban "
          "metapackage, whose firewalld would block the mail ports); fail2ban-client status names the jails",
          lab_skip="no systemd, no fail2ban",
          fault="fail2ban stopped, or a jail missing"),
    Check("resolver", "Local resolver", "inside",
          "unbound runs and /etc/resolv.conf sends the host's lookups to it (postscreen's DNSBLs and DANE "
          "need it: Spamhaus refuses the AWS resolver)",
          "systemctl status unbound; pulumi up re-runs use-local-resolver.sh, which keeps the switch only "
          "when unbound answers", lab_skip="the lab has no DNS",
          fault="unbound stopped, or resolv.conf not sending lookups to it"),
    Check("ssh-login", "SSH keys only", "inside",
          "sshd -T says passwordauthentication no, kbdinteractiveauthentication no and permitrootlogin no",
          f"pulumi up restores the sshd drop-in ({catalog.SSHD_DROPIN}, checked by sshd -t); "
          "a drop-in sorted before it or a Match block can override it: sshd -T -C user=<user> shows what wins",
          fault="password, keyboard-interactive or root login turned on (e.g. by a drop-in sorted before ours)"),
    Check("auto-updates", "Unattended updates", "inside",
          "dnf-automatic's timer is active (inactive when autoUpdates is off)",
          "pulumi up re-enables it (systemctl enable --now dnf-automatic.timer), or disables it when autoUpdates "
          "is off", lab_skip="no systemd, no dnf",
          fault="dnf-automatic's timer stopped while autoUpdates is on (or running while it is off)"),
    Check("reboot", "Pending reboot", "inside",
          "needs-restarting -r reports no reboot pending (a warning: an updated kernel or core library "
          "runs only after one)",
          "reboot at a quiet hour (sudo systemctl reboot): senders queue and retry mail meanwhile",
          lab_skip="no dnf",
          fault="an updated kernel or core library waiting for a reboot (warning)"),
    Check("security-updates", "Pending security updates", "inside",
          "no security advisory is pending where the OS publishes advisories (CentOS Stream publishes none: "
          "skipped, not ok)",
          "sudo dnf upgrade --security, or autoUpdates security/all", lab_skip="no dnf",
          fault="security advisories pending, where the OS publishes them (warning)"),
    Check("disk", "Disk space", "inside",
          f"mail, queue and root filesystems below {DISK_WARNING_PERCENT}% (warning) / "
          f"{DISK_ERROR_PERCENT}% (error) use",
          "grow the volume (rootVolumeSize) or remove old mail; postfix defers mail when full",
          fault=f"a filesystem of mail, queue or root {DISK_WARNING_PERCENT}% full (warning) "
                f"or {DISK_ERROR_PERCENT}% (error)"),
    Check("mail-volume", "Mail on its own volume", "inside",
          f"{catalog.VMAIL_HOME} is the mount point of the mail volume ({catalog.VMAIL_FS_TYPE}, label "
          f"{catalog.VMAIL_FS_LABEL}), so snapshots cover the mail and a rebuilt instance keeps it",
          "see the README's restore drill; until it is mounted, mail lands on the root disk, which "
          "snapshots do not cover and a replaced instance loses", lab_skip="the lab's mail is a directory",
          fault="mail on the root disk: the mail volume not mounted"),
    Check("memory", "Memory headroom", "inside",
          f"more than {MEMORY_WARNING_PERCENT}% (warning) / {MEMORY_ERROR_PERCENT}% (error) of "
          "memory available", "use a larger instanceType",
          fault=f"less than {MEMORY_WARNING_PERCENT}% of memory available (warning), "
                f"or {MEMORY_ERROR_PERCENT}% (error)"),
    Check("queue", "Mail queue", "inside",
          f"fewer than {QUEUE_WARNING} (warning) / {QUEUE_ERROR} (error) messages wait in the queue",
          "postqueue -p shows why they wait (blocked port 25, relay refusing, DNS)",
          fault=f"{QUEUE_WARNING} messages waiting in the queue (warning), or {QUEUE_ERROR} (error)"),
    # The self-check's queue checks (issue 17); their thresholds are settings.
    Check("queue-deferred", "Deferred mail", "inside",
          "no more than selfCheckDeferredMax messages wait in the deferred queue (warning)",
          "postqueue -p shows why they wait (a receiver refusing, blocked port 25, the relay); postqueue -f "
          "retries them once the cause is fixed",
          fault="more deferred messages than selfCheckDeferredMax (a receiver or the relay refusing, port 25 "
                "blocked)"),
    Check("queue-age", "Oldest deferred mail", "inside",
          "no deferred message has waited longer than selfCheckDeferredHours (error): postfix "
          "returns it undelivered after 5 days",
          "postqueue -p names the message and why it waits; fix that (often a blocklisting: see the blocklists "
          "check) before postfix gives up on it",
          fault="a message deferred for longer than selfCheckDeferredHours"),
    Check("bounces", "Bounces", "inside",
          "postfix bounced no more than selfCheckBouncesMax messages in the last 24 hours (warning)",
          "journalctl -u postfix --since -24h | grep status=bounced shows the receivers' reasons: a blocklisted "
          "IP, missing DKIM/SPF alignment, or users writing to dead addresses",
          fault="more bounces in a day than selfCheckBouncesMax (mail refused by receivers, or for no one)"),
    Check("cert-renewal", "Certificate renewal", "inside",
          "acme.sh's daily cron job is installed and cron runs",
          "re-run the acme step (pulumi up) and systemctl enable --now crond",
          lab_skip="the lab's certificate is not from acme.sh",
          fault="acme.sh's cron job missing, or cron not running"),
    Check("snapshots", "Snapshots", "inside",
          f"the data volume has a completed snapshot younger than {SNAPSHOT_WARNING_HOURS} h (warning: "
          f"{SNAPSHOT_ERROR_HOURS // 24} days); none is ok while the volume is under "
          f"{FIRST_SNAPSHOT_GRACE_HOURS} h old",
          "install the AWS CLI with credentials that may ec2:DescribeSnapshots and ec2:DescribeVolumes, and "
          "give --volume-id (or an outputs file that names the data volume)", lab_skip="no AWS",
          fault=f"no completed snapshot of the mail volume in {SNAPSHOT_WARNING_HOURS} h (warning) "
                f"or {SNAPSHOT_ERROR_HOURS // 24} days (error)"),
    # The backup MX (secondaryMx): skipped when it is off.
    Check("secondary-smtp", "Secondary MX", "secondary",
          "with secondaryMx, the secondary's port 25 answers with STARTTLS, its certificate names it, chains to a "
          "trusted root and has a third of its lifetime left, TLS 1.0/1.1 are refused, and it refuses relaying",
          "pulumi up re-applies the secondary's bundle and certificate; check its security group and that postfix "
          "runs there (systemctl status postfix)",
          fault="the secondary MX silent on port 25, with a wrong or expired certificate, or relaying for strangers"),
    Check("secondary-queue", "Secondary MX queue", "secondary",
          f"with secondaryMx, nothing waits on the secondary for more than {SECONDARY_QUEUE_WARNING_HOURS} h "
          f"(warning) / {SECONDARY_QUEUE_ERROR_HOURS // 24} days (error, half its "
          f"{catalog.SECONDARY_QUEUE_LIFETIME} lifetime); its queue size and oldest message are shown",
          "postqueue -p on the secondary says why: the primary down, refusing it (4xx), or failing its "
          "certificate check; once fixed, postqueue -f hands the queue over at once",
          fault="mail held on the secondary for hours: the primary unreachable or refusing it"),
)
CHECK_IDS = {c.id: c for c in CHECKS}


def reach(check: str) -> Reach:
    """What `check` has to reach: the DNS resolver (the records, the PTR), the resolver of the
    blocklist lookups, the server's public ports, the web hostnames over HTTPS, a shell on the
    host, or AWS (snapshots)."""
    c = CHECK_IDS[check]
    if check == "snapshots":
        return "aws"
    if c.category == "secondary":
        return "secondary"
    if c.category == "inside":
        return "host"
    if check in ("blocklists", "dbl"):
        return "blocklist-resolver"
    if check.startswith("web-"):
        return "web"
    if check.startswith("dns-") or check == "ptr":
        return "resolver"
    return "ports"
