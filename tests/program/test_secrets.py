"""Secrets in the resource graph (mocks): nothing secret in user data or any visible input,
passwords and tokens travel only as secrets, and the exports."""

from __future__ import annotations

import json

from pulumi.runtime import rpc

from mailserver.core import outputs
from tests import cloud_facts
from tests.program.harness import (
    BYO_KEY,
    CF_TOKEN,
    COMMAND,
    EIP,
    HOST_PRIVATE_KEY,
    INSTANCE,
    KEY_PAIR,
    PASSWORDS,
    PRIVATE_KEY,
    TLS_KEY,
    TOKEN,
    Graph,
    build,
    bundle_files,
    plain,
    visible_strings,
)


def test_no_secret_in_user_data_or_any_visible_input(graph: Graph) -> None:
    user_data = graph.one(INSTANCE).inputs["userData"]
    assert user_data.startswith("#cloud-config")
    for secret in (*PASSWORDS.values(), CF_TOKEN, PRIVATE_KEY.splitlines()[1], HOST_PRIVATE_KEY.splitlines()[1]):
        assert secret not in user_data
        for r in graph.resources:
            for text in visible_strings(r.inputs):
                assert secret not in text, f"{secret!r} visible in {r.typ} {r.name}"


def test_config_bundle_holds_no_password(graph: Graph) -> None:
    files = bundle_files(graph)
    assert "scripts/apply.sh" in files
    for secret in (*PASSWORDS.values(), CF_TOKEN):
        assert not any(secret in t for t in files.values())


def test_passwords_and_token_travel_as_secrets(graph: Graph) -> None:
    passwords = graph.one(COMMAND, "-passwords")
    assert rpc.is_rpc_secret(passwords.inputs["stdin"])
    for m, p in PASSWORDS.items():
        assert f"{m}\t{p}\n" in plain(passwords.inputs["stdin"])
    acme = graph.one(COMMAND, "-acme")
    assert rpc.is_rpc_secret(acme.inputs["stdin"])
    assert plain(acme.inputs["stdin"]) == CF_TOKEN
    for cmd in (passwords, acme):
        assert cmd.inputs["logging"] == "none"
        assert {"stdout", "stderr"} <= set(cmd.additional_secret_outputs)
    for cmd in graph.of(COMMAND):
        assert rpc.is_rpc_secret(cmd.inputs["connection"])  # it holds the private key


def test_generated_private_key_export_is_secret(graph: Graph) -> None:
    assert graph.exports["sshPrivateKey"].secret
    assert graph.exports["sshPrivateKey"].value == PRIVATE_KEY
    assert not graph.exports["publicIp"].secret and graph.exports["publicIp"].value == EIP
    assert graph.exports["sshCommand"].value == f"ssh ec2-user@{EIP}"


def test_exports(graph: Graph) -> None:
    e = {k: v.value for k, v in graph.exports.items()}
    assert set(e) == {"publicIp", "hostname", "domains", "dnsRecords", "clientSettings", "sshCommand",
                      "sshKnownHosts", "sshPrivateKey", "port25Warning", "acmeServer", "sesRelay", "webHostnames",
                      "dataVolumeId", "restoreInstructions"}
    assert e["hostname"] == "mail.example.com" and e["domains"] == ["example.com", "example.net"]
    assert e["acmeServer"] == "letsencrypt_test" and e["port25Warning"] == outputs.PORT25_SES_NOTE
    assert e["clientSettings"]["imaps"]["port"] == 993
    assert not any(v.secret for k, v in graph.exports.items() if k != "sshPrivateKey")


def test_own_public_key_generates_no_login_key_and_exports_no_private_key() -> None:
    g = build({"sshPublicKey": BYO_KEY})
    # Only DKIM keys (RSA) and the host's own SSH host key are generated; no login key.
    assert {k.name for k in g.of(TLS_KEY) if plain(k.inputs)["algorithm"] != "RSA"} == {"mail-host-ssh-host-key"}
    assert g.one(KEY_PAIR).inputs["publicKey"] == BYO_KEY
    assert "sshPrivateKey" not in g.exports
    connection = plain(g.one(COMMAND, "-wait").inputs["connection"])
    assert "privateKey" not in connection


def test_acme_token_is_scoped_to_the_host_zone(graph: Graph) -> None:
    token = graph.one(TOKEN)
    (policy,) = token.inputs["policies"]
    assert policy["effect"] == "allow"
    assert json.loads(policy["resources"]) == {"com.cloudflare.api.account.zone.023e105f4ecef8ad9ca31a8372d0c353": "*"}
    # acme.sh's dns_cf edits the _acme-challenge record and looks the zone up: the ids must be
    # Cloudflare's published ones for exactly those two groups (an unknown id is refused by
    # Cloudflare when the token is created).
    groups = [cloud_facts.CLOUDFLARE_PERMISSION_GROUPS.get(g["id"], g["id"]) for g in policy["permissionGroups"]]
    assert sorted(groups) == ["DNS Write", "Zone Read"]
    assert "test" in token.inputs["name"]  # one token per stack
