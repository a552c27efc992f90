"""The rendered bundle passes the real tools from Debian's packages, with no daemon started:
postconf, doveconf, cloud-init's schema validator, shellcheck, sshd -t, unbound-checkconf,
fail2ban-client, and the scripts against stand-ins. No Pulumi involved (the installed lab tree:
tests/tools/test_lab_tree.py)."""

from __future__ import annotations

import configparser
import re
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from mailserver.core import catalog, render
from mailserver.core.catalog import lab_layout
from mailserver.core.render import Bundle
from mailserver.core.settings import Settings
from mailserver.lab.server import install_fail2ban_package_files
from tests.support import STACK_VARIANTS, dev_settings
from tests.tools.support import run, shellcheck

USER_DATA_LIMIT = 16384  # EC2's limit on raw user-data


@pytest.fixture(params=list(STACK_VARIANTS), scope="module")
def settings(request: pytest.FixtureRequest) -> Settings:
    return dev_settings(**STACK_VARIANTS[request.param])[0]


@pytest.fixture(scope="module")
def bundle(settings: Settings) -> Bundle:
    return render.render(settings)


@pytest.fixture
def tree(bundle: Bundle, tmp_path: Path) -> Path:
    render.write_tree(bundle, tmp_path)
    return tmp_path


def test_main_cf_parses_without_warnings(bundle: Bundle, tree: Path) -> None:
    confdir = tree / "files" / catalog.VM_LAYOUT.postfix_dir.lstrip("/")
    proc = run(["postconf", "-c", str(confdir), "-n"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    settings = dict(line.split(" = ", 1) for line in proc.stdout.splitlines())
    # postfix reads the values we meant (a typo in a parameter name would vanish here).
    assert settings["smtpd_tls_auth_only"] == "yes"
    assert settings["smtpd_tls_protocols"] == catalog.POSTFIX_TLS_PROTOCOLS
    # EL's crypto policy reaches postfix through openssl.cnf, as in EL's own package: loaded,
    # and postfix's cipher grades left as EL's main.cf leaves them.
    assert settings["tls_config_file"] == catalog.POSTFIX_TLS_CONFIG_FILE
    grades = ("export", "low", "medium", "high", "null")
    assert not [k for k in settings if k in {f"tls_{g}_cipherlist" for g in grades}]
    # Within those grades: no anonymous or other weak suite, and the server's order (issue 13).
    assert settings["smtpd_tls_exclude_ciphers"] == ", ".join(catalog.POSTFIX_TLS_EXCLUDE_CIPHERS)
    assert settings["tls_preempt_cipherlist"] == "yes"
    assert "reject_unauth_destination" in settings["smtpd_relay_restrictions"]
    assert not any(v.startswith(("hash:", "btree:")) for v in settings.values()), "Stream 10 has no Berkeley DB"


def test_relay_settings_reach_postfix(settings: Settings, tree: Path) -> None:
    """postconf reads the relay block as written: a typo would vanish silently in postfix."""
    confdir = tree / "files" / catalog.VM_LAYOUT.postfix_dir.lstrip("/")
    proc = run(["postconf", "-c", str(confdir), "-h", "relayhost", "smtp_sasl_auth_enable",
                "smtp_sasl_password_maps", "smtp_tls_security_level", "virtual_transport", "smtp_tls_CAfile",
                "smtp_tls_secure_cert_match"])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    relayhost, sasl, maps, tls, virtual, cafile, cert_match = proc.stdout.splitlines()
    assert virtual == "lmtp:unix:private/dovecot-lmtp"  # local mail never goes to the relay
    if settings.relay == "ses":
        endpoint = f"email-smtp.{settings.ses_region}.amazonaws.com"
        assert relayhost == f"[{endpoint}]:587"
        assert (sasl, maps, tls) == ("yes", f"lmdb:{catalog.VM_LAYOUT.postfix_dir}/sasl_passwd", "secure")
        # the relay's certificate: from a CA of the OS's bundle, for the endpoint's name
        assert (cafile, cert_match) == (catalog.EL_CA_BUNDLE, endpoint)
    else:
        # Direct delivery: DANE by default (validated by the host's unbound), or may.
        assert (relayhost, sasl, tls) == ("", "no", settings.smtp_tls_security_level)
        assert (cafile, cert_match) == ("", "nexthop, dot-nexthop")  # postfix's defaults, unused
        dns_level = run(["postconf", "-c", str(confdir), "-h", "smtp_dns_support_level"]).stdout.strip()
        assert dns_level == ("dnssec" if tls == "dane" else "")


def test_master_cf_services_match_the_port_table(settings: Settings, tree: Path) -> None:
    confdir = tree / "files" / catalog.VM_LAYOUT.postfix_dir.lstrip("/")
    proc = run(["postconf", "-c", str(confdir), "-M"])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    inet = {line.split()[0] for line in proc.stdout.splitlines() if line.split()[1] == "inet"}
    assert inet == {"smtp" if s.port == 25 else str(s.port) for s in settings.services if s.daemon == "postfix"}
    # Submission ports demand TLS and AUTH; port 25 offers neither AUTH nor relaying.
    params = run(["postconf", "-c", str(confdir), "-P"]).stdout
    for port in inet - {"smtp"}:
        assert f"{port}/inet/smtpd_sasl_auth_enable = yes" in params
        assert f"{port}/inet/smtpd_sender_restrictions = reject_sender_login_mismatch" in params
    assert "smtp/inet/smtpd_sasl_auth_enable" not in params


def test_user_data_is_valid_cloud_config(settings: Settings, bundle: Bundle, tmp_path: Path) -> None:
    path = tmp_path / "user-data"
    path.write_text(bundle.user_data)
    proc = run(["cloud-init", "schema", "-c", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid cloud-config" in proc.stdout
    assert len(bundle.user_data.encode()) < USER_DATA_LIMIT
    doc = yaml.safe_load(bundle.user_data)
    # Every package comes from packages.sh, which user-data writes and runs (tests/tools/test_first_boot.py).
    packages_sh = next(f["content"] for f in doc["write_files"] if f["path"].endswith("/packages.sh"))
    assert all(p in packages_sh for p in catalog.all_el_packages(settings.os))
    assert doc["ssh_pwauth"] is False


@pytest.mark.parametrize("target", ["production", "lab", "direct"])
def test_every_script_passes_shellcheck(target: str, tmp_path: Path) -> None:
    # direct: relay none, whose scripts take other branches (no relay login to write)
    settings, _ = dev_settings(**({"relay": "none"} if target == "direct" else {}))
    layout = catalog.VM_LAYOUT if target == "production" else lab_layout(tmp_path / "root")
    b = render.render(settings, layout)
    proc = shellcheck(b.scripts, tmp_path)
    assert proc.returncode == 0, proc.stdout
    vm_scripts = set(render.VM_SCRIPTS) | set(render.VM_PRIMARY_SCRIPTS) if layout.vm else set()
    assert set(b.scripts) == set(render.SCRIPTS) | vm_scripts


# -- abuse defences and host hardening ----------------------------------------------------


def test_postscreen_answers_port_25_and_hands_over_to_smtpd(tree: Path) -> None:
    confdir = tree / "files" / catalog.VM_LAYOUT.postfix_dir.lstrip("/")
    master_cf = run(["postconf", "-c", str(confdir), "-M"]).stdout
    services = {tuple(line.split()[:2]): line.split()[7] for line in master_cf.splitlines()}
    assert services[("smtp", "inet")] == "postscreen"
    assert services[("smtpd", "pass")] == "smtpd"
    assert {("dnsblog", "unix"), ("tlsproxy", "unix")} <= set(services)
    proc = run(["postconf", "-c", str(confdir), "-h", "postscreen_greet_action", "postscreen_cache_map",
                "smtpd_forbid_bare_newline", "smtpd_forbid_bare_newline_exclusions", "postscreen_dnsbl_sites",
                "postscreen_dnsbl_threshold", "smtpd_client_auth_rate_limit"])
    assert proc.stderr == ""
    greet, cache, bare, exclusions, sites, threshold, auth_rate = proc.stdout.splitlines()
    assert greet == "enforce" and cache.startswith("lmdb:")  # Stream 10: no btree:
    assert (bare, exclusions) == ("normalize", "$mynetworks")
    assert sites == "zen.spamhaus.org=127.0.0.[2..11]*3" and threshold == "3"
    assert auth_rate == "30"


@pytest.mark.root  # sshd -t wants its privilege separation directory, /run/sshd
def test_sshd_accepts_the_dropin_and_its_values_win(bundle: Bundle, settings: Settings, tmp_path: Path) -> None:
    """sshd -t on a config that includes the drop-in first, then contrary values, as EL's
    sshd_config does with 50-redhat.conf and cloud-init's file. sshd is never started."""
    dropins = tmp_path / "sshd_config.d"
    dropins.mkdir()
    (dropins / Path(catalog.SSHD_DROPIN).name).write_text(bundle.file(catalog.SSHD_DROPIN).content)
    assert run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")]).returncode == 0
    config = tmp_path / "sshd_config"
    config.write_text(f"Include {dropins}/*.conf\nPasswordAuthentication yes\nPermitRootLogin yes\n"
                      f"KbdInteractiveAuthentication yes\nHostKey {tmp_path}/hostkey\n")
    privsep = Path("/run/sshd")  # sshd -t insists on its privilege separation directory
    made = not privsep.exists()
    privsep.mkdir(mode=0o755, exist_ok=True)
    try:
        check = run(["/usr/sbin/sshd", "-t", "-f", str(config)])
        assert check.returncode == 0 and check.stdout + check.stderr == "", check.stderr
        effective = run(["/usr/sbin/sshd", "-T", "-f", str(config), "-C",
                         f"user={settings.ssh_user},host=admin.example,addr=198.51.100.7"]).stdout.splitlines()
    finally:
        if made:
            privsep.rmdir()
    for line in ("passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin no",
                 "authenticationmethods publickey", f"allowusers {settings.ssh_user}", "x11forwarding no",
                 # The web UI's tunnel (ssh -L to rspamd's loopback controller) works; a port the
                 # server would open for someone else's tunnel (-R) does not.
                 "allowtcpforwarding local", "allowagentforwarding no"):
        assert line in effective


def test_unbound_checkconf_accepts_the_resolver(bundle: Bundle, tmp_path: Path) -> None:
    text = bundle.file(catalog.UNBOUND_CONF).content
    assert "interface: 127.0.0.1" in text and "access-control: 0.0.0.0/0 refuse" in text
    # The trust anchor the EL package keeps at root.key: Debian's copy (dns-root-data) here,
    # since unbound-checkconf insists that the file exists.
    conf = tmp_path / "unbound.conf"
    conf.write_text(text.replace(catalog.UNBOUND_ROOT_KEY, "/usr/share/dns/root.key"))
    proc = run(["unbound-checkconf", str(conf)])
    assert proc.returncode == 0 and "no errors" in proc.stdout, proc.stdout + proc.stderr


def fail2ban_dump(jail_file: str, tmp_path: Path) -> str:
    """fail2ban-client --test, then -d (the commands the server would get), on the package's
    filters and actions plus our jail file."""
    confdir = tmp_path / "fail2ban"
    install_fail2ban_package_files(confdir)
    (confdir / "jail.d").mkdir(exist_ok=True)
    (confdir / "jail.d" / "mailserver.local").write_text(jail_file)
    check = run(["fail2ban-client", "-c", str(confdir), "--test"])
    assert check.returncode == 0 and "OK" in check.stdout, check.stdout + check.stderr
    return run(["fail2ban-client", "-c", str(confdir), "-d"]).stdout


def test_fail2ban_accepts_the_vm_jails(settings: Settings, bundle: Bundle, tmp_path: Path) -> None:
    dump = fail2ban_dump(bundle.file(catalog.VM_LAYOUT.fail2ban_jail).content, tmp_path)
    for jail, unit in (("postfix-sasl", "postfix.service"), ("dovecot", "dovecot.service"), ("sshd", "sshd.service")):
        assert f"['add', '{jail}', 'systemd']" in dump  # the journal, not a log file
        assert f"_SYSTEMD_UNIT={unit}" in dump
        assert f"['set', '{jail}', 'maxretry', {settings.fail2ban_max_retry}]" in dump
        assert f"['set', '{jail}', 'bantime', '{settings.fail2ban_ban_time}']" in dump
    assert "nft " in dump and "firewallcmd" not in dump
    # OpenSSH 9.8+ logs authentication from sshd-session: the journal is read for both programs.
    # (+ separates alternatives.)
    assert ("['set', 'sshd', 'addjournalmatch', '_SYSTEMD_UNIT=sshd.service', '+', '_COMM=sshd', '+', "
            "'_COMM=sshd-session']") in dump
    # Never the host's own clients or the operator (postfix's [::1]/128 written as fail2ban wants).
    assert "'addignoreip', '127.0.0.1/32', '::1/128', '198.51.100.7/32']" in dump


@pytest.mark.parametrize("unbound_answers", [True, False])
def test_the_host_keeps_the_local_resolver_only_if_it_answers(unbound_answers: bool, tmp_path: Path) -> None:
    """use-local-resolver.sh with stand-ins for getent (unbound answering or not) and
    systemctl: the host never ends up without a working resolv.conf."""
    bundle = render.render(dev_settings()[0])
    script = tmp_path / "use-local-resolver.sh"
    script.write_text(bundle.scripts["use-local-resolver.sh"])
    fakes = tmp_path / "bin"
    fakes.mkdir()
    (fakes / "getent").write_text(f"#!/bin/sh\nexit {0 if unbound_answers else 2}\n")
    (fakes / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    for f in fakes.iterdir():
        f.chmod(0o755)
    resolv, keep = tmp_path / "resolv.conf", tmp_path / "resolv.conf.before-unbound"
    original = "# Generated by NetworkManager\nnameserver 172.31.0.2\n"
    resolv.write_text(original)
    env = {"PATH": f"{fakes}:/usr/bin:/bin", "RESOLVER_TRIES": "2", "RESOLVER_WAIT": "0"}
    proc = subprocess.run(["bash", str(script), str(resolv), str(keep)], capture_output=True, text=True, env=env,
                          check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr  # apply goes on either way
    assert keep.read_text() == original
    if unbound_answers:
        lines = resolv.read_text().splitlines()
        assert f"nameserver {catalog.RESOLVER}" in lines and "options edns0 trust-ad" in lines
        assert [line for line in lines if line.startswith("nameserver")] == [f"nameserver {catalog.RESOLVER}"]
        # A second run finds it done and changes nothing.
        before = resolv.read_text()
        subprocess.run(["bash", str(script), str(resolv), str(keep)], env=env, check=True, timeout=30)
        assert resolv.read_text() == before
    else:
        assert resolv.read_text() == original
        assert "keeping the previous resolver" in proc.stderr


@pytest.mark.parametrize("changed", [False, True])
def test_vm_apply_restarts_unbound_only_for_a_new_config_and_never_reloads_it(changed: bool, tmp_path: Path) -> None:
    """EL's unbound.service reloads through unbound-control, which our unbound.conf turns
    off: a reload fails, and with it every apply after the first. The rendered step runs
    here against a stand-in systemctl, with the config unchanged and changed."""
    apply = render.render(dev_settings()[0]).scripts["apply.sh"]
    step = apply[apply.index("systemctl enable unbound"):apply.index('bash "$stage/scripts/use-local-resolver.sh"')]
    conf, backup = tmp_path / "unbound.conf", tmp_path / "backup"
    conf.write_text("server:\n")
    saved = backup / catalog.UNBOUND_CONF.lstrip("/")
    saved.parent.mkdir(parents=True)
    saved.write_text("server:\n    verbosity: 2\n" if changed else "server:\n")
    script = (f'set -euo pipefail\nsystemctl() {{ echo "$*" >>"{tmp_path}/calls"; }}\nbackup="{backup}"\n'
              + step.replace(f" {catalog.UNBOUND_CONF}", f" {conf}"))
    subprocess.run(["bash", "-c", script], check=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["enable unbound", "restart unbound" if changed else "start unbound"]
    assert not any(c.startswith("reload") for c in calls)


# -- EL's own defaults, and what the lab keeps -----------------------------------------------


def test_the_vm_dovecot_keeps_els_tls_defaults(bundle: Bundle, tmp_path: Path) -> None:
    """EL's dovecot package sets PROFILE=SYSTEM in conf.d/10-ssl.conf, which our dovecot.conf
    replaces: the VM's file says it again, with ssl_dh, and keeps every TLS guarantee. doveconf
    parses a cipher list without asking OpenSSL (Debian's would refuse PROFILE=SYSTEM only when
    dovecot sets up TLS), and reads no <file at parse time, so the VM's file is checked as is."""
    conf = tmp_path / "dovecot.conf"
    conf.write_text(bundle.file(catalog.VM_LAYOUT.dovecot_conf).content)
    proc = run(["doveconf", "-c", str(conf), "-n"])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    names = ("ssl_cipher_list", "ssl_dh", "ssl", "ssl_min_protocol", "disable_plaintext_auth")
    values = run(["doveconf", "-c", str(conf), "-h", *names]).stdout.splitlines()
    assert dict(zip(names, values, strict=True)) == {
        "ssl_cipher_list": catalog.DOVECOT_EL_CIPHER_LIST, "ssl_dh": f"<{catalog.VM_LAYOUT.dovecot_dh_file}",
        "ssl": "required", "ssl_min_protocol": catalog.DOVECOT_TLS_MIN, "disable_plaintext_auth": "yes"}


def dh_step(baseline: str, path: Path) -> str:
    """The baseline's ssl_dh step, pointed at `path`."""
    start = baseline.index(f"dh={catalog.VM_LAYOUT.dovecot_dh_file}\n")
    end = baseline.index("\nfi\n", start) + len("\nfi\n")
    return "set -euo pipefail\n" + baseline[start:end].replace(catalog.VM_LAYOUT.dovecot_dh_file, str(path), 1)


def test_the_vm_baseline_writes_dh_parameters_dovecot_can_load_once(tmp_path: Path) -> None:
    """The VM's baseline writes the RFC 7919 group when the file is missing or unreadable and
    keeps a good one. Python's load_dh_params makes the calls dovecot 2.3 makes
    (PEM_read_bio_DHparams, SSL_CTX_set_tmp_dh), at security level 3, the FUTURE policy's,
    where OpenSSL refuses a 2048-bit group and dovecot would then fail every TLS connection."""
    assert "dhparam" not in render.render(dev_settings()[0], lab_layout(tmp_path / "lab")).scripts["baseline.sh"]
    dh = tmp_path / "dh.pem"
    step = dh_step(render.render(dev_settings()[0]).scripts["baseline.sh"], dh)

    def apply_step() -> str:
        proc = subprocess.run(["bash", "-c", step], capture_output=True, text=True, check=False, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "written" in apply_step()
    text = run(["openssl", "pkeyparam", "-in", str(dh), "-noout", "-text"]).stdout
    assert f"GROUP: {catalog.DH_GROUP}" in text and "(3072 bit)" in text
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT@SECLEVEL=3")
    ctx.load_dh_params(str(dh))
    # Idempotent: a good file stays as it is, the operator's own (another group) included.
    first = dh.read_bytes()
    assert apply_step() == "" and dh.read_bytes() == first
    own = run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe4096"]).stdout
    dh.write_text(own)
    assert apply_step() == "" and dh.read_text() == own
    # A file that does not read as DH parameters is replaced.
    dh.write_text("not a pem file\n")
    assert "written" in apply_step() and dh.read_bytes() == first


@pytest.mark.parametrize("logtype", ["journal", "file"])
@pytest.mark.parametrize("program", catalog.SSHD_COMMANDS)
def test_the_vm_sshd_jail_catches_sshd_and_sshd_session(program: str, logtype: str, tmp_path: Path) -> None:
    """OpenSSH 9.8 and later log authentication from sshd-session, older ones from sshd. The
    jail's own filter line, run by the real fail2ban-regex over the package's filters, finds a
    failed login from either. journal: the line as fail2ban's systemd backend builds it from a
    journal entry ("host program[pid]: message"), as the VM reads it; file: a syslog line."""
    jail = configparser.ConfigParser(interpolation=None)
    jail.read_string(render.render(dev_settings()[0]).file(catalog.VM_LAYOUT.fail2ban_jail).content)
    found = re.fullmatch(r"(\w+)\[(.*)\]", jail["sshd"]["filter"])
    assert found, jail["sshd"]["filter"]
    name, options = found.groups()
    confdir = tmp_path / "fail2ban"
    install_fail2ban_package_files(confdir)
    stamp = "2026-12-01T10:00:00 mail.example.com" if logtype == "journal" else "Dec  1 10:00:00 mail"
    log = tmp_path / "log"
    # OpenSSH's own wording (auth2.c), as every bot that guesses user names produces it.
    log.write_text(f"{stamp} {program}[1234]: Invalid user admin from 203.0.113.5 port 4242\n")
    proc = run(["fail2ban-regex", "-c", str(confdir), str(log), f"{name}[logtype={logtype}, {options}]"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lines: 1 lines, 0 ignored, 1 matched, 0 missed" in proc.stdout, proc.stdout


# -- unattended updates stay within the installed postfix and dovecot series -----------------


class LockHost:
    """lock-versions.sh against stand-in rpm (the installed versions) and dnf (its versionlock
    add --raw, writing the list as the plugin does); every dnf call is recorded."""

    def __init__(self, tmp_path: Path) -> None:
        self.script = tmp_path / "lock-versions.sh"
        self.script.write_text(render.render(dev_settings()[0]).scripts["lock-versions.sh"])
        self.versions, self.bin = tmp_path / "versions", tmp_path / "bin"
        self.versions.mkdir()
        self.bin.mkdir()
        self.list, self.calls = tmp_path / "versionlock.list", tmp_path / "dnf-calls"
        (self.bin / "rpm").write_text('#!/bin/sh\n[ "$1 $2" = "-q --qf" ] || exit 2\ncat "$VERSIONS/$4"\n')
        (self.bin / "dnf").write_text(
            '#!/bin/sh\necho "$*" >>"$CALLS"\n[ "$1 $2 $3 $4" = "-q versionlock add --raw" ] || exit 2\nshift 4\n'
            'printf "\\n# Added lock on %s\\n" "$(date)" >>"$LOCKLIST"\nprintf "%s\\n" "$@" >>"$LOCKLIST"\n')
        for f in self.bin.iterdir():
            f.chmod(0o755)

    def install(self, **versions: str) -> None:
        for name, version in versions.items():
            (self.versions / name).write_text(f"{version}\n")

    def run(self) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "VERSIONS": str(self.versions), "CALLS": str(self.calls),
               "LOCKLIST": str(self.list)}
        proc = subprocess.run(["bash", str(self.script), str(self.list)], capture_output=True, text=True, env=env,
                              check=False, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc

    def entries(self) -> list[str]:
        return [line.strip() for line in self.list.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]

    def dnf_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


def test_lock_versions_holds_postfix_and_dovecot_to_their_series_and_follows_a_deliberate_upgrade(
        tmp_path: Path) -> None:
    host = LockHost(tmp_path)
    others = "# the operator's\nkernel-0:5.14.0-427.el9.*\n  postfix-2:3.5.25-1.el9.*\n!opendkim-0:2.11.0-0.36.el9.*\n"
    host.list.write_text(others)
    host.install(postfix="3.5.25", dovecot="2.3.16", rspamd="3.14.3")
    assert "locking" in host.run().stdout
    ours = ["postfix-3.5.*", "postfix-lmdb-3.5.*", "dovecot-2.3.*", "dovecot-pigeonhole-2.3.*", "rspamd-3.14.*"]
    assert host.entries()[3:] == ours and host.list.read_text().startswith(others)
    # Every package the lock names is one the host installs.
    assert {p for group in catalog.VERSION_LOCKS for p in group} <= {*catalog.EL_PACKAGES, *catalog.RSPAMD_PACKAGES}
    assert host.dnf_calls() == [f"-q versionlock add --raw {' '.join(ours)}"]

    # Again: nothing to do, dnf is not even asked.
    before = host.list.read_text()
    assert host.run().stdout == ""
    assert host.list.read_text() == before and len(host.dnf_calls()) == 1

    # After a deliberate upgrade to postfix 3.8, postfix's series moves; dovecot's and the
    # operator's entries stay.
    host.install(postfix="3.8.5")
    out = host.run().stdout
    assert "releasing postfix-3.5.* postfix-lmdb-3.5.*" in out
    assert host.entries() == ["kernel-0:5.14.0-427.el9.*", "postfix-2:3.5.25-1.el9.*", "!opendkim-0:2.11.0-0.36.el9.*",
                              "dovecot-2.3.*", "dovecot-pigeonhole-2.3.*", "rspamd-3.14.*", "postfix-3.8.*",
                              "postfix-lmdb-3.8.*"]
    assert host.dnf_calls()[-1] == "-q versionlock add --raw postfix-3.8.* postfix-lmdb-3.8.*"
    assert host.list.read_text().startswith(others)


