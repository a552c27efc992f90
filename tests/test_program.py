"""The Pulumi program against mocks: the resource graph it would ask the engine for.

Each test builds a fresh graph from the dev stack file (plus test passwords and overrides),
through __main__.main(), with a mock monitor that records every registration: type, name,
inputs (secrets still marked), and the options the engine would see (dependencies,
ignoreChanges, protect, additionalSecretOutputs).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import importlib.util
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _sync_await

from mailserver.lab import generate_rsa_key, public_key_pem

ROOT = Path(__file__).resolve().parent.parent

EIP = "198.51.100.77"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nMOCK-PRIVATE-KEY-7f3a9c\n-----END OPENSSH PRIVATE KEY-----\n"
CF_TOKEN = "cf-token-Zq8dXw2mVt9LpQ4rNs6Y"
PASSWORDS = {
    "alice@example.com": "Tr0ub4dor&3-alice-UNIQUE-91f2",
    "bob@example.net": "c0rrect-h0rse-bob-UNIQUE-4e7b",
}
# A real RSA key pair, so the DKIM record code sees valid base64 (made once per test run).
DKIM_PRIVATE_PEM = generate_rsa_key()
DKIM_PUBLIC_PEM = public_key_pem(DKIM_PRIVATE_PEM)
BYO_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7mOcKkEyQ3x5cV0g1Yk8tZr2sLhP4nWqU9aXbDeFjH operator@laptop"

INSTANCE = "aws:ec2/instance:Instance"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
DNS = "cloudflare:index/dnsRecord:DnsRecord"
COMMAND = "command:remote:Command"
TOKEN = "cloudflare:index/apiToken:ApiToken"
GET_AMI = "aws:ec2/getAmi:getAmi"
VOLUME = "aws:ebs/volume:Volume"
VOLUME_ID = "vol-0123456789abcdef0"
GET_OFFERINGS = "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"
# Zones that offer the instance type, in the unsorted order EC2 may answer in.
OFFERED_ZONES = ["eu-central-1b", "eu-central-1a", "eu-central-1c"]
GET_ZONES = "aws:index/getAvailabilityZones:getAvailabilityZones"
# An opted-in Local Zone offers the type too, and sorts first by name: it must not be chosen.
LOCAL_ZONE = "eu-central-1-ham-1a"
# relay: ses (tests/test_ses.py)
SES_IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"
SES_MAIL_FROM = "aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes"
IAM_USER = "aws:iam/user:User"
IAM_USER_POLICY = "aws:iam/userPolicy:UserPolicy"
ACCESS_KEY = "aws:iam/accessKey:AccessKey"
ACCOUNT = "123456789012"
SES_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY-SES-SECRET-5d1e"
SES_PROVIDER_PASSWORD = "BProviderRegionSmtpPassword-NOT-USED-7c2a"


def dkim_tokens(domain: str) -> list[str]:
    """What SES would return as Easy DKIM tokens (32 lower-case letters and digits)."""
    return [f"{domain.replace('.', '')}{i}".ljust(32, "x") for i in range(3)]


# --- recording mocks --------------------------------------------------------------------


@dataclasses.dataclass
class Registered:
    typ: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]  # wire names; secret values stay wrapped (see is_secret)
    dependencies: list[str]
    ignore_changes: list[str]
    protect: bool
    additional_secret_outputs: list[str]
    retain_on_delete: bool = False
    delete_before_replace: bool = False


def instance_id(name: str, inputs: dict[str, Any]) -> str:
    return f"{name}-id-{inputs.get('ami', '')}"


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.calls: list[pulumi_mocks.MockCallArgs] = []
        self.new_resource_calls = 0

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.new_resource_calls += 1
        out = dict(args.inputs)
        if args.typ == "aws:ec2/eip:Eip":
            out.update(publicIp=EIP, allocationId="eipalloc-0123456789")
        elif args.typ == "tls:index/privateKey:PrivateKey" and args.inputs.get("algorithm") == "RSA":
            out.update(publicKeyPem=DKIM_PUBLIC_PEM, privateKeyPem=DKIM_PRIVATE_PEM)
        elif args.typ == "tls:index/privateKey:PrivateKey":
            out.update(publicKeyOpenssh="ssh-ed25519 AAAAmock generated", privateKeyOpenssh=PRIVATE_KEY)
        elif args.typ == "aws:ec2/keyPair:KeyPair":
            out.update(keyName=f"{args.name}-kp")
        elif args.typ == TOKEN:
            out.update(value=CF_TOKEN)
        elif args.typ == SES_IDENTITY:
            domain = args.inputs["emailIdentity"]
            region = args.inputs.get("region", "eu-central-1")
            out.update(arn=f"arn:aws:ses:{region}:{ACCOUNT}:identity/{domain}", identityType="DOMAIN",
                       dkimSigningAttributes={**args.inputs.get("dkimSigningAttributes", {}),
                                              "tokens": dkim_tokens(domain)})
        elif args.typ == IAM_USER:
            out.update(name=f"{args.name}-7f3e2a1", arn=f"arn:aws:iam::{ACCOUNT}:user/mailserver/{args.name}")
        elif args.typ == VOLUME:
            return VOLUME_ID, out
        elif args.typ == "aws:iam/role:Role":
            out.update(name=f"{args.name}-1a2b3c", arn=f"arn:aws:iam::{ACCOUNT}:role/{args.name}-1a2b3c")
        elif args.typ == ACCESS_KEY:
            out.update(secret=SES_SECRET_KEY, sesSmtpPasswordV4=SES_PROVIDER_PASSWORD)
            return "AKIAMOCKSMTPUSER0001", out
        elif args.typ == INSTANCE:
            # EC2 gives a replaced instance a new id: derive it from the image (the input that
            # replaces it), so whatever follows the instance id shows up as changed.
            return instance_id(args.name, args.inputs), out
        return f"{args.name}-id", out

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls.append(args)
        if args.token == GET_AMI:
            # Never raise here: an exception inside a mocked invoke hangs the run instead of failing it.
            arch = next((f["values"][0] for f in args.args.get("filters", []) if f["name"] == "architecture"), "any")
            return {"id": f"ami-{arch}", "imageId": f"ami-{arch}", "architecture": arch}, []
        if args.token == GET_OFFERINGS:
            return {"id": "eu-central-1", "locations": [LOCAL_ZONE, *OFFERED_ZONES],
                    "locationTypes": ["availability-zone"] * 4, "instanceTypes": ["t4g.micro"] * 4}, []
        if args.token == GET_ZONES:
            opt_in = next((f["values"] for f in args.args.get("filters", []) if f["name"] == "opt-in-status"), None)
            names = OFFERED_ZONES if opt_in == ["opt-in-not-required"] else [LOCAL_ZONE, *OFFERED_ZONES]
            return {"id": "eu-central-1", "names": names, "zoneIds": [f"euc1-az{i}" for i in range(len(names))]}, []
        return {}, []


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A mock monitor that keeps each registration request, and marks additionalSecretOutputs
    secret in the returned state as the real engine does (the mock monitor does not)."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.records: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        self.records.append(Registered(
            typ=request.type,
            name=request.name,
            urn=response.urn,
            parent=request.parent,
            custom=request.custom,
            inputs=rpc.deserialize_properties(request.object),
            dependencies=list(request.dependencies),
            ignore_changes=list(request.ignoreChanges),
            protect=bool(request.protect),
            additional_secret_outputs=list(request.additionalSecretOutputs),
            retain_on_delete=bool(request.retainOnDelete),
            delete_before_replace=bool(request.deleteBeforeReplace),
        ))
        if request.additionalSecretOutputs:
            state = rpc.deserialize_properties(response.object)
            for key in request.additionalSecretOutputs:
                if key in state:
                    state[key] = rpc.wrap_rpc_secret(rpc.unwrap_rpc_secret(state[key]))
            obj = _sync_await(rpc.serialize_properties(state, {}))
            response = resource_pb2.RegisterResourceResponse(urn=response.urn, id=response.id, object=obj)
        return response


@dataclasses.dataclass
class Export:
    value: Any
    secret: bool


@dataclasses.dataclass
class Graph:
    resources: list[Registered]
    exports: dict[str, Export]
    mocks: Mocks

    def of(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, suffix: str = "") -> Registered:
        found = [r for r in self.of(typ) if r.name.endswith(suffix)]
        assert len(found) == 1, f"expected one {typ} named *{suffix}, got {[r.name for r in found]}"
        return found[0]

    def ami_calls(self) -> list[pulumi_mocks.MockCallArgs]:
        return [c for c in self.mocks.calls if c.token == GET_AMI]


def plain(value: Any) -> Any:
    """The value with every secret marker removed."""
    if rpc.is_rpc_secret(value):
        return plain(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def visible_strings(value: Any) -> Iterator[str]:
    """Every string reachable without going through a secret marker: what a state file, a
    diff or a log would show in clear text."""
    if rpc.is_rpc_secret(value):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from visible_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from visible_strings(v)
    elif value is not None:
        yield str(value)


def _load_program() -> Any:
    spec = importlib.util.spec_from_file_location("mailserver_program", ROOT / "__main__.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


program = _load_program()


def stack_config(overrides: dict[str, Any] | None = None, passwords: dict[str, str] | None = None) -> dict[str, str]:
    """Pulumi config (namespaced keys, string values) for the dev stack plus test passwords."""
    from mailserver import settings

    raw: dict[str, Any] = settings.read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["mailboxPasswords"] = [f"{m}:{p}" for m, p in (passwords or PASSWORDS).items()]
    raw.update(overrides or {})
    config = {}
    for key, value in raw.items():
        if value is None:  # an override that removes a key (e.g. aws:region)
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = json.dumps(value)
        else:
            text = str(value)
        # Provider keys (aws:region) keep their namespace; the program's own get "mailserver:".
        config[key if ":" in key else f"mailserver:{key}"] = text
    return config


def build(overrides: dict[str, Any] | None = None, passwords: dict[str, str] | None = None) -> Graph:
    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="mailserver", stack="test", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(stack_config(overrides, passwords), secret_keys=["mailserver:mailboxPasswords"])
    exports: dict[str, Export] = {}

    async def resolve(values: dict[str, Any]) -> None:
        for key, value in values.items():
            out = pulumi.Output.from_input(value)
            exports[key] = Export(await out.future(), await out.is_secret())

    @pulumi.runtime.test
    def run() -> Any:
        return resolve(program.main())

    run()
    return Graph(monitor.records, exports, mocks)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build()


# --- firewall ---------------------------------------------------------------------------


def _ingress(g: Graph) -> set[tuple[int, str]]:
    rules = set()
    for r in g.of(INGRESS):
        i = r.inputs
        assert i["ipProtocol"] == "tcp" and i["fromPort"] == i["toPort"]
        assert ("cidrIpv4" in i) != ("cidrIpv6" in i), "one CIDR per rule"
        rules.add((int(i["fromPort"]), i.get("cidrIpv4") or i["cidrIpv6"]))
    return rules


def test_ingress_is_exactly_the_enabled_ports_plus_admin_ssh(graph: Graph) -> None:
    from mailserver import catalog

    public = {s.port for s in catalog.SERVICES if not s.admin_only}
    want = {(p, c) for p in public for c in ("0.0.0.0/0", "::/0")} | {(22, "198.51.100.7/32")}
    assert _ingress(graph) == want
    assert len(graph.of(INGRESS)) == len(want)


def test_submission_false_closes_587() -> None:
    ports = {p for p, _ in _ingress(build({"submission": False}))}
    assert 587 not in ports
    assert {25, 465, 110, 143, 993, 995} <= ports


def test_ssh_only_from_admin_cidrs() -> None:
    g = build({"adminCidrs": ["203.0.113.0/29", "2001:db8::/48"]})
    assert {c for p, c in _ingress(g) if p == 22} == {"203.0.113.0/29", "2001:db8::/48"}


def test_egress_rules_exist_and_group_has_no_inline_rules(graph: Graph) -> None:
    egress = {(r.inputs["ipProtocol"], int(r.inputs["fromPort"])) for r in graph.of(EGRESS)}
    assert {("tcp", 25), ("udp", 53), ("tcp", 443)} <= egress
    sg = graph.one(SG)
    assert "ingress" not in sg.inputs and "egress" not in sg.inputs
    for rule in graph.of(INGRESS) + graph.of(EGRESS):
        assert sg.urn in rule.dependencies


# --- DNS --------------------------------------------------------------------------------


def test_a_record_points_hostname_at_the_eip(graph: Graph) -> None:
    a = [r for r in graph.of(DNS) if r.inputs["type"] == "A"]
    assert len(a) == 1
    assert a[0].inputs["name"] == "mail.example.com"
    assert a[0].inputs["content"] == EIP
    assert a[0].inputs["zoneId"] == "023e105f4ecef8ad9ca31a8372d0c353"


def test_one_mx_per_domain_in_its_own_zone(graph: Graph) -> None:
    mx = {r.inputs["name"]: r.inputs for r in graph.of(DNS) if r.inputs["type"] == "MX"}
    # (bounce.<domain> is SES's MAIL FROM subdomain, see test_ses.py)
    mx = {name: rec for name, rec in mx.items() if not name.startswith("bounce.")}
    assert set(mx) == {"example.com", "example.net"}
    assert mx["example.com"]["zoneId"] == "023e105f4ecef8ad9ca31a8372d0c353"
    assert mx["example.net"]["zoneId"] == "5b7d3f0c1e2a4b6c8d9e0f1a2b3c4d5e"
    for rec in mx.values():
        assert rec["content"] == "mail.example.com"
        assert rec["priority"] == 10


def test_records_are_dns_only_and_fully_qualified(graph: Graph) -> None:
    assert graph.of(DNS)
    for r in graph.of(DNS):
        assert r.inputs["proxied"] is False
        assert r.inputs["name"] != "@" and "." in r.inputs["name"]
        assert r.inputs["ttl"] > 0


def test_dns_records_export(graph: Graph) -> None:
    exported = {(r["name"], r["type"]) for r in graph.exports["dnsRecords"].value}
    contents = {(r["name"], r["type"]): r["content"] for r in graph.exports["dnsRecords"].value}
    assert contents[("mail.example.com", "A")] == EIP
    assert contents[("example.com", "MX")] == contents[("example.net", "MX")] == "mail.example.com"
    # Every record the program creates is listed (deliverability and client records too).
    assert exported == {(plain(r.inputs)["name"], plain(r.inputs)["type"]) for r in graph.of(DNS)
                        if not r.name.startswith("mail-ses")}


# --- secrets ----------------------------------------------------------------------------


def test_no_secret_in_user_data_or_any_visible_input(graph: Graph) -> None:
    user_data = graph.one(INSTANCE).inputs["userData"]
    assert user_data.startswith("#cloud-config")
    for secret in (*PASSWORDS.values(), CF_TOKEN, PRIVATE_KEY.splitlines()[1]):
        assert secret not in user_data
        for r in graph.resources:
            for text in visible_strings(r.inputs):
                assert secret not in text, f"{secret!r} visible in {r.typ} {r.name}"


def test_config_bundle_holds_no_password(graph: Graph) -> None:
    stdin = graph.one(COMMAND, "-config").inputs["stdin"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(stdin)))) as tar:
        names = tar.getnames()
        texts = [tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()]  # type: ignore[union-attr]
    assert "scripts/apply.sh" in names
    for secret in (*PASSWORDS.values(), CF_TOKEN):
        assert not any(secret in t for t in texts)


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
    from mailserver import plan

    e = {k: v.value for k, v in graph.exports.items()}
    assert set(e) == {"publicIp", "hostname", "domains", "dnsRecords", "clientSettings", "sshCommand",
                      "sshPrivateKey", "port25Warning", "acmeServer", "sesRelay", "webHostnames",
                      "dataVolumeId", "restoreInstructions"}
    assert e["hostname"] == "mail.example.com" and e["domains"] == ["example.com", "example.net"]
    assert e["acmeServer"] == "letsencrypt_test" and e["port25Warning"] == plan.PORT25_SES_NOTE
    assert e["clientSettings"]["imaps"]["port"] == 993
    assert not any(v.secret for k, v in graph.exports.items() if k != "sshPrivateKey")


def test_own_public_key_generates_nothing_and_exports_no_private_key() -> None:
    g = build({"sshPublicKey": BYO_KEY})
    # Only DKIM keys (RSA) are generated; no SSH key.
    assert all(plain(k.inputs)["algorithm"] == "RSA" for k in g.of("tls:index/privateKey:PrivateKey"))
    assert g.one("aws:ec2/keyPair:KeyPair").inputs["publicKey"] == BYO_KEY
    assert "sshPrivateKey" not in g.exports
    connection = plain(g.one(COMMAND, "-wait").inputs["connection"])
    assert "privateKey" not in connection


def test_acme_token_is_scoped_to_the_host_zone(graph: Graph) -> None:
    token = graph.one(TOKEN)
    (policy,) = token.inputs["policies"]
    assert policy["effect"] == "allow"
    assert json.loads(policy["resources"]) == {"com.cloudflare.api.account.zone.023e105f4ecef8ad9ca31a8372d0c353": "*"}
    assert {g["id"] for g in policy["permissionGroups"]} == {
        "4755a26eedb94da69e1066d98aa820be", "c8fed203ed3043cba015a93ad1616f1f"}
    assert "test" in token.inputs["name"]  # one token per stack


# --- remote commands --------------------------------------------------------------------


def test_every_command_depends_on_wait(graph: Graph) -> None:
    commands = {r.name.rsplit("-", 1)[1]: r for r in graph.of(COMMAND)}
    assert set(commands) == {"wait", "volume", "config", "passwords", "acme", "credentials", "dkim"}
    wait = commands.pop("wait")
    for cmd in commands.values():
        assert wait.urn in cmd.dependencies, f"{cmd.name} does not wait for cloud-init"
    assert commands["config"].urn in commands["passwords"].dependencies
    assert commands["config"].urn in commands["acme"].dependencies
    assert commands["config"].urn in commands["dkim"].dependencies  # keys after opendkim's tables
    assert commands["config"].urn in commands["credentials"].dependencies  # relay login after main.cf
    assert wait.inputs["create"] == "sudo cloud-init status --wait >/dev/null || [ $? -eq 2 ]"


def test_commands_connect_to_the_eip_as_the_ssh_user(graph: Graph) -> None:
    for cmd in graph.of(COMMAND):
        conn = plain(cmd.inputs["connection"])
        assert conn["host"] == EIP and conn["user"] == "ec2-user"
        assert conn["privateKey"] == PRIVATE_KEY
        assert conn["dialErrorLimit"] == 60 and conn["perDialTimeout"] == 30
        # a rebuilt instance behind the same EIP must be provisioned again
        assert cmd.inputs["triggers"][0] == instance_id("mail-host-instance", graph.one(INSTANCE).inputs)


def test_script_commands_name_the_script_hash(graph: Graph) -> None:
    import hashlib

    from mailserver import render, settings

    s, _ = settings.parse({**settings.read_stack_file(ROOT / "Pulumi.dev.yaml"),
                           "mailboxPasswords": [f"{m}:{p}" for m, p in PASSWORDS.items()]})
    bundle = render.render(s)
    for suffix, script in (("-passwords", "set-passwords.sh"), ("-acme", "acme.sh")):
        create = graph.one(COMMAND, suffix).inputs["create"]
        assert create.startswith(f"sudo bash /var/lib/mailserver/scripts/{script} # ")
        assert create.endswith(hashlib.sha256(bundle.scripts[script].encode()).hexdigest())
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


# --- instance ---------------------------------------------------------------------------


def test_instance_hardening(graph: Graph) -> None:
    inst = graph.one(INSTANCE)
    assert inst.inputs["metadataOptions"]["httpTokens"] == "required"
    assert inst.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
    root = inst.inputs["rootBlockDevice"]
    assert root["encrypted"] is True and root["volumeType"] == "gp3" and root["volumeSize"] == 20
    assert {"ami", "userData"} <= set(inst.ignore_changes)
    assert inst.inputs["vpcSecurityGroupIds"] == [graph.one(SG).name + "-id"]
    # cloud-init installs packages at first boot: egress must be in place before the VM starts
    assert {r.urn for r in graph.of(EGRESS)} <= set(inst.dependencies)


def test_eip_is_protected_and_associated(graph: Graph) -> None:
    eip = graph.one("aws:ec2/eip:Eip")
    assert eip.protect and eip.inputs["domain"] == "vpc"
    assoc = graph.one("aws:ec2/eipAssociation:EipAssociation")
    assert assoc.inputs["allocationId"] == "eipalloc-0123456789"
    inst = graph.one(INSTANCE)
    assert assoc.inputs["instanceId"] == instance_id(inst.name, inst.inputs)


@pytest.mark.parametrize(("instance_type", "arch"), [("t4g.small", "arm64"), ("t3.small", "x86_64")])
def test_ami_architecture_follows_instance_type(instance_type: str, arch: str) -> None:
    g = build({"instanceType": instance_type})
    (call,) = g.ami_calls()
    filters = {f["name"]: f["values"] for f in call.args["filters"]}
    assert filters == {"name": [f"CentOS Stream 9 {arch}*"], "architecture": [arch]}
    assert call.args["owners"] == ["125523088429"] and call.args["mostRecent"] is True
    assert g.one(INSTANCE).inputs["ami"] == f"ami-{arch}"


def test_pinned_ami_skips_the_lookup() -> None:
    g = build({"amiId": "ami-0123456789abcdef0"})
    assert not g.ami_calls()
    assert g.one(INSTANCE).inputs["ami"] == "ami-0123456789abcdef0"


# --- structure --------------------------------------------------------------------------


def test_components_are_mailserver_types(graph: Graph) -> None:
    components = {r.typ for r in graph.resources if not r.custom}
    assert components == {f"mailserver:index:{n}" for n in ("MailServer", "MailHost", "MailDns", "MailProvision",
                                                                   "SesRelay", "DkimKeys", "MailWeb", "MailStorage")}
    top = graph.one("mailserver:index:MailServer")
    by_urn = {r.urn: r for r in graph.resources}
    for r in graph.resources:
        if r is top:
            continue
        assert by_urn[r.parent].typ.startswith("mailserver:index:"), f"{r.name} is not inside a component"
        assert r.name.startswith(by_urn[r.parent].name + "-")


def build_refused(overrides: dict[str, Any]) -> tuple[Any, Mocks, RecordingMonitor]:
    """Run the program with settings it must refuse; returns the SettingsError it raised and
    the mocks, which must have seen no resource and no invoke."""
    from mailserver.settings import SettingsError

    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="mailserver", stack="test", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(stack_config(overrides))
    raised: list[SettingsError] = []

    @pulumi.runtime.test
    def run() -> None:
        with pytest.raises(SettingsError) as err:
            program.main()
        raised.append(err.value)

    run()
    assert raised
    return raised[0], mocks, monitor


def test_invalid_settings_fail_before_any_resource() -> None:
    error, mocks, monitor = build_refused({"hostname": "mail.example.org"})
    assert "hostname" in error.keys
    assert mocks.new_resource_calls == 0 and not monitor.records and not mocks.calls