"""Everything that reaches the host over SSH after cloud-init: configuration, passwords, certificate."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shlex
from collections.abc import Mapping

import pulumi
import pulumi_cloudflare as cloudflare
from pulumi_command import remote

from mailserver.core import catalog, render, storage
from mailserver.core.render import Bundle
from mailserver.core.settings import Secrets, Settings

# Cloudflare's published permission-group ids (Cloudflare's "API token permissions" page;
# confirm with cloudflare.get_api_token_permission_groups_list). acme.sh's dns_cf hook writes
# the _acme-challenge TXT record (DNS Write) and looks the zone up (Zone Read).
DNS_WRITE_PERMISSION_GROUP = "4755a26eedb94da69e1066d98aa820be"
ZONE_READ_PERMISSION_GROUP = "c8fed203ed3043cba015a93ad1616f1f"

# cloud-init's own output, where a failed first-boot step says why.
CLOUD_INIT_LOG = "/var/log/cloud-init-output.log"
CLOUD_INIT_LOG_LINES = 40


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def script_command(script: str, text: str) -> str:
    """Run a bundled script. Its hash rides along as a shell comment: an edited script changes
    the command, so pulumi-command runs it again, while the host ignores the comment."""
    path = shlex.quote(f"{catalog.VM_LAYOUT.state_dir}/scripts/{script}")
    return f"sudo bash {path} # {_fingerprint(text)}"


def stdin_script_command(script: str, text: str, *args: str) -> str:
    """Install a bundle script from stdin (on a new host the bundle is not unpacked yet) and run
    it. A file, not `bash -s`: a command in the script that reads stdin would otherwise eat the
    rest of the script. Its hash makes an edited script run again."""
    d = f"{catalog.VM_LAYOUT.state_dir}/scripts"
    path = shlex.quote(f"{d}/{script}")
    argv = "".join(f" {shlex.quote(a)}" for a in args)
    return (f"sudo install -d -m 0700 {shlex.quote(catalog.VM_LAYOUT.state_dir)} {shlex.quote(d)} && "
            f"sudo install -m 0700 /dev/stdin {path} && sudo bash {path}{argv} # {_fingerprint(text)}")


def wait_command(packages_script: str) -> str:
    """Wait for first boot, then make sure every repository and package is there.

    `cloud-init status --wait` exits 0 when first boot is done, 2 when done with recoverable
    errors (a deprecated key), 1 when a step failed. A failure is shown with the end of
    cloud-init's log, so the operator sees why, and is not fatal: packages.sh (the current
    bundle's, from stdin) then repairs the host, and fails itself, naming what is missing, if it
    cannot. So a failed first boot is repaired by this or the next `pulumi up`, never stuck."""
    report = (
        "rc=0; sudo cloud-init status --wait >/dev/null || rc=$?; "
        'if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then '
        f'echo "first boot failed (cloud-init status exit $rc); the end of {CLOUD_INIT_LOG}:" >&2; '
        f"sudo tail -n {CLOUD_INIT_LOG_LINES} {CLOUD_INIT_LOG} >&2; "
        "echo 'repairing the host: packages.sh now, apply.sh next' >&2; fi; "
    )
    return report + stdin_script_command("packages.sh", packages_script)


def volume_command(text: str, volume_id: str) -> str:
    """Install prepare-volume.sh from stdin and run it with the volume's device path."""
    return stdin_script_command("prepare-volume.sh", text, storage.device_path(volume_id))


def config_command() -> str:
    # files/ and scripts/ are removed first so the unpacked bundle is the whole truth: a file
    # dropped from the bundle must not linger and be installed again.
    d = shlex.quote(catalog.VM_LAYOUT.state_dir)
    return (
        f"sudo install -d -m 0700 {d} && sudo rm -rf {d}/files {d}/scripts && "
        f"base64 -d | sudo tar -xzf - -C {d} --no-same-owner && sudo bash {d}/scripts/apply.sh"
    )


@dataclasses.dataclass(frozen=True)
class MailProvisionArgs:
    settings: Settings
    secrets: Secrets
    bundle: Bundle
    host: pulumi.Input[str]
    instance_id: pulumi.Input[str]
    # The mail volume and its attachment to this instance (components/host.py); None for the
    # secondary MX, which stores no mail and runs no script but apply.sh and acme.sh.
    data_volume_id: pulumi.Input[str] | None
    volume_attachment_id: pulumi.Input[str] | None
    # None when the operator brought their own key: pulumi-command then uses the SSH agent.
    private_key: pulumi.Input[str] | None = None
    # The host's SSH host key (OpenSSH public key) every connection insists on; None only for
    # an instance launched before host keys were pinned (components/host.py).
    host_key: pulumi.Input[str | None] | None = None
    # relay: ses only: the stdin of set-relay-credentials.sh (components/ses.py), secret.
    relay_credentials: pulumi.Input[str] | None = None
    # domain -> DKIM private key PEM (current selector), secret, from DkimKeys.
    dkim_private_keys: Mapping[str, pulumi.Input[str]] = dataclasses.field(default_factory=dict)
    # The host's role (catalog.Role): the secondary MX gets no passwords and no DKIM keys.
    role: catalog.Role = "primary"


class MailProvision(pulumi.ComponentResource):
    wait: remote.Command
    volume: remote.Command | None
    config: remote.Command
    passwords: remote.Command | None
    acme_token: cloudflare.ApiToken
    acme: remote.Command
    relay_credentials: remote.Command | None
    dkim: remote.Command | None
    rspamd_password: remote.Command | None

    def __init__(self, name: str, args: MailProvisionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:MailProvision", name, None, opts)
        s = args.settings
        self._args = args
        self._connection = _connection(args)
        # The EIP outlives the instance, so the connection alone would not notice a rebuilt
        # server; the instance id as a trigger replaces, and so re-runs, every command on it.
        self._triggers: list[pulumi.Input[str]] = [args.instance_id]

        self.wait = self._wait_for_first_boot(name)
        self.volume = self._mount_volume(name, args.data_volume_id) if args.data_volume_id is not None else None
        self.config = self._apply_config(name)
        # Mailbox passwords and DKIM keys: the primary's alone (the secondary's bundle has no
        # script for them, and it should never hold them).
        self.passwords = self.dkim = self.rspamd_password = None
        if args.role == "primary":
            self.passwords = self._secret_step(f"{name}-passwords", "set-passwords.sh",
                                               render.password_stdin(s, args.secrets))
            # DKIM private keys, written for rspamd alone; re-runs when a key or the selector changes.
            self.dkim = self._secret_step(f"{name}-dkim", "set-dkim-keys.sh", pulumi.Output.all(
                **dict(args.dkim_private_keys)).apply(lambda keys: render.dkim_stdin(s, keys)))
            # rspamd's web UI password (an empty line keeps the random one apply.sh made).
            self.rspamd_password = self._secret_step(f"{name}-rspamd-password", "set-rspamd-password.sh",
                                                     render.rspamd_password_stdin(args.secrets))
        self.acme_token = self._acme_token(name)
        # The provider marks the token secret already; _secret_step says it again, so it never depends on that.
        self.acme = self._secret_step(f"{name}-acme", "acme.sh", self.acme_token.value)
        # The relay's SMTP login, after the config that names the relay (and whose apply.sh
        # drops a login written for another relayhost). Re-runs when the login or the script
        # (which embeds the relayhost) changes.
        self.relay_credentials = None
        if args.relay_credentials is not None:
            self.relay_credentials = self._secret_step(f"{name}-relay-credentials", "set-relay-credentials.sh",
                                                       args.relay_credentials)

        self.register_outputs({
            "config_stdout": self.config.stdout,
            "acme_token_id": self.acme_token.id,
        })

    def _wait_for_first_boot(self, name: str) -> remote.Command:
        """Waits for first boot, then repairs what it left undone (packages.sh); every other
        command depends on it."""
        packages = self._args.bundle.scripts["packages.sh"]
        return remote.Command(
            f"{name}-wait",
            connection=self._connection,
            create=wait_command(packages),
            stdin=packages,
            triggers=self._triggers,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _mount_volume(self, name: str, volume_id: pulumi.Input[str]) -> remote.Command:
        """The mail volume is mounted (formatted only if blank) before anything else touches
        /var/vmail. The attachment is a trigger: a volume re-attached (a rebuilt instance, a
        restore) is mounted again. So is the size: a grown volume gets its filesystem grown."""
        args = self._args
        script = args.bundle.scripts["prepare-volume.sh"]
        return remote.Command(
            f"{name}-volume",
            connection=self._connection,
            create=pulumi.Output.from_input(volume_id).apply(lambda vid: volume_command(script, vid)),
            stdin=script,
            triggers=[args.instance_id, args.volume_attachment_id, args.settings.data_volume_size],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.wait]),
        )

    def _apply_config(self, name: str) -> remote.Command:
        """The bundle, unpacked on the host, and apply.sh run from it."""
        return remote.Command(
            f"{name}-config",
            connection=self._connection,
            create=config_command(),
            stdin=base64.b64encode(self._args.bundle.tarball()).decode(),
            triggers=self._triggers,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._before_config),
        )

    def _secret_step(self, name: str, script: str, stdin: pulumi.Input[str]) -> remote.Command:
        """A bundle script, after the config, fed a secret on stdin. Its script could echo the
        secret: its output is kept out of the logs and encrypted in the state."""
        after_config = pulumi.ResourceOptions(parent=self, depends_on=[*self._before_config, self.config])
        quiet = pulumi.ResourceOptions(additional_secret_outputs=["stdout", "stderr"])
        return remote.Command(
            name,
            connection=self._connection,
            create=script_command(script, self._args.bundle.scripts[script]),
            stdin=pulumi.Output.secret(stdin),
            logging=remote.Logging.NONE,
            triggers=self._triggers,
            opts=pulumi.ResourceOptions.merge(after_config, quiet),
        )

    @property
    def _before_config(self) -> list[pulumi.Resource]:
        """First boot, and the mail volume where there is one."""
        return [self.wait, *([self.volume] if self.volume is not None else [])]

    def _acme_token(self, name: str) -> cloudflare.ApiToken:
        """acme.sh's Cloudflare token, scoped to DNS edits in the host's zone: the worst a token
        stolen from the host can do is edit that one zone."""
        s = self._args.settings
        zone_id = s.zone_id(s.hostname_zone)
        return cloudflare.ApiToken(
            f"{name}-acme-token",
            name=f"{pulumi.get_project()}-{pulumi.get_stack()}-acme-dns01"
                 + ("" if self._args.role == "primary" else f"-{self._args.role}"),
            policies=[{
                "effect": "allow",
                "permission_groups": [{"id": DNS_WRITE_PERMISSION_GROUP}, {"id": ZONE_READ_PERMISSION_GROUP}],
                "resources": json.dumps({f"com.cloudflare.api.account.zone.{zone_id}": "*"}),
            }],
            opts=pulumi.ResourceOptions(parent=self),
        )


def _connection(args: MailProvisionArgs) -> remote.ConnectionArgs:
    return remote.ConnectionArgs(
        host=args.host,
        user=args.settings.ssh_user,
        private_key=args.private_key,
        # Any other host key ends the connection before a command, or a secret, is sent.
        host_key=args.host_key,  # type: ignore[arg-type]
        # A fresh VM refuses connections for a while, and each refusal burns a retry fast.
        dial_error_limit=60,
        per_dial_timeout=30,
    )
