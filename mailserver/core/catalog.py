"""The facts every other part of the project reads: services and ports, packages, paths.

This module is the one place each of these is written down. The security group, postfix's
master.cf, dovecot's listeners, the lab, the tests and the README all read from here, so a
port opened in the firewall is always a port a daemon listens on, and the other way round.

It imports nothing outside the standard library, so `.ci/run` can ask it for the Debian
package list before any virtual environment exists (`python3 -m mailserver.core.catalog`).
"""

from __future__ import annotations

import dataclasses
import sys
from fractions import Fraction
from pathlib import Path
from typing import Literal, get_args

TlsMode = Literal["starttls", "implicit", "none"]


@dataclasses.dataclass(frozen=True)
class Service:
    """A public TCP service of the mail host."""

    name: str  # stable id, used in resource names and dovecot listener names
    port: int
    daemon: Literal["postfix", "dovecot", "sshd"]
    protocol: Literal["smtp", "imap", "pop3", "sieve", "ssh"]
    tls: TlsMode
    auth: bool  # may clients log in on this port
    description: str
    optional_setting: str | None = None  # config key that switches the service off
    admin_only: bool = False  # reachable only from adminCidrs


# The seed guide opens 25, 110, 143, 465, 993 and 995. We add 587 (RFC 6409 submission;
# many clients and networks prefer it to 465) behind a setting, ManageSieve (RFC 5804) so users
# manage their own filters and vacation replies from their mail client rather than asking the
# operator, and SSH for the admin only.
SERVICES: tuple[Service, ...] = (
    Service("smtp", 25, "postfix", "smtp", "starttls", False,
            "SMTP from other mail servers (MX); STARTTLS offered, no AUTH"),
    Service("submission", 587, "postfix", "smtp", "starttls", True,
            "Message submission; STARTTLS required before AUTH", optional_setting="submission"),
    Service("submissions", 465, "postfix", "smtp", "implicit", True,
            "Message submission over implicit TLS"),
    Service("pop3", 110, "dovecot", "pop3", "starttls", True,
            "POP3; STARTTLS required before login"),
    Service("imap", 143, "dovecot", "imap", "starttls", True,
            "IMAP; STARTTLS required before login"),
    Service("imaps", 993, "dovecot", "imap", "implicit", True, "IMAP over implicit TLS"),
    Service("pop3s", 995, "dovecot", "pop3", "implicit", True, "POP3 over implicit TLS"),
    Service("sieve", 4190, "dovecot", "sieve", "starttls", True,
            "ManageSieve (mail filters, vacation replies); STARTTLS required before login"),
    Service("ssh", 22, "sshd", "ssh", "none", True,
            "SSH for the operator and for pulumi-command", admin_only=True),
)


# The MX port, the one other mail servers deliver to (the doctor's relay and AUTH probes use it).
SMTP_PORT = next(s.port for s in SERVICES if s.name == "smtp")


def enabled_services(flags: dict[str, bool]) -> tuple[Service, ...]:
    """The services switched on by `flags` (setting name -> bool); others always on."""
    return tuple(s for s in SERVICES if s.optional_setting is None or flags.get(s.optional_setting, True))


def public_mail_services(flags: dict[str, bool]) -> tuple[Service, ...]:
    return tuple(s for s in enabled_services(flags) if not s.admin_only)


# --- the secondary MX (secondaryMx) ------------------------------------------------------
#
# A host plays one of two roles. The primary is the mail server: mailboxes, submission,
# IMAP/POP3, DKIM. The secondary is a backup MX in another availability zone that runs postfix
# alone: it accepts mail for our domains (the same recipients, refused at RCPT otherwise) while
# the primary is unreachable, queues it, and relays it to the primary when it is back. Both
# come from one renderer (render.render(..., role=...)).
Role = Literal["primary", "secondary"]
ROLES: tuple[Role, ...] = get_args(Role)
# What the secondary serves: the MX port, and SSH for the operator. No submission, no AUTH, no
# mailbox access: a second place to log in would be a second place to guess passwords at.
SECONDARY_SERVICE_NAMES: tuple[str, ...] = ("smtp", "ssh")
# The daemons each role runs (the doctor's services check asks each of them).
SECONDARY_DAEMONS: tuple[str, ...] = ("postfix",)
# Packages the secondary does not install: it stores no mail, logs no one in and signs nothing,
# and a daemon that is not there can neither run by mistake nor need updates.
SECONDARY_SKIPPED_PACKAGES: tuple[str, ...] = ("dovecot", "dovecot-pigeonhole", "rspamd")
# How long the secondary keeps a message it cannot hand to the primary (postfix
# maximal_queue_lifetime, and bounce_queue_lifetime for its own notices). Postfix's default is
# 5 days; the secondary exists to outlast a long outage of the primary (a lost zone, an
# instance rebuilt from a snapshot over a weekend), so it keeps mail 8 days: a full week of
# outage plus a day's margin for the operator to notice a queue that is not draining. Senders'
# own servers give up after 4 to 5 days (postfix and Exim defaults), so after the first hour
# the mail is safer on the secondary than on the sender's side.
SECONDARY_QUEUE_LIFETIME = "8d"
# The MX preference of each host: lower is tried first (RFC 5321 5.1). The secondary's larger
# number makes it the fallback senders try only when the primary does not answer.
MX_PREFERENCE = 10
SECONDARY_MX_PREFERENCE = 20


def role_services(services: tuple[Service, ...], role: Role) -> tuple[Service, ...]:
    """The services a host of `role` serves, of the enabled `services`."""
    if role == "primary":
        return services
    return tuple(s for s in services if s.name in SECONDARY_SERVICE_NAMES)


# Allowed values of the enumerated settings, each list written once: as a Literal type, which
# Settings' fields carry (so mypy knows them), and the same values at run time via get_args,
# which the settings rules accept. Pulumi.yaml's description of each key names exactly these
# values, in backticks (tests/test_settings.py checks it).
OsName = Literal["centos-stream-9", "centos-stream-10"]  # os (see OS_IMAGES)
OS_NAMES: tuple[OsName, ...] = get_args(OsName)
# acme.sh's home on the host: its account, certificates and cron entry (acme.sh.j2 installs it
# there; the doctor's renewal check and fix name it).
ACME_HOME = "/root/.acme.sh"
AcmeServer = Literal["letsencrypt", "letsencrypt_test"]  # acmeServer (acme.sh's names of the CAs)
ACME_SERVERS: tuple[AcmeServer, ...] = get_args(AcmeServer)
InetProtocols = Literal["ipv4", "ipv6", "all"]  # inetProtocols (postfix inet_protocols)
INET_PROTOCOLS: tuple[InetProtocols, ...] = get_args(InetProtocols)
Relay = Literal["none", "ses"]  # relay: direct delivery, or Amazon SES (see SES_SMTP_HOST)
RELAYS: tuple[Relay, ...] = get_args(Relay)
DmarcPolicy = Literal["none", "quarantine", "reject"]  # dmarcPolicy (RFC 7489 p=)
DMARC_POLICIES: tuple[DmarcPolicy, ...] = get_args(DmarcPolicy)
MtaStsMode = Literal["testing", "enforce"]  # mtaStsMode (RFC 8461 policy mode)
MTA_STS_MODES: tuple[MtaStsMode, ...] = get_args(MtaStsMode)
BareNewline = Literal["normalize", "reject", "no"]  # smtpdForbidBareNewline (postfix smtpd_forbid_bare_newline)
BARE_NEWLINE_MODES: tuple[BareNewline, ...] = get_args(BareNewline)
SmtpTlsLevel = Literal["may", "dane"]  # smtpTlsSecurityLevel (direct delivery; the relay is always secure)
SMTP_TLS_LEVELS: tuple[SmtpTlsLevel, ...] = get_args(SmtpTlsLevel)
AutoUpdateMode = Literal["all", "security", "off"]  # autoUpdates (dnf-automatic, see AUTO_UPDATES)
AUTO_UPDATE_MODES: tuple[AutoUpdateMode, ...] = get_args(AutoUpdateMode)


# TLS floor for every listener. Written as an exclusion list because postfix 3.5 (Stream 9)
# does not understand the ">=TLSv1.2" form that 3.6 introduced.
POSTFIX_TLS_PROTOCOLS = "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1"
DOVECOT_TLS_MIN = "TLSv1.2"
# Cipher suites postfix's server never offers, at every security level (smtpd_tls_exclude_ciphers,
# in postfix's syntax: OpenSSL cipher names or "+"-joined properties). Postfix's cipher grades
# ("medium" on every port) include the anonymous suites (ADH-*, AECDH-*) and drop them only when
# the server asks for client certificates (postconf(5), smtpd_tls_mandatory_ciphers), which ours
# never does: on Debian's OpenSSL 3, ports 25, 587 and 465 all completed anonymous handshakes.
# They authenticate nobody, so a man in the middle reads everything. The others are gone from
# OpenSSL 3 or below its security level today, and named so that a lower level (EL's LEGACY
# crypto policy, another OpenSSL build) cannot bring them back: no encryption (eNULL), export
# grade, DES, 3DES (64-bit blocks: SWEET32), RC4, MD5. kRSA, RSA key transport, has no forward
# secrecy: a key stolen later decrypts every recorded session (our certificates are ECDSA, which
# cannot do kRSA; this guards a switch to RSA). Dovecot's own list (the lab) leaves all of these
# out already; EL's PROFILE=SYSTEM (dovecot on the VM) all but kRSA, which needs an RSA certificate.
POSTFIX_TLS_EXCLUDE_CIPHERS: tuple[str, ...] = ("aNULL", "eNULL", "EXPORT", "DES", "3DES", "RC4", "MD5", "kRSA")

# EL's system-wide crypto policy (update-crypto-policies(8)) reaches OpenSSL applications in
# two ways: openssl.cnf, which sets the protocol floor, security level, groups and signature
# algorithms for every application that loads it, and the cipher string "PROFILE=SYSTEM",
# which only EL's OpenSSL understands (Fedora/CentOS openssl patch "Add support for
# PROFILE=SYSTEM system default cipherlist"; Debian's OpenSSL rejects it: "no cipher match").
#
# Postfix: EL's package sets no cipher parameter (Fedora/CentOS postfix-3.x-config.patch only
# adds the certificate, CA and security levels), so postfix keeps its own cipher grades and
# follows the policy through openssl.cnf, which tls_config_file = default loads (postconf(5);
# "none", which postconf(5) recommends, would cut postfix off from the policy). Fedora's
# crypto-policy packaging guideline names postfix as an application that may keep its own
# cipher settings. Postfix 3.5.20, 3.7.6 and 3.8.1 introduced the parameter: all our targets.
POSTFIX_TLS_CONFIG_FILE = "default"
# Dovecot: its built-in ssl_cipher_list overrides the policy, so EL's package sets
# PROFILE=SYSTEM in conf.d/10-ssl.conf (Fedora/CentOS dovecot-2.0-defaultconfig.patch), which
# our dovecot.conf, written whole, replaces. The VM sets it again; the lab keeps dovecot's own.
DOVECOT_EL_CIPHER_LIST = "PROFILE=SYSTEM"
# Diffie-Hellman parameters for dovecot's ssl_dh (the VM's). Dovecot 2.3 has none built in:
# without ssl_dh it starts without a word (unless a 2.2-era ssl-parameters.dat lies in
# /var/lib/dovecot), then fails each handshake that negotiates finite-field DHE with
# "Diffie-Hellman key exchange requested, but no DH parameters provided" (dovecot/core 2.3.16,
# src/lib-ssl-iostream/iostream-openssl-context.c and src/config/old-set-parser.c). DHE needs
# an RSA certificate and ours are ECDSA, so today this guards a later switch to RSA. EL's
# package provides no file: Fedora's dovecot-2.0-defaultconfig.patch, which EL's 10-ssl.conf
# comes from, leaves upstream's ssl_dh line commented, and Fedora's spec stopped generating
# ssl-params in 2.3.2.1-3; Red Hat's RHEL 9 "Deploying mail servers" guide adds DH parameters
# as an optional step. We write the RFC 7919 group rather than generate primes: instant, and
# 3072 bits pass even the FUTURE policy's security level 3, where OpenSSL refuses a 2048-bit
# group ("dh key too small") and dovecot would then fail every TLS connection.
DH_GROUP = "ffdhe3072"

# Users and ids on the host. vmail owns every mailbox; a fixed uid keeps a re-attached data
# volume readable by a rebuilt instance.
VMAIL_USER = "vmail"
VMAIL_UID = 5000
VMAIL_HOME = "/var/vmail"
# The mail data volume (EBS) that holds VMAIL_HOME. The filesystem carries this label and is
# mounted by UUID; xfs is EL's default filesystem. Device name as EC2's API wants it; on Nitro
# instances the kernel shows it as /dev/nvmeXn1 in no stable order, so the host finds it by
# the volume id under EBS_BY_ID_PREFIX instead.
VMAIL_FS_LABEL = "vmail"
VMAIL_FS_TYPE = "xfs"
DATA_VOLUME_DEVICE_NAME = "/dev/sdf"
EBS_BY_ID_PREFIX = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_"
# gp3 holds 1 GiB to 16 TiB.
DATA_VOLUME_MAX_GIB = 16384
# Daily snapshots (Data Lifecycle Manager) select volumes by this tag key; its value names
# the stack (storage.snapshot_tags), so two stacks in one account never snapshot, or expire,
# each other's volumes.
SNAPSHOT_TAG_KEY = "mailserver-snapshots"
SNAPSHOT_TIME_UTC = "03:00"
SNAPSHOT_RETENTION_MAX = 1000  # DLM's limit for a count-based retain rule
# Regions a snapshot copy may go to (snapshotCopyRegion): the commercial partition's, which
# is the one the stack runs in (GovCloud and China are other partitions, other accounts).
# Source: the AWS General Reference, "AWS Regions" (docs.aws.amazon.com/global-infrastructure/
# latest/regions/aws-regions.html), as of 2025. A region AWS opens later is refused until it
# is added here: a typo must fail at `pulumi preview`, not as DLM's copy failing every night.
AWS_REGIONS: tuple[str, ...] = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "ca-west-1", "mx-central-1", "sa-east-1",
    "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1",
    "il-central-1", "me-south-1", "me-central-1", "af-south-1", "ap-east-1", "ap-east-2", "ap-south-1", "ap-south-2",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
)
# Daemons that read or write VMAIL_HOME: they must not start while the volume is missing,
# or they would write mail onto the root disk, under the mount point.
VMAIL_SERVICES: tuple[str, ...] = ("postfix", "dovecot")
# Every daemon the mail host runs for mail: the doctor's services check asks each of them
# (mail_daemons adds the key-value store, whose name depends on the OS).
MAIL_DAEMONS: tuple[str, ...] = (*VMAIL_SERVICES, "rspamd")
PASSWORD_SCHEME = "SHA512-CRYPT"
# Dovecot's sockets that postfix talks to, relative to postfix's queue directory (where
# postfix's chroot-safe private/ lives): LMTP delivery and SMTP AUTH. main.cf names them that
# way, dovecot.conf under the queue directory of the Layout.
LMTP_SOCKET = "private/dovecot-lmtp"
AUTH_SOCKET = "private/auth"
# --- the spam filter and DKIM signer: rspamd, and its key-value store -------------------
#
# rspamd runs as this user in both rspamd.com's RPM (its unit's User=) and Debian's package.
RSPAMD_USER = "_rspamd"
# Who may talk to rspamd over its sockets (Layout.milter_socket, Layout.learn_socket): members
# of rspamd's own group. rspamd runs unprivileged under the RPM's unit, so it can give its
# sockets no group but its own; postfix (the milter) joins it (apply.sh), and dovecot's IMAP
# processes take it for IMAPSieve's learning (mail_access_groups). What membership gives: the
# milter (mail scanned and, for an authenticated user, signed) and the controller without a
# password on the learning socket (rspamd trusts every unix-socket client): learning, and also
# changing scores and actions at run time. So it is as good as rspamd's admin for whoever runs
# code as postfix or in an IMAP session. The DKIM keys (0600) and the web UI password (0400)
# are rspamd's alone. Separate groups for the two sockets (a unit drop-in with
# SupplementaryGroups for rspamd) would narrow this; not done yet.
MILTER_GROUP = RSPAMD_USER
MILTER_GROUP_MEMBERS: tuple[str, ...] = ("postfix",)
# The controller (web UI, statistics) on loopback only, behind the rspamdPassword secret; an
# operator reaches it through an SSH tunnel (docs/operations.md).
RSPAMD_CONTROLLER = ("127.0.0.1", 11334)


@dataclasses.dataclass(frozen=True)
class KvStore:
    """The Redis-protocol store rspamd keeps its Bayes statistics, greylisting and caches in."""

    package: str
    service: str
    conf: str
    user: str
    dir: str  # where it saves its data (the package's)


# Stream 9 ships Redis 6.2 in AppStream; Stream 10 ships no Redis at all but Valkey 8, its
# fork, speaking the same protocol (Red Hat: no valkey-compat-redis in RHEL 10, RHEL-51457;
# cockpit PR #6702). Both read one config file; ours replaces the package's whole (apply.sh).
# Unverified until a live host: the unit names and Valkey's user (Fedora's packaging).
KV_STORES: dict[OsName, KvStore] = {
    "centos-stream-9": KvStore("redis", "redis", "/etc/redis/redis.conf", "redis", "/var/lib/redis"),
    "centos-stream-10": KvStore("valkey", "valkey", "/etc/valkey/valkey.conf", "valkey", "/var/lib/valkey"),
}
# On loopback TCP, which both rspamd 3.4 and 4.x and both stores take (rspamd's redis servers
# also take a socket path, but the stores' unit files differ in where they may create one).
KV_ADDRESS = ("127.0.0.1", 6379)
# The store's memory cap. Bayes tokens for a small organisation take a few MB (the lab's test
# corpus: 1.3 MB); 64 MB bounds it on a 1 GiB t4g.micro, and volatile-ttl evicts what rspamd
# gave an expiry (greylisting, caches) first, never the statistics, which carry none.
KV_MAXMEMORY = "64mb"


def mail_daemons(os_name: OsName) -> tuple[str, ...]:
    """The daemons of a primary mail host on `os_name` (the doctor's services check)."""
    return (*MAIL_DAEMONS, KV_STORES[os_name].service)


# The lab has no service manager: the doctor's services check asks its rspamd and its key-value
# store by their pid files. rspamd's is its own default ($RUNDIR/rspamd.pid: the package's
# options.inc), in Layout.rspamd_run_dir; the store's is what kv-store.conf.j2 names in the lab,
# in Layout.kv_dir.
RSPAMD_PID_FILE = "rspamd.pid"
KV_PID_FILE = "kv-store.pid"


@dataclasses.dataclass(frozen=True)
class PackageRepo:
    """A package repository of a vendor, trusted only under its pinned signing key."""

    name: str
    baseurl: str  # dnf expands $basearch
    key_url: str
    fingerprint: str  # of the key that signs the packages and the repository metadata


# rspamd is in neither EL's repositories nor EPEL: rspamd.com publishes stable builds for
# CentOS 8, 9 and 10, x86_64 and aarch64 (its downloads page; the repo file it documents,
# https://rspamd.com/rpm-stable/centos-N/rspamd.repo, has gpgcheck=1 and repo_gpgcheck=1). Its
# URLs are plain http: what protects them is the signature, so spam-packages.sh imports the key
# only if its fingerprint is this one. The fingerprint is the KEY that rspamd's build scripts
# sign the RPMs, the RPM repository metadata and the apt repositories with
# (rspamd/rspamd-build-scripts), and the one dnf showed importing rpm/rspamd.asc (rspamd issue
# #5861); the download page itself publishes none.
def _rspamd_repo(release: int) -> PackageRepo:
    return PackageRepo("rspamd", f"http://rspamd.com/rpm-stable/centos-{release}/$basearch",
                       "https://rspamd.com/rpm/rspamd.asc", "3FA347D5E599BE4595CA2576FFA232EDBF21E25E")


RSPAMD_REPO: dict[OsName, PackageRepo] = {"centos-stream-9": _rspamd_repo(9), "centos-stream-10": _rspamd_repo(10)}
RSPAMD_PACKAGES: tuple[str, ...] = ("rspamd",)
# The package's main file, which reads ours from $LOCAL_CONFDIR/local.d (the lab points
# LOCAL_CONFDIR and the state directories under its root with rspamd's --var).
RSPAMD_MAIN_CONF = "/etc/rspamd/rspamd.conf"
# The controller's password file in local.d (set-rspamd-password.sh; never in the bundle).
RSPAMD_PASSWORD_FILE = "controller-password.inc"
# Where the package's rspamd logs (its rspamd.conf: logging type file, $LOGDIR/rspamd.log; the
# RPM's LOGDIR is /var/log/rspamd): scans, refusals and signing errors are there, not in the
# journal, which has only what the unit itself says (a start that failed).
RSPAMD_VM_LOG = "/var/log/rspamd/rspamd.log"
# rspamd's own greylisting threshold (its actions.conf); below spamJunkScore where that is lower.
GREYLIST_SCORE = 4
# SELinux on EL: no policy module ships with rspamd (rspamd.com's RPM has none, Fedora's
# selinux-policy has no rspamd module), so rspamd runs unconfined (unconfined_service_t) and its
# sockets in /run/rspamd are var_run_t. postfix.te lets postfix_smtpd_t and postfix_cleanup_t
# reach only the milter types (milter_stream_connect_all), and dovecot's processes (dovecot_t;
# IMAPSieve's pipe runs rspamc in them) nothing of rspamd's. This module allows exactly those
# connections, and no other access to var_run_t: spam-packages.sh compiles it with checkmodule
# (package checkpolicy) and loads it. Read in fedora-selinux/selinux-policy (c9s, c10s, 2024-10);
# unverified on a live host until the first deploy (docs/operations.md).
RSPAMD_SELINUX_MODULE = "mailserver_rspamd"
RSPAMD_SELINUX_CLIENTS: tuple[str, ...] = ("postfix_smtpd_t", "postfix_cleanup_t", "dovecot_t")
SELINUX_TOOLS: tuple[str, ...] = ("checkpolicy",)

DKIM_KEY_BITS = 2048  # EL's dovecot lacks libsodium: no ARGON2 there.
# The header fields rspamd signs (dkim_signing sign_headers): what a reader sees and a forger would change.
# Who wrote it, to whom, whom a reply goes to, what it says and when (RFC 5322's originator,
# destination, identification and informational fields), and how the body is to be read (the
# MIME fields: change Content-Type or Content-Transfer-Encoding and the same signed bytes show
# another text). The list replaces rspamd's default (which adds List-*, Resent-* and others);
# Sender is kept because clients show it ("on behalf of").
DKIM_SIGNED_HEADERS: tuple[str, ...] = (
    "From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
)
# Oversigned (the "(o)" prefix in sign_headers): named in the signature once more than they occur, so a copy added
# anywhere later, or one added where the message had none, breaks the signature. A verifier checks
# the last copy of a field (RFC 6376 5.4.2) while a mail client may show the first: without this,
# a second From or Subject added above the signed one would still verify and be what the reader
# sees (RFC 6376 8.15). Every signed field may occur at most once (RFC 5322 3.6, RFC 2045), so a
# second copy is never legitimate and every one is oversigned.
DKIM_OVERSIGNED_HEADERS: tuple[str, ...] = DKIM_SIGNED_HEADERS

# acme.sh: a pinned release, so a new upstream version never changes a running server unseen.
# 3.1.3 (tag commit 76d1377f, 2026-04-28) is the newest release and the first whose default
# renewal (30 days after issue, down from 60) and --days suit Let's Encrypt's shorter lifetimes
# (certificates.acme_renewal_days). Pinned by version and by each file's sha256: acme.sh.j2 fetches the
# two files it needs and refuses both unless every sum matches. The sums are those of the git
# blobs at the tag (`git show 3.1.3:acme.sh | sha256sum`), which is what raw.githubusercontent.com
# serves for it; GitHub's archive tarballs are not byte-stable, so the release's tarball is not used.
# `acme.sh --install` copies ./acme.sh and whatever of ./dnsapi, ./deploy and ./notify sits next to
# it (acme.sh 3.1.3, install(): `cp "$PROJECT_ENTRY"` and the `for subf in $_SUB_FOLDERS` loop), so
# acme.sh plus the one DNS hook we use (DNS-01 through Cloudflare) is a complete install.
ACME_SH_VERSION = "3.1.3"


@dataclasses.dataclass(frozen=True)
class PinnedFile:
    """One file of a pinned release: where the installer expects it, where it comes from, its sum."""

    path: str  # relative to the release's top directory
    url: str
    sha256: str


def _acme_sh_file(path: str, sha256: str) -> PinnedFile:
    return PinnedFile(path, f"https://raw.githubusercontent.com/acmesh-official/acme.sh/{ACME_SH_VERSION}/{path}",
                      sha256)


ACME_SH_FILES: tuple[PinnedFile, ...] = (
    _acme_sh_file("acme.sh", "66171c3113f2e36569572edb1656962d63c72862a57e03cbd2a066adaad5e588"),
    _acme_sh_file("dnsapi/dns_cf.sh", "9628ee8238cb3f9cfa1b1a985c0e9593436a3e4f8a9d65a6f775b981be9e76c8"),
)
# Let's Encrypt's certificate lifetimes in days: today's, from 2027-02-10 and from 2028-02-16.
CERT_LIFETIMES_DAYS: tuple[int, ...] = (90, 64, 45)
# A certificate is renewed while more than this share of its lifetime is left (the renewal
# schedule guarantees it for every lifetime above); the doctor warns once less is left.
CERT_RENEW_KEEP = Fraction(1, 3)
# How many of acme.sh's daily cron runs fall before that point: one may fail (a Cloudflare or
# Let's Encrypt hiccup) and the next still renews in time.
ACME_RENEWAL_ATTEMPTS = 2

# Instance families on the Xen hypervisor (AWS's "previous generation" and a few older
# current ones). They show EBS volumes as /dev/xvdX, without the NVMe by-id link that names the
# mail volume, so prepare-volume.sh would wait for it in vain. Their .metal sizes are Nitro.
XEN_FAMILIES: frozenset[str] = frozenset({
    "t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "r3", "r4", "x1", "x1e", "d2", "h1",
    "i2", "i3", "g2", "g3", "g3s", "p2", "p3", "f1", "cc2", "cr1", "hs1",
})

# Supported images. Owner 125523088429 publishes the official CentOS Stream AMIs, named
# "CentOS Stream 9 x86_64 <date>" and "CentOS Stream 9 aarch64 <date>" (the same for 10): the
# *name* says aarch64 where EC2's architecture attribute says arm64. Source: the CentOS
# project's AWS image list (centos.org/download/aws-images) and public describe-images output,
# e.g. Terraform and AWS-CDK examples filtering name="CentOS Stream 9 aarch64*" together with
# architecture=arm64.
CENTOS_AMI_OWNER = "125523088429"
OS_IMAGES: dict[OsName, str] = {
    "centos-stream-9": "CentOS Stream 9 {arch} *",
    "centos-stream-10": "CentOS Stream 10 {arch} *",
}
IMAGE_NAME_ARCH: dict[str, str] = {"arm64": "aarch64", "x86_64": "x86_64"}


def image_name_pattern(os_name: OsName, architecture: str) -> str:
    """EC2's name filter (wildcards * and ?) for the official images of `os_name` built for
    `architecture` (EC2's spelling: arm64 or x86_64)."""
    return OS_IMAGES[os_name].format(arch=IMAGE_NAME_ARCH[architecture])


# Optional outbound relay (setting `relay`). EC2 blocks outbound port 25 until AWS lifts the
# limit; Amazon SES's SMTP endpoint listens on 587 (STARTTLS), which EC2 never blocks.
SES_SMTP_HOST = "email-smtp.{region}.amazonaws.com"
SES_SMTP_PORT = 587
# The OS's CA bundle on EL 9 and 10 (ca-certificates; a link into /etc/pki/ca-trust/extracted,
# which update-ca-trust rebuilds): postfix verifies the relay's certificate against it (Layout).
EL_CA_BUNDLE = "/etc/pki/tls/certs/ca-bundle.crt"
# Custom MAIL FROM (the bounce address SES uses): a subdomain of each mail domain, so SPF
# passes for a name that aligns with the From domain (DMARC relaxed alignment).
SES_MAIL_FROM_LABEL = "bounce"
SES_FEEDBACK_MX = "feedback-smtp.{region}.amazonses.com"
SES_MAIL_FROM_SPF = "v=spf1 include:amazonses.com -all"
SES_DKIM_TARGET = "{token}.dkim.amazonses.com"
SES_DKIM_TOKENS = 3  # Easy DKIM publishes three CNAMEs per domain
SASL_CLIENT_PACKAGE = "cyrus-sasl-plain"

# Packages on the mail host, by the repository they come from. The distribution's own
# (BaseOS/AppStream) are installed first and on their own: a problem with EPEL (a slow mirror,
# a missing package) must never leave postfix and dovecot uninstalled. postfix-lmdb because
# Stream 10 has no Berkeley DB (hash: maps); the same lmdb: maps then work on 9 and 10 alike.
# cronie runs acme.sh's renewal.
EL_PACKAGES: tuple[str, ...] = (
    "postfix", "postfix-lmdb", "dovecot", "dovecot-pigeonhole", "cronie", "tar",
    "openssl", "policycoreutils-python-utils", "chkconfig",
    # The PLAIN and LOGIN mechanisms of postfix's SASL *client*: without them postfix cannot
    # log in to the SES relay ("no mechanism available"). Installed even with relay none,
    # so turning the relay on later needs no new instance.
    SASL_CLIENT_PACKAGE,
    # mkfs.xfs and xfs_growfs for the mail volume (prepare-volume.sh); on the cloud images
    # already, named so a slimmer image cannot leave the volume unformatted.
    "xfsprogs",
    # fail2ban bans through its own nftables table; python3-systemd lets it read the journal.
    "nftables", "python3-systemd",
    # A local validating, caching resolver: Spamhaus refuses DNSBL queries that arrive through
    # public or AWS resolvers, and DANE needs DNSSEC answers the host can trust.
    "unbound",
    # dnf's versionlock plugin: unattended updates stay within postfix's and dovecot's
    # installed major.minor (VERSION_LOCKS, lock-versions.sh).
    "python3-dnf-plugin-versionlock",
)
# From EPEL only. Brute force: fail2ban-server, not the fail2ban metapackage, whose
# fail2ban-firewalld part pulls in firewalld and makes firewalld-rich-rules the ban action;
# the cloud image has no firewalld, and the security group is the firewall. (rspamd, which
# signs and filters, comes from rspamd's own repository: RSPAMD_REPO.)
EPEL_PACKAGES: tuple[str, ...] = ("fail2ban-server",)
# Commands installed only when missing, with the package that brings them. EL9 images ship
# curl-minimal, which provides the curl command and conflicts with the curl package: asking
# dnf for "curl" there is a conflict error, on every apply.
EL_COMMANDS: dict[str, str] = {"curl": "curl"}
# How each OS gets EPEL, tried in order: a package name from the distribution's repositories,
# then the EPEL project's own release RPM. Stream 9 has epel-release in extras-common; on
# Stream 10 epel-release from the distribution's repositories is reported not to install, and
# EPEL's instructions for CentOS Stream 10 install the URL directly
# (docs.fedoraproject.org/en-US/epel/getting-started). Both need CRB enabled.
EPEL_RELEASE: dict[OsName, tuple[str, ...]] = {
    "centos-stream-9": ("epel-release", "https://dl.fedoraproject.org/pub/epel/epel-release-latest-9.noarch.rpm"),
    "centos-stream-10": ("https://dl.fedoraproject.org/pub/epel/epel-release-latest-10.noarch.rpm",),
}
EL_CRB_REPO = "crb"
# dnf config-manager, which enables CRB.
EL_DNF_PLUGINS = "dnf-plugins-core"
# sendmail is removed, as the seed guide does: two MTAs fight over port 25 and /usr/sbin/sendmail.
EL_REMOVED_PACKAGES: tuple[str, ...] = ("sendmail",)
# A download that fails (a mirror timing out, or the public address changing while the Elastic
# IP is associated during first boot) is retried this many times, the pause growing by
# PACKAGE_RETRY_PAUSE seconds each time.
PACKAGE_TRIES = 4
PACKAGE_RETRY_PAUSE = 15


@dataclasses.dataclass(frozen=True)
class AutoUpdates:
    """How one OS installs updates unattended (setting autoUpdates)."""

    package: str
    conf: str
    timer: str
    # Whether the OS's repositories publish security advisories (updateinfo), so that
    # `dnf updateinfo list --security` can count pending security updates. CentOS Stream
    # publishes none: there the doctor's security-updates check says "not published".
    advisories: bool = False


# Both Stream 9 and 10 run dnf 4 (RHEL 10 documents the dnf-automatic package and its
# /etc/dnf/automatic.conf); a dnf5 system would need dnf5-plugin-automatic,
# /etc/dnf/dnf5-plugins/automatic.conf and dnf5-automatic.timer: one more row here.
AUTO_UPDATES: dict[OsName, AutoUpdates] = {
    "centos-stream-9": AutoUpdates("dnf-automatic", "/etc/dnf/automatic.conf", "dnf-automatic.timer"),
    "centos-stream-10": AutoUpdates("dnf-automatic", "/etc/dnf/automatic.conf", "dnf-automatic.timer"),
}


# Domain blocklists the doctor looks every mail domain up in (<domain>.<zone>, an A lookup through
# the blocklists' resolver, like the IP ones of the blocklists setting). Spamhaus's DBL answers
# 127.0.1.x for a listed domain and 127.255.255.x when it refuses the resolver (public resolvers,
# over quota): a refusal, not a listing.
DOMAIN_BLOCKLISTS: tuple[str, ...] = ("dbl.spamhaus.org",)


# Unattended updates (dnf-automatic) never leave the installed major.minor of these: dovecot
# 2.4 reads none of our 2.3 configuration (apply.sh refuses it), and a new postfix minor
# changes defaults and compatibility levels. Each group's first package decides the version;
# the others are built from the same source package and require its exact version, so they
# are locked to the same series (a lock on postfix alone would leave dnf unable to update
# postfix-lmdb, and dnf-automatic's whole run would fail on it). lock-versions.sh writes one
# "<name>-<major>.<minor>.*" entry per package with `dnf versionlock add --raw` (dnf-plugins-
# core doc/versionlock.rst: --raw keeps the pattern instead of resolving it to one NEVRA). An
# entry without an epoch matches any epoch (libdnf Query::addFilter(HyNevra) filters the
# epoch only when one is given; EL's postfix has epoch 2, dovecot epoch 1).
VERSION_LOCKS: tuple[tuple[str, ...], ...] = (
    ("postfix", "postfix-lmdb"),
    ("dovecot", "dovecot-pigeonhole"),
    # rspamd.com publishes new majors into the same repository: one that refuses our local.d,
    # installed at night, would stop all mail (milter_default_action = tempfail) unseen.
    ("rspamd",),
)
# The plugin's lock list (locklist in /etc/dnf/plugins/versionlock.conf, as the package ships it).
VERSIONLOCK_LIST = "/etc/dnf/plugins/versionlock.list"


def _for_role(packages: tuple[str, ...], role: Role) -> tuple[str, ...]:
    return packages if role == "primary" else tuple(p for p in packages if p not in SECONDARY_SKIPPED_PACKAGES)


def el_packages(os_name: OsName, role: Role = "primary") -> tuple[str, ...]:
    """The distribution's packages the host of `os_name` needs: the common list plus its update tool."""
    return _for_role((*EL_PACKAGES, AUTO_UPDATES[os_name].package), role)


def epel_packages(role: Role = "primary") -> tuple[str, ...]:
    return _for_role(EPEL_PACKAGES, role)


def all_el_packages(os_name: OsName, role: Role = "primary") -> tuple[str, ...]:
    """Every package the host must end up with, EPEL's included."""
    return (*el_packages(os_name, role), *epel_packages(role))


def version_locks(role: Role = "primary") -> tuple[tuple[str, ...], ...]:
    """The VERSION_LOCKS groups of the packages the host of `role` installs."""
    return tuple(g for g in VERSION_LOCKS if _for_role(g, role) == g)


# Host files outside the mail daemons' directories (the VM only; the lab never touches the
# machine's own sshd, resolver or package manager). The sshd drop-in sorts before the
# image's 50-redhat.conf and cloud-init's 50-cloud-init.conf: sshd keeps the first value it
# reads, so ours win.
SSHD_DROPIN = "/etc/ssh/sshd_config.d/01-mailserver.conf"
# The host key pulumi-command pins, installed at first boot (mailserver/core/hostkey.py);
# the public half is this path with .pub.
SSH_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
# The programs that log sshd's authentication failures, and their unit. OpenSSH 9.8 moved
# authentication into sshd-session (RHEL 10 ships 9.9), older ones log it as sshd. fail2ban's
# stock sshd filter, in Debian's 1.0.2 and EPEL's 1.1.0 alike, knows only sshd (fail2ban issue
# 3747; fixed upstream after 1.1.0 by commits 2fed408c and 54c0effc), so the jail says both.
SSHD_UNIT = "sshd.service"
SSHD_COMMANDS: tuple[str, ...] = ("sshd", "sshd-session")
UNBOUND_CONF = "/etc/unbound/unbound.conf"
# resolv.conf names unbound alone: if it dies, acme.sh, dnf and outbound mail lose DNS
# until someone logs in, so systemd restarts it.
UNBOUND_DROPIN = "/etc/systemd/system/unbound.service.d/mailserver.conf"
UNBOUND_ROOT_KEY = "/var/lib/unbound/root.key"
NM_DNS_CONF = "/etc/NetworkManager/conf.d/90-mailserver-dns.conf"
# The daily self-check (mailserver/doctor/selfcheck.py): a timer and the service it starts.
SELFCHECK_UNIT = "mailserver-selfcheck"
SELFCHECK_SERVICE = f"/etc/systemd/system/{SELFCHECK_UNIT}.service"
SELFCHECK_TIMER = f"/etc/systemd/system/{SELFCHECK_UNIT}.timer"
SELFCHECK_TIME_UTC = "06:00"  # in the morning in Europe, after DLM's snapshot; spread by up to 30 minutes
# What the self-check imports besides the standard library, from the distribution, for the
# host's own python3 (the modules the doctor needs: DNS, certificates, the settings' YAML, and
# Jinja2, which core/web.py imports). In AppStream/BaseOS of Stream 9 and 10 (python3-dns is
# what FreeIPA depends on). Installed by apply.sh, not user-data, which is near EC2's 16 KB.
SELFCHECK_PACKAGES: tuple[str, ...] = ("python3-dns", "python3-cryptography", "python3-pyyaml", "python3-jinja2")
RESOLV_CONF = "/etc/resolv.conf"
RESOLVER = "127.0.0.1"
# A name apply.sh resolves through the new resolver before it keeps it (acme.sh needs it).
RESOLVER_PROBE = "acme-v02.api.letsencrypt.org"

# Debian packages the lab and the test suite need (real daemons and real validators).
DEBIAN_PACKAGES: tuple[str, ...] = (
    "postfix", "postfix-lmdb", "dovecot-core", "dovecot-imapd", "dovecot-pop3d", "dovecot-lmtpd",
    "dovecot-sieve", "cloud-init", "shellcheck", "nodejs", "strace", "openssl", "iproute2", "util-linux",
    # ManageSieve (port 4190): a package apart on Debian; on EL it comes with dovecot-pigeonhole.
    "dovecot-managesieved",
    "python3-venv", "ca-certificates",
    # The spam filter and DKIM signer (Debian's rspamd 3.4; EL gets rspamd.com's build), and the
    # key-value store its statistics live in.
    "rspamd", "redis-server",
    # Debian's postfix SASL client mechanisms (the lab relays to a stand-in that wants AUTH).
    # Only a Recommends of libsasl2-2, and setup.sh installs without recommends.
    "libsasl2-modules",
    # unbound: the doctor's lab tests serve the planned records (and a fake blocklist) with it
    # inside the lab's namespace, and unbound-checkconf checks the host's rendered resolver.
    # nftables: fail2ban bans inside the lab's namespace, and the doctor's tests block a port.
    "unbound", "nftables", "fail2ban",
    # sshd -t checks the rendered sshd drop-in (sshd is never started).
    "openssh-server",
    # mkfs.xfs and xfs_growfs: the test of prepare-volume.sh formats and grows loop devices.
    "xfsprogs",
    # testssl (Debian's testssl.sh) scans every TLS port of the lab (tests/lab/test_tls_scan.py).
    "testssl.sh",
    # systemd-analyze verify judges the self-check's timer and service (nothing is started).
    "systemd",
    # checkmodule and semodule_package compile the SELinux module spam-packages.sh loads on EL;
    # gpg reads the fingerprint of the key it is served (tests/tools/test_spam_packages.py).
    "checkpolicy", "semodule-utils", "gpg",
)

# Outbound traffic the host needs: SMTP to other MXes, DNS, HTTP(S) for packages and ACME, NTP.
EGRESS: tuple[tuple[str, int, int], ...] = (
    ("tcp", 25, 25), ("tcp", 587, 587), ("tcp", 465, 465), ("udp", 53, 53), ("tcp", 53, 53),
    ("tcp", 80, 80), ("tcp", 443, 443), ("udp", 123, 123),
    # rspamd's fuzzy hashes: each message's hashes are looked up in rspamd.com's shared storage
    # of reported spam (fuzzy_check, on by default in every rspamd), over UDP 11335.
    ("udp", 11335, 11335),
)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where things live on a host. VM_LAYOUT is the EC2 VM; the lab replaces a few fields."""

    postfix_dir: str = "/etc/postfix"
    dovecot_dir: str = "/etc/dovecot"
    dovecot_base_dir: str = "/run/dovecot"
    queue_dir: str = "/var/spool/postfix"
    data_dir: str = "/var/lib/postfix"
    vmail_dir: str = VMAIL_HOME
    vmail_uid: int = VMAIL_UID
    vmail_gid: int = VMAIL_UID
    # Certificates live where SELinux labels them cert_t, readable by both daemons.
    cert_file: str = "/etc/pki/tls/certs/mailserver.fullchain.pem"
    key_file: str = "/etc/pki/tls/private/mailserver.key"
    state_dir: str = "/var/lib/mailserver"
    # rspamd: our files go to local.d/ under this directory (the package's rspamd.conf reads
    # them over its own defaults, which stay where the package put them), its state (Bayes
    # is in the key-value store; the hyperscan cache, history) under the db directory.
    rspamd_local_dir: str = "/etc/rspamd"
    rspamd_db_dir: str = "/var/lib/rspamd"
    rspamd_run_dir: str = "/run/rspamd"
    # Empty: the package's (a file under /var/log/rspamd on EL). The lab's goes under its root.
    rspamd_log_dir: str = ""
    # The DKIM private keys, "<domain>.<selector>.key", readable by rspamd alone.
    dkim_key_dir: str = "/var/lib/rspamd/dkim"
    # The milter's socket (postfix's smtpd_milters, rspamd's proxy worker's bind_socket): one
    # path for both. rspamd creates it 0660, owner rspamd, group postfix (MILTER_GROUP), so the
    # postfix daemons, and no other user of the host, may hand it mail or ask for a signature.
    # /run/rspamd is the package unit's RuntimeDirectory. SELinux on EL: see RSPAMD_SELINUX.
    milter_socket: str = "/run/rspamd/milter.sock"
    # The controller's second door, for learning: a socket 0660 of group vmail, which dovecot's
    # IMAPSieve scripts run as. rspamd trusts a unix-socket client without the password
    # (checked with Debian's 3.4: learn_spam over it succeeds, over TCP it is 401), so the
    # password never has to be readable by the mail user; TCP (the web UI) needs it.
    learn_socket: str = "/run/rspamd/learn.sock"
    # The programs dovecot's IMAPSieve scripts pipe mail to (rspamd learning). Under
    # /usr/libexec, which SELinux labels bin_t (corecommands.fc "/usr/libexec(/.*)?"), which
    # dovecot_t may execute (dovecot.te: corecmd_exec_bin). Not /usr/local/libexec: no policy
    # rule names it, so it is usr_t there, which dovecot may not execute, and every learning
    # pipe would be denied while the move itself succeeds. Not /etc/dovecot: dovecot_etc_t.
    sieve_bin_dir: str = "/usr/libexec/mailserver/sieve"
    # rspamd's compiled hyperscan databases. Empty: the package's (its db directory). Each lab
    # shares one beside its root: rspamd checks a cached database against the regexps it was
    # built from, and compiling them anew costs every lab start about 10 s of CPU.
    rspamd_hs_cache_dir: str = ""
    # The key-value store's configuration: empty means the OS's (KV_STORES); the lab's own.
    kv_conf: str = ""
    kv_dir: str = ""
    # sshd's main file (the package's; it includes sshd_config.d/*.conf first) and our drop-in
    # there. The lab checks the same drop-in with `sshd -t`/`sshd -T` under its own root,
    # behind a stand-in for EL's main file, and never touches the machine's own sshd.
    sshd_config: str = "/etc/ssh/sshd_config"
    sshd_dropin: str = SSHD_DROPIN
    # Empty: log to syslog/journald (the VM). The lab has no syslog and sets files.
    postfix_log: str = ""
    dovecot_log: str = ""
    # Which host this layout describes: the EC2 VM (systemd, journald, dnf, its own sshd and
    # resolver) or the lab (no service manager, log files, never the machine's own host files).
    target: Literal["vm", "lab"] = "vm"
    # fail2ban: its configuration directory (the package's filter.d/ and action.d/ beside our
    # jail file). Empty run/state/log fields keep the package's defaults (the VM); the lab
    # puts socket, pid, database and log under its root.
    fail2ban_dir: str = "/etc/fail2ban"
    fail2ban_run_dir: str = ""
    fail2ban_db: str = ""
    fail2ban_log: str = ""
    # postscreen's wait for a pregreeting client, which every new client address pays once
    # (a day, postscreen_greet_ttl) before smtpd. Empty: postfix's own (6 s, 2 s under
    # stress), as on the VM. The lab shortens it: each lab test starts a fresh postscreen
    # cache, and a bot that talks at once is caught all the same.
    postscreen_greet_wait: str = ""
    # A working DNS resolver. The lab's namespace has none, so DNSBL lookups and DANE, which
    # need one, are left out there.
    dns: bool = True
    # Where relayed mail goes, as postfix's relayhost ("[host]:port"). Empty: the relay the
    # settings name (SES's endpoint in sesRegion). The lab sets a loopback stand-in, so no
    # test ever talks to SES; main.cf and the credentials file take the same value.
    relayhost: str = ""
    # The relay's certificate must be signed by a CA in this file (smtp_tls_CAfile): the OS's
    # bundle on the VM, a CA of the lab's own in the lab (its stand-in for SES has no public
    # certificate).
    relay_ca_file: str = EL_CA_BUNDLE
    # The name the relay's certificate must carry. Empty: the relayhost's host name (SES's
    # endpoint); the lab's relayhost is an address, so the lab names its stand-in here.
    relay_cert_name: str = ""
    # The doctor's code the self-check runs with the host's own python3 (render.shipped_code).
    code_dir: str = "/usr/local/lib/mailserver"
    # Where a secondary MX relays its mail, as postfix's nexthop ("[host]:port"). Empty: the
    # primary's host name on port 25 (the VM). The lab names the primary lab's address.
    primary_nexthop: str = ""

    @property
    def vm(self) -> bool:
        return self.target == "vm"

    @property
    def dovecot_conf(self) -> str:
        return f"{self.dovecot_dir}/dovecot.conf"

    @property
    def users_file(self) -> str:
        return f"{self.dovecot_dir}/users"

    @property
    def dovecot_dh_file(self) -> str:
        # Where dovecot 2.3 itself points (10-ssl.conf's example, and its migration warning
        # "please set ssl_dh=</etc/dovecot/dh.pem"); SELinux labels it like the directory.
        return f"{self.dovecot_dir}/dh.pem"

    def dkim_key_file(self, domain: str, selector: str) -> str:
        """The private key rspamd signs `domain`'s mail with under `selector` (set-dkim-keys.sh
        writes it, dkim_signing.conf names it, the doctor and the self-check read it)."""
        return f"{self.dkim_key_dir}/{domain}.{selector}.key"

    @property
    def sieve_dir(self) -> str:
        """The global Sieve scripts (spam into Junk, learning), compiled by apply.sh."""
        return f"{self.dovecot_dir}/sieve"

    @property
    def selfcheck_config(self) -> str:
        """What the self-check checks: the settings and this layout, as JSON (render.py)."""
        return f"{self.state_dir}/selfcheck.json"

    @property
    def selfcheck_state(self) -> str:
        """The self-check's memory between runs: the last results, since when each has failed."""
        return f"{self.state_dir}/selfcheck-state.json"

    @property
    def fail2ban_jail(self) -> str:
        # .local, read after the package's jail.d/*.conf (EPEL's 00-firewalld.conf among them).
        return f"{self.fail2ban_dir}/jail.d/mailserver.local"


VM_LAYOUT = Layout()

# Where the lab's postfix relays to (relay: ses), a stand-in for Amazon SES. Not port 587:
# the lab's own submission service holds it on every address. SES listens on 2587 too.
RELAY_STANDIN = "127.0.0.3"
RELAY_STANDIN_PORT = 2587
# The name on the stand-in's certificate (.invalid: it can never be a real host, RFC 2606).
RELAY_STANDIN_NAME = "email-smtp.standin.invalid"


# The lab's secondary MX runs in a network namespace of its own, joined to the primary lab's by
# a veth pair whose two ends carry these loopback-range addresses (so nothing the tests start
# listens outside 127.0.0.0/8). The secondary relays to the first.
LAB_PRIMARY_LINK = "127.1.0.1"
LAB_SECONDARY_LINK = "127.1.0.2"


def lab_layout(root: Path) -> Layout:
    """The lab's host (mailserver.lab): the only values it changes from the production host
    are where things live, and that there is no syslog or systemd. Users, ids, ports and
    every setting stay."""
    r = str(root)
    return dataclasses.replace(
        VM_LAYOUT,
        postfix_dir=f"{r}/etc/postfix",
        dovecot_dir=f"{r}/etc/dovecot",
        dovecot_base_dir=f"{r}/run/dovecot",
        queue_dir=f"{r}/spool/postfix",
        data_dir=f"{r}/lib/postfix",
        vmail_dir=f"{r}/vmail",
        cert_file=f"{r}/tls/cert.pem",
        key_file=f"{r}/tls/key.pem",
        state_dir=f"{r}/state",
        rspamd_local_dir=f"{r}/etc/rspamd",
        rspamd_db_dir=f"{r}/lib/rspamd",
        rspamd_run_dir=f"{r}/run/rspamd",
        rspamd_log_dir=f"{r}/log",
        dkim_key_dir=f"{r}/lib/rspamd/dkim",
        milter_socket=f"{r}/run/rspamd/milter.sock",
        learn_socket=f"{r}/run/rspamd/learn.sock",
        sieve_bin_dir=f"{r}/libexec/sieve",
        rspamd_hs_cache_dir=str(root.parent / "rspamd-hs-cache"),
        kv_conf=f"{r}/etc/redis/redis.conf",
        kv_dir=f"{r}/lib/redis",
        sshd_config=f"{r}/etc/ssh/sshd_config",
        sshd_dropin=f"{r}/etc/ssh/sshd_config.d/{Path(SSHD_DROPIN).name}",
        postfix_log=f"{r}/log/postfix.log",
        dovecot_log=f"{r}/log/dovecot.log",
        target="lab",
        fail2ban_dir=f"{r}/etc/fail2ban",
        fail2ban_run_dir=f"{r}/run/fail2ban",
        fail2ban_db=f"{r}/lib/fail2ban/fail2ban.sqlite3",
        fail2ban_log=f"{r}/log/fail2ban.log",
        dns=False,  # the namespace has no resolver: no DNSBL, no DANE
        postscreen_greet_wait="1s",
        # Relayed mail (relay: ses) goes to a loopback stand-in, never to SES itself.
        relayhost=f"[{RELAY_STANDIN}]:{RELAY_STANDIN_PORT}",
        # Trusted for the relay: a test CA that the relay tests write here (the lab's own trust,
        # never the machine's bundle), and the name the stand-in's certificate carries.
        relay_ca_file=f"{r}/tls/relay-ca.pem",
        relay_cert_name=RELAY_STANDIN_NAME,
        code_dir=f"{r}/code",
    )


# --- what the stack file may say, and what the settings may ask of postfix and sshd ------

# The sections of a stack file (Pulumi.<stack>.yaml), as Pulumi's stack settings reference
# lists them; anything else is a typo that would silently drop what it holds.
STACK_FILE_SECTIONS: tuple[str, ...] = ("config", "environment", "secretsprovider", "encryptedkey", "encryptionsalt")
# Config namespaces besides the program's own, and the keys each accepts: the providers the
# program uses, as their pinned SDKs read them (<package>/config/vars.py; tests compare), and
# the keys Pulumi's engine reads under pulumi:. A key elsewhere is a typo, and is named.
PROVIDER_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "aws": (
        "accessKey", "allowedAccountIds", "assumeRoleWithWebIdentity", "assumeRoles", "customCaBundle",
        "defaultTags", "ec2MetadataServiceEndpoint", "ec2MetadataServiceEndpointMode", "endpoints",
        "forbiddenAccountIds", "httpProxy", "httpsProxy", "ignoreTags", "insecure", "maxRetries", "noProxy",
        "profile", "region", "retryMode", "s3UsEast1RegionalEndpoint", "s3UsePathStyle", "secretKey",
        "sharedConfigFiles", "sharedCredentialsFiles", "skipCredentialsValidation", "skipMetadataApiCheck",
        "skipRegionValidation", "skipRequestingAccountId", "stsRegion", "tagPolicyCompliance", "token",
        "tokenBucketRateLimiterCapacity", "useDualstackEndpoint", "useFipsEndpoint", "userAgents",
    ),
    "cloudflare": ("apiKey", "apiToken", "apiUserServiceKey", "baseUrl", "email", "userAgentOperatorSuffix"),
    "tls": ("proxy",),
    "command": (),
    "pulumi": ("disable-default-providers", "tags", "autonaming"),
}

# smtpd_relay_restrictions may hold only these: ways to refuse, and the two permits that need
# a known client (mynetworks, itself checked for width) or a password, plus permit_auth_destination,
# which lets through only mail to our own domains. Everything else can let a stranger relay:
# permit, permit_mx_backup, permit_tls_*clientcerts, permit_*wl_client, permit_inet_interfaces,
# check_*_access and lookup tables (they may answer OK), check_policy_service, warn_if_reject
# (it turns the next refusal into a log line), restriction classes.
RELAY_PERMITS: tuple[str, ...] = ("permit_mynetworks", "permit_sasl_authenticated", "permit_auth_destination")
# A list must end with one of these, so what nothing permitted is refused.
RELAY_REFUSALS: tuple[str, ...] = ("reject_unauth_destination", "defer_unauth_destination", "reject")
RELAY_RESTRICTIONS: tuple[str, ...] = (
    *RELAY_PERMITS, *RELAY_REFUSALS, "defer", "reject_unauth_pipelining",
    "reject_non_fqdn_recipient", "reject_non_fqdn_sender", "reject_non_fqdn_helo_hostname",
    "reject_invalid_helo_hostname", "reject_unknown_helo_hostname", "reject_unknown_client_hostname",
    "reject_unknown_reverse_client_hostname", "reject_unknown_recipient_domain", "reject_unknown_sender_domain",
    "reject_unlisted_recipient", "reject_unlisted_sender", "reject_unverified_recipient", "reject_unverified_sender",
    "reject_plaintext_session", "reject_multi_recipient_bounce", "reject_sender_login_mismatch",
    "reject_known_sender_login_mismatch", "reject_authenticated_sender_login_mismatch",
    "reject_unauthenticated_sender_login_mismatch",
)

# Users sshd refuses as sshUser: root (the sshd drop-in says PermitRootLogin no), and the
# system and service accounts of a CentOS Stream mail host, which have no login shell.
SSH_ROOT_USER = "root"
SYSTEM_USERS: tuple[str, ...] = (
    "bin", "daemon", "adm", "lp", "sync", "shutdown", "halt", "mail", "operator", "games", "ftp", "nobody",
    "sshd", "dbus", "polkitd", "tss", "chrony", "unbound", "systemd-coredump", "systemd-network",
    "systemd-oom", "systemd-resolve", "systemd-timesync", "rpc", "rpcuser", "sssd", "setroubleshoot",
    "postfix", "dovecot", "dovenull", "_rspamd", "redis", "valkey", VMAIL_USER,
)


def main(argv: list[str]) -> int:
    usage = "usage: python3 -m mailserver.core.catalog debian-packages   (the lab's and the tests' Debian packages)"
    if argv[1:] == ["debian-packages"]:
        print(" ".join(DEBIAN_PACKAGES))
        return 0
    if argv[1:2] in (["-h"], ["--help"]):
        print(usage)
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
