"""Settings -> the bundle of rendered files and scripts. Pure: no Pulumi, no I/O but templates.

The bundle is the only interface between the settings and the two places they run: the EC2
host (user-data for the first boot, a tarball over SSH for everything else) and the local lab
(the same tarball, unpacked under a temporary root). Tests assert on it without Pulumi.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
import functools
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mailserver.core import catalog, certificates, hostkey, relay
from mailserver.core.settings import Secrets, Settings, as_role
from mailserver.core.settings_rules import control_character, network_coverage
from mailserver.core.templates import environment

# Where the bundle is unpacked on a host: files/ mirrors the target paths, scripts/ runs.
SCRIPTS = ("apply.sh", "set-passwords.sh", "set-dkim-keys.sh", "set-relay-credentials.sh", "set-rspamd-password.sh",
           "baseline.sh", "acme.sh", "prepare-volume.sh", "use-local-resolver.sh")
# Scripts for the VM's own package manager: never part of the lab's bundle.
VM_SCRIPTS = ("packages.sh", "lock-versions.sh")
# The primary VM's: rspamd's repository and the key-value store, SELinux rules for them.
VM_PRIMARY_SCRIPTS = ("spam-packages.sh",)
# rspamd's files in its local.d (each templates/rspamd/<name>.j2).
RSPAMD_LOCAL_FILES = ("worker-proxy.inc", "worker-normal.inc", "worker-controller.inc", "options.inc", "redis.conf",
                      "actions.conf", "greylist.conf", "dmarc.conf", "dkim_signing.conf", "dkim.conf",
                      "milter_headers.conf", "classifier-bayes.conf", "multimap.conf", "composites.conf",
                      "external_relay.conf", "force_actions.conf")
# The global Sieve scripts (templates/sieve/<name>.j2), and the programs the learning ones pipe to.
SIEVE_SCRIPTS = ("before.sieve", "learn-spam.sieve", "learn-ham.sieve")
LEARN_PROGRAMS = {"learn-spam.sh": "learn_spam", "learn-ham.sh": "learn_ham"}


@dataclasses.dataclass(frozen=True)
class File:
    path: str  # absolute path on the host
    content: str
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"


@dataclasses.dataclass(frozen=True)
class Bundle:
    files: tuple[File, ...]  # configuration installed by apply.sh
    scripts: Mapping[str, str]  # name -> script text
    user_data: str  # cloud-init, first boot only; never holds a secret

    def file(self, path: str) -> File:
        return next(f for f in self.files if f.path == path)

    def tarball(self) -> bytes:
        """Deterministic .tar.gz of files/ and scripts/: same settings, same bytes, so
        an unchanged stack never re-runs the remote apply."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            entries = [(f"files{f.path}", f.content, 0o644) for f in self.files]
            entries += [(f"scripts/{name}", text, 0o700) for name, text in self.scripts.items()]
            for name, text, mode in sorted(entries):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 0
                tar.addfile(info, io.BytesIO(data))
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            gz.write(raw.getvalue())
        return out.getvalue()

    def digest(self) -> str:
        return hashlib.sha256(self.tarball()).hexdigest()


# --- the second line of defence ---------------------------------------------------------
#
# parse_settings refuses every value below; the renderer checks again, whatever built the
# Settings (dataclasses.replace, a future code path), so no value can add a line or a
# parameter to a file the host installs.

# Fields written as phrases, with spaces between their words: the greeting, and the postfix
# lists written in one parameter. Every other string is one word of a file: a space in it
# would add a word (another user to AllowUsers, another option to a command, another
# parameter to master.cf's -o list).
_PHRASE_FIELDS = frozenset({"smtpd_banner", "mydestination", "inet_interfaces", "ssh_public_key"})
# Reaches no template (it becomes the EC2 key pair), so only control characters matter there.
_UNRENDERED_FIELDS = frozenset({"ssh_public_key"})
# Characters that end a quoted string in a shell script or dovecot.conf, or run a command.
_QUOTING = ('"', "'", "`", "\\", "$(")


class UnsafeValue(ValueError):
    """A value that would add a line, a word or a parameter to a rendered file. Says which
    field and why; never the value (a mistaken paste may hold a key or a password)."""


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a Settings field (tuples, pairs, Alias)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _strings(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name))


def _unsafe(field: str, text: str) -> str | None:
    control = control_character(text)
    if control:
        return f"contains a control character ({control}), which would add a line to a configuration file"
    if field not in _PHRASE_FIELDS and any(c.isspace() for c in text):
        return "contains white space, which would add a word (a parameter, a user, an argument) where one belongs"
    if field not in _UNRENDERED_FIELDS and any(q in text for q in _QUOTING):
        return "contains a quote, a backslash or $(, which would break out of a quoted string in a script"
    return None


def check_values(s: Settings) -> None:
    """Raise UnsafeValue if any string of `s` could add a line or a parameter to a rendered file."""
    for f in dataclasses.fields(s):
        for text in _strings(getattr(s, f.name)):
            why = _unsafe(f.name, text)
            if why:
                raise UnsafeValue(f"refusing to render: settings field {f.name} {why}")


def _lines(pairs: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{k} {v}\n" for k, v in pairs)


def maps(s: Settings) -> dict[str, str]:
    """Postfix lookup tables (source text; apply.sh compiles them with postmap)."""
    mailbox_set = set(s.mailboxes)
    senders: dict[str, list[str]] = {m: [m] for m in s.mailboxes}
    for alias in s.aliases:
        # A user may send as an alias that delivers to them.
        owners = [t for t in alias.targets if t in mailbox_set]
        if owners:
            senders[alias.source] = owners
    root_target = s.mailboxes[0]
    return {
        "vmailbox": _lines((m, f"{m.split('@')[1]}/{m.split('@')[0]}/") for m in s.mailboxes),
        "virtual": _lines((a.source, ",".join(a.targets)) for a in s.aliases),
        "senders": _lines((a, ",".join(o)) for a, o in senders.items()),
        # Local mail (cron, bounces to root) reaches the first mailbox.
        "aliases": f"postmaster: root\nroot: {root_target}\n",
    }


def rspamd_vars(layout: catalog.Layout) -> str:
    """rspamd's and rspamadm's --var options: none on the VM (the package's directories), the
    lab's own root for our files, state, sockets and log."""
    if layout.vm:
        return ""
    return " ".join(f"--var={k}={v}" for k, v in (("LOCAL_CONFDIR", layout.rspamd_local_dir),
                                                     ("DBDIR", layout.rspamd_db_dir),
                                                     ("RUNDIR", layout.rspamd_run_dir),
                                                     ("LOGDIR", layout.rspamd_log_dir)))


def selinux_module() -> str:
    """The SELinux policy module that lets postfix and dovecot reach rspamd's sockets (see
    catalog.RSPAMD_SELINUX_MODULE): connecting only, to an unconfined rspamd through var_run_t."""
    clients = catalog.RSPAMD_SELINUX_CLIENTS
    lines = [f"module {catalog.RSPAMD_SELINUX_MODULE} 1.0;", "require {",
             *(f"  type {t};" for t in (*clients, "var_run_t", "unconfined_service_t")),
             "  class sock_file write;", "  class unix_stream_socket connectto;", "}"]
    for client in clients:
        lines += [f"allow {client} var_run_t:sock_file write;",
                  f"allow {client} unconfined_service_t:unix_stream_socket connectto;"]
    return "\n".join(lines)


def spam_files(s: Settings, layout: catalog.Layout, env: Any, ctx: Mapping[str, Any]) -> list[File]:
    """rspamd's local.d, the key-value store's configuration, the global Sieve scripts and the
    programs they pipe to."""
    local = f"{layout.rspamd_local_dir}/local.d"
    files = [File(f"{local}/{name}", env.get_template(f"rspamd/{name}.j2").render(ctx)) for name in RSPAMD_LOCAL_FILES]
    files.append(File(f"{local}/own-domains.map", "".join(f"{d}\n" for d in s.domains)))
    files.append(File(ctx["kv_conf"], env.get_template("rspamd/kv-store.conf.j2").render(ctx)))
    files += [File(f"{layout.sieve_dir}/{name}", env.get_template(f"sieve/{name}.j2").render(ctx))
              for name in SIEVE_SCRIPTS]
    files += [File(f"{layout.sieve_bin_dir}/{name}", env.get_template("sieve/learn.sh.j2").render(ctx, action=action),
                   mode="0755") for name, action in LEARN_PROGRAMS.items()]
    return files


def fail2ban_ignoreip(s: Settings) -> list[str]:
    """Addresses fail2ban never bans: the host's trusted clients and the operator's networks,
    unless those cover the internet at large (allowSshFromAnywhere): then fail2ban would ban
    no one, on any port. postfix writes IPv6 networks in brackets ([::1]/128), fail2ban without."""
    admin = () if network_coverage(s.admin_cidrs).wide_families() else s.admin_cidrs
    nets = [n.replace("[", "").replace("]", "") for n in (*s.mynetworks, *admin)]
    return list(dict.fromkeys(nets))


def relayhost(s: Settings, layout: catalog.Layout) -> str:
    """postfix's relayhost: empty (deliver directly) with relay none, else the SES endpoint, or
    the stand-in the layout names. main.cf and the credentials file both take it from here,
    so the password map's key always matches the relayhost exactly."""
    if s.relay == "none":
        return ""
    return layout.relayhost or relay.ses_relayhost(s)


def relay_cert_name(s: Settings, layout: catalog.Layout) -> str:
    """The name the relay's certificate must carry: SES's endpoint, or the lab's stand-in."""
    if s.relay == "none":
        return ""
    return layout.relay_cert_name or relay.ses_endpoint(s)


# What the secondary MX (catalog.Role) leaves out: it stores no mail, logs no one in and signs
# nothing, so it has no dovecot, no rspamd, no passwords, keys, relay login or mail volume.
SECONDARY_SCRIPTS = ("apply.sh", "baseline.sh", "acme.sh", "use-local-resolver.sh")
# The maps of every recipient (mailboxes, then aliases): the primary delivers with them, the
# secondary refuses at RCPT whoever is in neither (relay_recipient_maps), so both hosts say no
# to the same unknown address and neither sends backscatter.
RECIPIENT_MAPS = ("vmailbox", "virtual")


# Dovecot's login process of a protocol is <protocol>-login, but ManageSieve's ("sieve" in
# `protocols`) is managesieve-login. A sieve-login block would be a second service beside
# managesieve-login's built-in listener on 4190, which doveconf 2.3.19 refuses ("duplicate
# listener: 4190"): apply.sh would roll the whole configuration back.
DOVECOT_LOGIN_SERVICES: dict[str, str] = {"sieve": "managesieve-login"}


def render(s: Settings, layout: catalog.Layout = catalog.VM_LAYOUT, role: catalog.Role = "primary") -> Bundle:
    check_values(s)
    if role == "secondary" and not s.secondary_mx:
        raise ValueError("a secondary's bundle needs secondaryMx: true")
    # The secondary's transport and TLS check name the primary; the rest of its bundle, itself.
    primary_host = s.hostname
    s = as_role(s, role)
    env = environment()
    services = catalog.role_services(s.services, role)
    login_services: dict[str, list[catalog.Service]] = {}
    for svc in services:
        if svc.daemon == "dovecot":
            login_services.setdefault(svc.protocol, []).append(svc)
    dovecot_login = {proto: DOVECOT_LOGIN_SERVICES.get(proto, f"{proto}-login") for proto in login_services}
    ctx = {
        "s": s,
        "layout": layout,
        # Facts by their catalog names (catalog.VMAIL_USER...); below, only what is worked out.
        "catalog": catalog,
        "smtp_services": [svc for svc in services if svc.daemon == "postfix"],
        "login_services": login_services,
        "dovecot_login": dovecot_login,
        "acme_renew_days": certificates.acme_renewal_days(),
        "acme_lifetimes": "/".join(map(str, catalog.CERT_LIFETIMES_DAYS)),
        "zone_id": s.zone_id(s.hostname_zone),
        "short_hostname": s.hostname.split(".", 1)[0],
        # The secondary never uses the outbound relay (it sends only to the primary).
        "relayhost": relayhost(s, layout) if role == "primary" else "",
        "relay_cert_name": relay_cert_name(s, layout),
        "el_packages": catalog.el_packages(s.os, role),
        "epel_packages": catalog.epel_packages(role),
        "all_packages": catalog.all_el_packages(s.os, role),
        "version_locks": catalog.version_locks(role),
        "epel_release": catalog.EPEL_RELEASE[s.os],
        # DNSBL lookups and DANE need DNS, which the lab's namespace does not have.
        "dnsbl_sites": s.postscreen_dnsbl_sites if layout.dns else (),
        "dane": s.smtp_tls_security_level == "dane" and layout.dns,
        "mail_ports": [svc.port for svc in catalog.public_mail_services({"submission": s.submission})],
        "ssh_port": next(svc.port for svc in catalog.SERVICES if svc.daemon == "sshd"),
        "ignoreip": fail2ban_ignoreip(s),
        "auto": catalog.AUTO_UPDATES[s.os],
        "role": role,
        "primary_host": primary_host,
        # Where the secondary relays: the primary by name (its A record, never its MX, which
        # would list the secondary itself), or the lab's address of it.
        "primary_nexthop": layout.primary_nexthop or f"[{primary_host}]:{catalog.SMTP_PORT}",
        "queue_lifetime": catalog.SECONDARY_QUEUE_LIFETIME,
        "recipient_maps": RECIPIENT_MAPS,
        "daemons": catalog.VMAIL_SERVICES if role == "primary" else catalog.SECONDARY_DAEMONS,
        # rspamd and its key-value store (the primary's).
        "rspamd_vars": rspamd_vars(layout),
        "greylist_score": min(catalog.GREYLIST_SCORE, s.spam_junk_score),
        "kv": catalog.KV_STORES[s.os],
        "kv_conf": layout.kv_conf or catalog.KV_STORES[s.os].conf,
        "kv_dir": layout.kv_dir or catalog.KV_STORES[s.os].dir,
        "repo": catalog.RSPAMD_REPO[s.os],
        "spam_packages": (*catalog.RSPAMD_PACKAGES, catalog.KV_STORES[s.os].package, *catalog.SELINUX_TOOLS),
        "selinux_module": selinux_module(),
        "sieve_scripts": SIEVE_SCRIPTS,
    }
    pf = layout.postfix_dir
    postfix_maps = maps(s) if role == "primary" else {
        name: text for name, text in maps(s).items() if name in (*RECIPIENT_MAPS, "aliases")}
    files = [
        File(f"{pf}/main.cf", env.get_template("postfix/main.cf.j2").render(ctx)),
        File(f"{pf}/master.cf", env.get_template("postfix/master.cf.j2").render(ctx)),
        *(File(f"{pf}/{name}", text) for name, text in postfix_maps.items()),
    ]
    if role == "primary":
        files += [
            # The dovecot config names the password file; root:dovecot 0640 like the file itself.
            File(layout.dovecot_conf, env.get_template("dovecot/dovecot.conf.j2").render(ctx),
                 mode="0640", group="dovecot"),
            *spam_files(s, layout, env, ctx),
        ]
    files += [
        File(layout.fail2ban_jail, env.get_template("fail2ban/jail.local.j2").render(ctx)),
        # The lab installs it under its own root, where its sshd -t and the doctor read it.
        File(layout.sshd_dropin, env.get_template("host/sshd.conf.j2").render(ctx), mode="0600"),
    ]
    if layout.fail2ban_run_dir:
        files.append(File(f"{layout.fail2ban_dir}/fail2ban.d/mailserver.local",
                          env.get_template("fail2ban/fail2ban.local.j2").render(ctx)))
    if layout.vm:
        # The host's own resolver and updates: the VM only, never the lab's machine.
        files += [
            File(catalog.UNBOUND_CONF, env.get_template("host/unbound.conf.j2").render(ctx)),
            File(catalog.UNBOUND_DROPIN, env.get_template("host/unbound-restart.conf.j2").render(ctx)),
            File(catalog.NM_DNS_CONF, env.get_template("host/networkmanager-dns.conf.j2").render(ctx)),
            File(catalog.AUTO_UPDATES[s.os].conf, env.get_template("host/dnf-automatic.conf.j2").render(ctx)),
        ]
    # The self-check judges a primary (its mailboxes' ports, dovecot, DKIM): not the backup MX,
    # which the primary's doctor checks instead (secondary-smtp, secondary-queue).
    ctx["self_check"] = s.self_check and role == "primary"
    if ctx["self_check"]:
        files += selfcheck_files(s, layout, env, ctx, next(f for f in files if f.path == layout.fail2ban_jail))
    ctx["files"] = files
    ctx["selfcheck_packages"] = " ".join(catalog.SELFCHECK_PACKAGES)
    ctx["postfix_maps"] = [f"{pf}/{name}" for name in postfix_maps if name != "aliases"]
    names = (SCRIPTS if role == "primary" else SECONDARY_SCRIPTS) + (VM_SCRIPTS if layout.vm else ()) \
        + (VM_PRIMARY_SCRIPTS if layout.vm and role == "primary" else ())
    scripts = {name: env.get_template(f"scripts/{name}.j2").render(ctx) for name in names}
    ctx["baseline"] = scripts["baseline.sh"]
    # user-data is the VM's alone; the lab's bundle carries one without the package step.
    ctx["packages_script"] = scripts.get("packages.sh", "")
    ctx.update(host_key_context(s))
    ctx["host_key_script"] = compact_python(env.get_template("fetch-host-key.py.j2").render(ctx))
    user_data = env.get_template("user-data.yaml.j2").render(ctx)
    return Bundle(files=tuple(files), scripts=scripts, user_data=user_data)


# --- the self-check's code and configuration -------------------------------------------------

# The package the self-check ships, and its entry points (mailserver/doctor/selfcheck.py).
PACKAGE_DIR = Path(__file__).resolve().parent.parent
SELFCHECK_ENTRY = ("mailserver.__main__", "mailserver.doctor.selfcheck")


def _module_file(name: str) -> Path | None:
    """The file of a mailserver module or package; None for a name that is neither (a class)."""
    parts = name.split(".")[1:]
    candidates = [PACKAGE_DIR.joinpath(*parts, "__init__.py")]
    if parts:
        candidates.append(PACKAGE_DIR.joinpath(*parts[:-1], parts[-1] + ".py"))
    return next((p for p in candidates if p.is_file()), None)


def _imports(path: Path) -> set[str]:
    """The mailserver modules a module imports when it is imported (its top-level statements;
    not the lazy imports inside functions, such as the renderer the doctor's SSH path uses)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in out if n.split(".")[0] == "mailserver" and _module_file(n)}


@functools.lru_cache(maxsize=1)
def shipped_modules() -> tuple[str, ...]:
    """Every mailserver module the self-check imports, and the packages holding them: found by
    reading the imports, so a module the doctor starts to import ships with it, and nothing
    else does (the lab, the renderer, the Pulumi components)."""
    seen: set[str] = set()
    todo = list(SELFCHECK_ENTRY)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for parent in (".".join(parts[:i]) for i in range(1, len(parts))):
            if parent not in seen:
                todo.append(parent)
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path:
            todo.extend(_imports(path))
    return tuple(sorted(seen))


def shipped_code(layout: catalog.Layout) -> list[File]:
    files = []
    for name in shipped_modules():
        path = _module_file(name)
        assert path is not None
        files.append(File(f"{layout.code_dir}/{path.relative_to(PACKAGE_DIR.parent)}", path.read_text()))
    return files


def enabled_jails(jail_text: str) -> list[str]:
    """The jails a jail.local enables."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(jail_text)
    return [name for name in parser.sections() if parser.getboolean(name, "enabled", fallback=False)]


# Settings only the cloud resources read: the host's copy has them blank, so changing them
# (a retention, a larger volume, another instance type) never re-applies the configuration
# and reloads the daemons (operations.md, "What survives which change"). The doctor reads none.
_CLOUD_ONLY = frozenset({"ami_id", "instance_type", "root_volume_size", "data_volume_size", "data_volume_snapshot_id",
                         "snapshot_retention", "snapshot_copy_region", "ssh_public_key"})


def selfcheck_config(s: Settings, layout: catalog.Layout, jails: Iterable[str]) -> str:
    """What the self-check checks, as JSON (selfcheck.read_config reads it back): the settings
    (no secret: Settings has none; the cloud-only ones blank), where things live, and the
    fail2ban jails the bundle enables (the host has no templates to render them from)."""
    fields = {k: type(v)() if k in _CLOUD_ONLY else v for k, v in dataclasses.asdict(s).items()}
    return json.dumps({"settings": fields, "layout": dataclasses.asdict(layout), "jails": list(jails)},
                      indent=1, sort_keys=True) + "\n"


def selfcheck_files(s: Settings, layout: catalog.Layout, env: Any, ctx: Mapping[str, Any], jail: File) -> list[File]:
    """The self-check: its configuration, the doctor's code, and on the VM the timer that runs it."""
    files = [File(layout.selfcheck_config, selfcheck_config(s, layout, enabled_jails(jail.content)), mode="0600"),
             *shipped_code(layout)]
    if layout.vm:
        files += [File(catalog.SELFCHECK_SERVICE, env.get_template("host/selfcheck.service.j2").render(ctx)),
                  File(catalog.SELFCHECK_TIMER, env.get_template("host/selfcheck.timer.j2").render(ctx))]
    return files


def compact_python(text: str) -> str:
    """A Python script without its comment lines and blank lines, for user-data (16 KB at most
    on EC2). Only whole-line comments go; the template keeps them for its readers."""
    return "".join(line + "\n" for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def host_key_context(s: Settings) -> dict[str, object]:
    """What the first-boot fetch of the SSH host key is rendered with (mailserver/core/hostkey.py)."""
    directory, name = catalog.SSH_HOST_KEY.rsplit("/", 1)
    return {
        "host_key_parameter": hostkey.parameter_name(s), "host_key_dir": directory, "host_key_name": name,
        "fetch_marker": hostkey.FETCH_MARKER, "fetch_tries": hostkey.FETCH_TRIES, "fetch_pause": hostkey.FETCH_PAUSE,
        "fetch_timeout": hostkey.FETCH_TIMEOUT, "fetch_deadline": hostkey.FETCH_DEADLINE,
    }


def password_stdin(s: Settings, secrets: Secrets) -> str:
    """The stdin of set-passwords.sh: one "address<TAB>password" line per mailbox. A control
    character in either would make another line, another mailbox: refused, the password unshown."""
    check_values(s)
    for m in s.mailboxes:
        if control_character(secrets.passwords[m]):
            raise UnsafeValue(f"refusing to write the passwords: the password of {m} contains a control character")
    return "".join(f"{m}\t{secrets.passwords[m]}\n" for m in s.mailboxes)


def dkim_stdin(s: Settings, private_keys: Mapping[str, str]) -> str:
    """The stdin of set-dkim-keys.sh: for each domain, "domain selector" then its PEM key."""
    return "".join(f"{d} {s.dkim_selector}\n{private_keys[d].strip()}\n" for d in s.domains)


def rspamd_password_stdin(secrets: Secrets) -> str:
    """The stdin of set-rspamd-password.sh: the rspamdPassword secret on one line, or an empty
    line (keep the host's)."""
    if control_character(secrets.rspamd_password):
        raise UnsafeValue("refusing to write rspamd's password: it contains a control character")
    return f"{secrets.rspamd_password}\n"


def relay_credentials_stdin(username: str, password: str) -> str:
    """The stdin of set-relay-credentials.sh: one "username<TAB>password" line."""
    if control_character(username) or control_character(password):
        raise UnsafeValue("refusing to write the relay credentials: they contain a control character")
    return f"{username}\t{password}\n"


def write_tree(bundle: Bundle, dest: Path) -> None:
    """Unpack the bundle's tarball under dest (what the host does with it)."""
    with tarfile.open(fileobj=io.BytesIO(bundle.tarball()), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
