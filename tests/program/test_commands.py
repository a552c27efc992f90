"""The remote commands in the resource graph (mocks): all wait for cloud-init, connect to
the EIP, name the script they run by its hash, and mail changes never touch the instance."""

from __future__ import annotations

import hashlib

from tests.program.harness import (
    COMMAND,
    EIP,
    INSTANCE,
    PASSWORDS,
    PRIVATE_KEY,
    Graph,
    build,
    graph_bundle,
    instance_id,
    plain,
)


def test_every_command_depends_on_wait(graph: Graph) -> None:
    commands = {r.name.rsplit("-", 1)[1]: r for r in graph.of(COMMAND)}
    assert set(commands) == {"wait", "volume", "config", "passwords", "acme", "credentials", "dkim", "password"}
    wait = commands.pop("wait")
    for cmd in commands.values():
        assert wait.urn in cmd.dependencies, f"{cmd.name} does not wait for cloud-init"
    assert commands["config"].urn in commands["passwords"].dependencies
    assert commands["config"].urn in commands["acme"].dependencies
    assert commands["config"].urn in commands["dkim"].dependencies  # keys after rspamd's configuration
    assert commands["config"].urn in commands["password"].dependencies  # rspamd's web UI password, after it too
    assert commands["config"].urn in commands["credentials"].dependencies  # relay login after main.cf
    # The first command waits for cloud-init, then runs the bundle's packages.sh (repairing a
    # first boot that failed halfway); tests/tools/test_first_boot.py runs it against stand-ins.
    assert wait.inputs["create"].startswith("rc=0; sudo cloud-init status --wait")
    assert wait.inputs["stdin"] == graph_bundle().scripts["packages.sh"]


def test_commands_connect_to_the_eip_as_the_ssh_user(graph: Graph) -> None:
    for cmd in graph.of(COMMAND):
        conn = plain(cmd.inputs["connection"])
        assert conn["host"] == EIP and conn["user"] == "ec2-user"
        assert conn["privateKey"] == PRIVATE_KEY
        assert conn["dialErrorLimit"] == 60 and conn["perDialTimeout"] == 30
        # a rebuilt instance behind the same EIP must be provisioned again
        assert cmd.inputs["triggers"][0] == instance_id("mail-host-instance", graph.one(INSTANCE).inputs)


def test_script_commands_name_the_script_hash(graph: Graph) -> None:
    bundle = graph_bundle()
    for suffix, script in (("-passwords", "set-passwords.sh"), ("-acme", "acme.sh")):
        create = graph.one(COMMAND, suffix).inputs["create"]
        assert create.startswith(f"sudo bash /var/lib/mailserver/scripts/{script} # ")
        assert create.endswith(hashlib.sha256(bundle.scripts[script].encode()).hexdigest())
    wait = graph.one(COMMAND, "-wait").inputs["create"]
    assert wait.endswith(hashlib.sha256(bundle.scripts["packages.sh"].encode()).hexdigest())
    config = graph.one(COMMAND, "-config").inputs["create"]
    assert "rm -rf /var/lib/mailserver/files /var/lib/mailserver/scripts" in config
    assert config.endswith("sudo bash /var/lib/mailserver/scripts/apply.sh")


def test_mail_changes_never_touch_the_instance() -> None:
    base = build()
    more = dict(PASSWORDS, **{"carol@example.com": "an0ther-l0ng-passw0rd"})
    changed = build({"mailboxes": ["alice@example.com", "bob@example.net", "carol@example.com"],
                     "messageSizeLimit": 20971520}, passwords=more)
    assert plain(changed.one(INSTANCE).inputs) == plain(base.one(INSTANCE).inputs)
    assert changed.one(COMMAND, "-config").inputs["stdin"] != base.one(COMMAND, "-config").inputs["stdin"]
    assert plain(changed.one(COMMAND, "-passwords").inputs["stdin"]) != plain(
        base.one(COMMAND, "-passwords").inputs["stdin"])
