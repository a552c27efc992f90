"""The SSH host key in the resource graph (mocks): generated, stored as a SecureString only the
instance's role may read, never in user-data, and pinned by every remote command; an instance
launched before pinning keeps its connections as they were (mailserver/core/hostkey.py)."""

from __future__ import annotations

import json

from pulumi.runtime import rpc

from mailserver.core import hostkey, render
from tests import cloud_facts
from tests.cloud_facts import World
from tests.program.harness import (
    COMMAND,
    EIP,
    HOST_PRIVATE_KEY,
    HOST_PUBLIC_KEY,
    INLINE_ROLE_POLICY,
    INSTANCE,
    INSTANCE_PROFILE,
    PRIVATE_KEY,
    ROLE,
    ROLE_POLICY,
    SSM_PARAMETER,
    TLS_KEY,
    Graph,
    build,
    graph_bundle,
    plain,
)
from tests.support import dev_settings

PARAMETER_NAME = "/mailserver/mail.example.com/ssh-host-ed25519-key"
PARAMETER_ARN = cloud_facts.ssm_parameter_arn(cloud_facts.REGION, cloud_facts.ACCOUNT, PARAMETER_NAME)


def test_the_host_key_is_generated_and_stored_as_a_secure_string(graph: Graph) -> None:
    key = graph.one(TLS_KEY, "-ssh-host-key")
    assert plain(key.inputs)["algorithm"] == "ED25519"
    parameter = graph.one(SSM_PARAMETER)
    assert parameter.inputs["name"] == PARAMETER_NAME == hostkey.parameter_name(dev_settings()[0])
    assert parameter.inputs["type"] == "SecureString"
    # The private key travels to the provider as a secret: encrypted in Pulumi's state, kept
    # out of previews and logs.
    assert rpc.is_rpc_secret(parameter.inputs["value"])
    assert plain(parameter.inputs["value"]) == HOST_PRIVATE_KEY
    # No key of our own: the AWS managed key aws/ssm (hostkey.read_policy says why that is enough).
    assert "keyId" not in parameter.inputs and "insecureValue" not in parameter.inputs


def test_the_instance_role_may_read_that_one_parameter_and_nothing_else(graph: Graph) -> None:
    instance, profile = graph.one(INSTANCE), graph.one(INSTANCE_PROFILE)
    role = graph.one(ROLE, "-host-role")
    role_name = f"{role.name}-1a2b3c"  # what the mock names it (IAM adds a suffix to an auto-name)
    assert instance.inputs["iamInstanceProfile"] == f"{profile.name}-4d5e6f"
    assert profile.inputs["role"] == role_name
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    # Exactly one policy on the role, with exactly one statement: GetParameter on that ARN.
    on_role = [p for p in graph.of(INLINE_ROLE_POLICY) if p.inputs["role"] == role_name]
    assert [p.inputs["role"] for p in graph.of(ROLE_POLICY)].count(role_name) == 0  # no managed policy
    (policy,) = on_role
    document = json.loads(policy.inputs["policy"])
    assert document == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": PARAMETER_ARN}]}
    assert "*" not in policy.inputs["policy"]
    # Both exist before the instance boots and asks for the key.
    assert {policy.urn, graph.one(SSM_PARAMETER).urn} <= set(instance.dependencies)


def test_user_data_names_the_parameter_but_holds_no_key(graph: Graph) -> None:
    user_data = graph.one(INSTANCE).inputs["userData"]
    assert user_data == graph_bundle().user_data
    assert f'PARAMETER = "{PARAMETER_NAME}"' in user_data and hostkey.FETCH_MARKER in user_data
    assert "PRIVATE KEY" not in user_data
    for key in (HOST_PRIVATE_KEY, PRIVATE_KEY):
        assert key.splitlines()[1] not in user_data
    assert HOST_PUBLIC_KEY not in user_data  # not even the public half: the instance reads it from the key


def test_every_remote_command_pins_the_host_key(graph: Graph) -> None:
    commands = graph.of(COMMAND)
    assert len(commands) == 8
    for cmd in commands:
        connection = plain(cmd.inputs["connection"])
        assert connection["hostKey"] == HOST_PUBLIC_KEY, cmd.name
        assert connection["hostKey"] != "ssh-ed25519 AAAAmock generated"  # not the login key
    known = graph.exports["sshKnownHosts"]
    assert known.value == f"{EIP},mail.example.com {HOST_PUBLIC_KEY}" and not known.secret


def test_an_instance_launched_before_pinning_keeps_its_connections() -> None:
    # Its user-data (kept by ignore_changes) has no fetch: its host key is its own, and pinning
    # the generated one would refuse every connection. The commands' connections stay as they
    # were, so nothing is replaced or re-run; the role is added in place.
    old = render.render(dev_settings()[0]).user_data.split("ssh_deletekeys:")[0]
    assert not hostkey.fetches_host_key(old)
    g = build(world=World(instance_user_data=old))
    for cmd in g.of(COMMAND):
        connection = plain(cmd.inputs["connection"])
        # Not even a null: the connection is exactly what it was before pinning existed.
        assert set(connection) == {"host", "port", "user", "privateKey", "dialErrorLimit", "perDialTimeout"}
    assert g.one(INSTANCE).inputs["iamInstanceProfile"]
    assert g.exports["sshKnownHosts"].value is None
