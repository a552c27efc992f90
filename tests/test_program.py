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

from mailserver.lab.server import generate_rsa_key, public_key_pem
from tests import cloud_facts
from tests.cloud_facts import World

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
GET_AMI_IDS = "aws:ec2/getAmiIds:getAmiIds"
GET_AMI = "aws:ec2/getAmi:getAmi"
VOLUME = "aws:ebs/volume:Volume"
VOLUME_ID = "vol-0123456789abcdef0"
GET_OFFERINGS = "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"
OFFERED_ZONES = list(cloud_facts.STANDARD_ZONES)
# relay: ses (tests/test_ses.py)
SES_IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"
SES_MAIL_FROM = "aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes"
IAM_USER = "aws:iam/user:User"
IAM_USER_POLICY = "aws:iam/userPolicy:UserPolicy"
ACCESS_KEY = "aws:iam/accessKey:AccessKey"
ACCOUNT = cloud_facts.ACCOUNT
SES_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY-SES-SECRET-5d1e"
SES_PROVIDER_PASSWORD = "BProviderRegionSmtpPassword-NOT-USED-7c2a"


def dkim_tokens(domain: str) -> list[str]:
    """What SES would return as Easy DKIM tokens (32 lower-case letters and digits)."""
    return [f"{domain.replace('.', '')}{i}".ljust(32, "x") for i in range(cloud_facts.SES_EASY_DKIM_TOKENS)]


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
    """Resources get their inputs back plus what the provider computes; lookups are answered by
    tests/cloud_facts.py as AWS would answer them (nothing where AWS has nothing)."""

    def __init__(self, world: World | None = None) -> None:
        self.world = world or World()
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
        # A provider error (get_ami finding nothing) is raised, as the engine raises it.
        return self.world.answer(args.token, args.args), []


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
        return [c for c in self.mocks.calls if c.token in (GET_AMI_IDS, GET_AMI)]


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


def stack_config(overrides: dict[str, Any] | None = None, passwords: dict[str, str] | None = None,
                 stack: str = "dev") -> dict[str, str]:
    """Pulumi config (namespaced keys, string values) for a stack file plus test passwords."""
    from mailserver.core import settings

    raw: dict[str, Any] = settings.read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
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


def build(overrides: dict[str, Any] | None = None, passwords: dict[str, str] | None = None,
          world: World | None = None, stack: str = "dev") -> Graph:
    mocks = Mocks(world)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="mailserver", stack="test", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(stack_config(overrides, passwords, stack),
                                  secret_keys=["mailserver:mailboxPasswords"])
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
    from mailserver.core import catalog

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
    from mailserver.core import outputs

    e = {k: v.value for k, v in graph.exports.items()}
    assert set(e) == {"publicIp", "hostname", "domains", "dnsRecords", "clientSettings", "sshCommand",
                      "sshPrivateKey", "port25Warning", "acmeServer", "sesRelay", "webHostnames",
                      "dataVolumeId", "restoreInstructions"}
    assert e["hostname"] == "mail.example.com" and e["domains"] == ["example.com", "example.net"]
    assert e["acmeServer"] == "letsencrypt_test" and e["port25Warning"] == outputs.PORT25_SES_NOTE
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
    # acme.sh's dns_cf edits the _acme-challenge record and looks the zone up: the ids must be
    # Cloudflare's published ones for exactly those two groups (an unknown id is refused by
    # Cloudflare when the token is created).
    groups = [cloud_facts.CLOUDFLARE_PERMISSION_GROUPS.get(g["id"], g["id"]) for g in policy["permissionGroups"]]
    assert sorted(groups) == ["DNS Write", "Zone Read"]
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
    # The first command waits for cloud-init, then runs the bundle's packages.sh (repairing a
    # first boot that failed halfway); tests/test_first_boot.py runs it against stand-ins.
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


def graph_bundle() -> Any:
    """The bundle the default graph's settings render to."""
    from mailserver.core import render, settings

    s, _ = settings.parse({**settings.read_stack_file(ROOT / "Pulumi.dev.yaml"),
                           "mailboxPasswords": [f"{m}:{p}" for m, p in PASSWORDS.items()]})
    return render.render(s)


def test_script_commands_name_the_script_hash(graph: Graph) -> None:
    import hashlib

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


# The newest official image per release and instance family, read off tests/cloud_facts.py.
NEWEST_OFFICIAL = {
    ("centos-stream-9", "t4g.small"): "ami-0a9a1e5d2b3f40004",  # CentOS Stream 9 aarch64 20251124.0
    ("centos-stream-9", "t3.small"): "ami-0c9a1e5d2b3f40002",  # CentOS Stream 9 x86_64 20251124.0
    ("centos-stream-10", "t4g.small"): "ami-0a10e5d2b3f400006",  # CentOS Stream 10 aarch64 20251124.0
    ("centos-stream-10", "t3.small"): "ami-0c10e5d2b3f400005",  # CentOS Stream 10 x86_64 20251124.0
}


@pytest.mark.parametrize(("os_name", "instance_type"), list(NEWEST_OFFICIAL))
def test_image_is_the_newest_official_one_for_release_and_architecture(os_name: str, instance_type: str) -> None:
    # Graviton images are named aarch64 and have architecture arm64: a lookup that spelled
    # the name arm64 would find nothing on EC2, and nothing here.
    g = build({"os": os_name, "instanceType": instance_type})
    assert g.one(INSTANCE).inputs["ami"] == NEWEST_OFFICIAL[os_name, instance_type]
    (call,) = g.ami_calls()
    assert call.args["owners"] == [cloud_facts.CENTOS_OWNER]  # the look-alike from another owner is newer


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stacks_run_through(stack: str) -> None:
    from mailserver.core import settings

    mailboxes = settings.read_stack_file(ROOT / f"Pulumi.{stack}.yaml")["mailboxes"]
    g = build(passwords={m: f"a long password for {m}" for m in mailboxes}, stack=stack)
    assert g.one(INSTANCE).inputs["instanceType"] in ("t4g.micro", "t4g.small")
    assert g.one(INSTANCE).inputs["ami"] == NEWEST_OFFICIAL["centos-stream-9", "t4g.small"]


def test_pinned_ami_is_checked_not_searched() -> None:
    g = build({"amiId": "ami-0a9a1e5d2b3f40003"})  # an older official arm64 image, pinned
    assert [c.token for c in g.ami_calls()] == [GET_AMI]  # its own record only, no newest-image search
    assert g.one(INSTANCE).inputs["ami"] == "ami-0a9a1e5d2b3f40003"
    # The operator's own copy passes too: any owner, right architecture.
    assert build({"amiId": "ami-0be5d2b3f40000008"}).one(INSTANCE).inputs["ami"] == "ami-0be5d2b3f40000008"


def refused_before_any_resource(overrides: dict[str, Any], world: World | None = None) -> str:
    """Run the program on settings or an account it must refuse: the message of the
    pulumi.RunError it raised (Pulumi prints that without a traceback). Nothing was created."""
    mocks = Mocks(world)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="mailserver", stack="test", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(stack_config(overrides))
    raised: list[BaseException] = []

    @pulumi.runtime.test
    def run() -> None:
        with pytest.raises(pulumi.RunError) as err:
            program.main()
        raised.append(err.value)

    run()
    assert mocks.new_resource_calls == 0 and not monitor.records
    return str(raised[0])


def test_no_image_for_the_region_stops_with_a_clear_message() -> None:
    # A region where the CentOS project publishes no Stream 10 Graviton image.
    world = World(images=[i for i in cloud_facts.IMAGES if i["name"] != "CentOS Stream 10 aarch64 20251124.0"])
    message = refused_before_any_resource({"os": "centos-stream-10", "instanceType": "t4g.small"}, world)
    assert "mailserver:os: no centos-stream-10 image for arm64" in message
    assert "'CentOS Stream 10 aarch64 *'" in message and "eu-central-1" in message and "amiId" in message


@pytest.mark.parametrize(("ami", "instance_type", "os_name", "says"), [
    ("ami-0c9a1e5d2b3f40002", "t4g.small", "centos-stream-9", "is built for x86_64, but t4g.small runs arm64"),
    ("ami-0a9a1e5d2b3f40004", "t3.small", "centos-stream-9", "is built for arm64, but t3.small runs x86_64"),
    ("ami-0a9a1e5d2b3f40004", "t4g.small", "centos-stream-10", "is 'CentOS Stream 9 aarch64 20251124.0', not an image"),
    ("ami-0123456789abcdef0", "t4g.small", "centos-stream-9", "EC2 knows no image ami-0123456789abcdef0 in eu-central-1"),
])
def test_pinned_ami_that_cannot_boot_this_stack_is_a_settings_error(ami: str, instance_type: str, os_name: str,
                                                                    says: str) -> None:
    message = refused_before_any_resource({"amiId": ami, "instanceType": instance_type, "os": os_name})
    assert "mailserver:amiId: " in message and says in message


def test_instance_type_no_zone_offers_is_a_settings_error() -> None:
    message = refused_before_any_resource({"instanceType": "t4g.mega"})
    assert "mailserver:instanceType: t4g.mega is offered in no standard availability zone of eu-central-1" in message
    assert "describe-instance-type-offerings" in message


def test_account_without_default_vpc_is_refused_with_the_fix() -> None:
    message = refused_before_any_resource({}, World(default_vpc=None))
    assert "aws:region: the account has no default VPC in eu-central-1" in message
    assert "aws ec2 create-default-vpc --region eu-central-1" in message


def test_every_problem_is_listed_at_once() -> None:
    message = refused_before_any_resource({"instanceType": "t4g.mega", "amiId": "ami-0c9a1e5d2b3f40002"},
                                          World(default_vpc=None))
    assert "(3 problem(s))" in message


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
    """Run the program with settings it must refuse; returns the SettingsError behind the
    pulumi.RunError it raised, and the mocks, which must have seen no resource and no invoke."""
    from mailserver.core.settings import SettingsError

    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="mailserver", stack="test", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(stack_config(overrides))
    raised: list[BaseException] = []

    @pulumi.runtime.test
    def run() -> None:
        with pytest.raises(pulumi.RunError) as err:
            program.main()
        raised.append(err.value)

    run()
    assert raised
    # Pulumi prints a RunError's message alone: the list of problems, no traceback.
    cause = raised[0].__context__
    assert isinstance(cause, SettingsError) and str(raised[0]) == str(cause)
    return cause, mocks, monitor


def test_invalid_settings_fail_before_any_resource() -> None:
    error, mocks, monitor = build_refused({"hostname": "mail.example.org"})
    assert "hostname" in error.keys
    assert mocks.new_resource_calls == 0 and not monitor.records and not mocks.calls