"""The SSH host key, known before the first connection: where the instance reads it, what its
role may do, and how the program tells an instance that installs it at boot from one that
predates this. Pure: no Pulumi (components/host.py builds the resources from these).

The program generates an ED25519 host key (pulumi-tls; the private half is a Pulumi secret)
and stores it as an SSM Parameter Store SecureString. The instance's role may read that one
parameter and nothing else. At first boot, before sshd starts, a bootcmd step
(cloud-init/fetch-host-key.py.j2) gets the role's credentials from IMDSv2, reads the parameter
with a SigV4-signed GetParameter and installs the key; pulumi-command connects with
`host_key` set to its public half, so any other key (a failed fetch, a machine in the middle)
ends the connection before a secret is sent. User-data carries the parameter's name, never
the key. See docs/architecture.md, "SSH host key".
"""

from __future__ import annotations

from typing import Any

from mailserver.core.settings import Settings

# Tries, pause between them and per-request timeout (seconds) of the boot-time fetch. At most
# FETCH_TRIES * (FETCH_TIMEOUT per request) plus the pauses, and FETCH_DEADLINE bounds the
# whole: first boot is never held up long, and a role that IAM has not quite propagated yet
# (a few seconds after it was made) is waited for.
FETCH_TRIES = 4
FETCH_PAUSE = 2
FETCH_TIMEOUT = 3
FETCH_DEADLINE = 30

# The heredoc delimiter of the fetch step in user-data: an instance whose user-data holds it
# installed the host key at its first boot (fetches_host_key).
FETCH_MARKER = "FETCH_SSH_HOST_KEY"

# EC2 may hand the role to an instance; nothing else may assume it (IAM User Guide, "Using an
# IAM role to grant permissions to applications running on Amazon EC2 instances").
EC2_ASSUME_ROLE_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }],
}


def parameter_name(s: Settings) -> str:
    """The SSM parameter holding the host's private key. Named after the mail host, which is
    one stack's alone (its DNS records would clash as well)."""
    return f"/mailserver/{s.hostname}/ssh-host-ed25519-key"


def read_policy(parameter_arn: str) -> dict[str, Any]:
    """The instance role's only permission: read its host key. No kms:Decrypt statement: the
    parameter is encrypted with the AWS managed key aws/ssm, whose key policy lets every
    principal of the account decrypt through Parameter Store ("The AWS managed key for
    Parameter Store (aws/ssm) grants Decrypt permission to all IAM principals in the AWS
    account": AWS Systems Manager User Guide, "Restricting decryption of SecureString parameter
    values", docs.aws.amazon.com/systems-manager/latest/userguide/ps-restrict-decryption.html).
    So ssm:GetParameter on this one ARN is both needed and enough."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": parameter_arn,
        }],
    }


def fetches_host_key(user_data: str | None) -> bool:
    """Whether the instance booted with these user-data installs the pinned host key. An
    instance launched before the fetch existed keeps its old user-data (ignore_changes), so
    its host key is its own: pinning it would refuse every connection."""
    return bool(user_data) and FETCH_MARKER in str(user_data)


def unpinned_warning(hostname: str) -> str:
    return (f"{hostname}: this instance was launched before SSH host keys were pinned, so pulumi-command "
            "still accepts whatever host key it is shown. Replace the instance to pin it: see "
            "docs/operations.md, \"SSH host key\".")
