"""The Pulumi program under mocks, for the program tests (tests/program) and the benchmark
(bench/program.py): __main__.main() run against mocks that answer every lookup from
tests/cloud_facts.py and a monitor that records every registration: type, name,
inputs (secrets still marked), and the options the engine would see (dependencies,
ignoreChanges, protect, additionalSecretOutputs).

Not a test module, and it does not import pytest: the benchmark imports it.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import importlib.util
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _sync_await

from mailserver.core.settings import ROOT
from mailserver.lab.server import generate_rsa_key, public_key_pem
from tests import cloud_facts
from tests.cloud_facts import World, easy_dkim_tokens

EIP = "198.51.100.77"
SECONDARY_EIP = "198.51.100.78"  # the backup MX's (secondaryMx)
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
# The generated SSH host key (pulumi-tls, ED25519), told apart from the login key above.
HOST_PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nMOCK-HOST-KEY-PRIVATE-2c9e41\n"
                    "-----END OPENSSH PRIVATE KEY-----\n")
HOST_PUBLIC_KEY = "ssh-ed25519 AAAAmockHostKey2c9e41"

# Resource and invoke types, as the engine names them.
INSTANCE = "aws:ec2/instance:Instance"
EIP_TYPE = "aws:ec2/eip:Eip"
ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
PTR = "aws:ec2/eipDomainName:EipDomainName"
KEY_PAIR = "aws:ec2/keyPair:KeyPair"
TLS_KEY = "tls:index/privateKey:PrivateKey"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
DNS = "cloudflare:index/dnsRecord:DnsRecord"
COMMAND = "command:remote:Command"
TOKEN = "cloudflare:index/apiToken:ApiToken"
WORKER_DOMAIN = "cloudflare:index/workersCustomDomain:WorkersCustomDomain"
GET_AMI_IDS = "aws:ec2/getAmiIds:getAmiIds"
GET_AMI = "aws:ec2/getAmi:getAmi"
VOLUME = "aws:ebs/volume:Volume"
ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"
DLM = "aws:dlm/lifecyclePolicy:LifecyclePolicy"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
INLINE_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
INSTANCE_PROFILE = "aws:iam/instanceProfile:InstanceProfile"
SSM_PARAMETER = "aws:ssm/parameter:Parameter"
VOLUME_ID = "vol-0123456789abcdef0"
GET_OFFERINGS = "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"
OFFERED_ZONES = list(cloud_facts.STANDARD_ZONES)
# relay: ses (tests/program/test_ses.py)
SES_IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"
SES_MAIL_FROM = "aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes"
IAM_USER = "aws:iam/user:User"
IAM_USER_POLICY = "aws:iam/userPolicy:UserPolicy"
ACCESS_KEY = "aws:iam/accessKey:AccessKey"
ACCOUNT = cloud_facts.ACCOUNT
SES_ACCESS_KEY_ID = "AKIAMOCKSMTPUSER0001"
SES_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY-SES-SECRET-5d1e"
SES_PROVIDER_PASSWORD = "BProviderRegionSmtpPassword-NOT-USED-7c2a"


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
        out = {**args.inputs, **self._computed(args)}
        if args.typ == VOLUME:
            return VOLUME_ID, out
        if args.typ == ACCESS_KEY:
            return SES_ACCESS_KEY_ID, out
        if args.typ == INSTANCE:
            # EC2 gives a replaced instance a new id: derive it from the image (the input that
            # replaces it), so whatever follows the instance id shows up as changed.
            return instance_id(args.name, args.inputs), out
        return f"{args.name}-id", out

    def _computed(self, args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """The outputs the provider computes for a new resource of this type (beyond its inputs)."""
        name, inputs = args.name, args.inputs
        computed: dict[str, Callable[[], dict[str, Any]]] = {
            EIP_TYPE: lambda: ({"publicIp": SECONDARY_EIP, "allocationId": "eipalloc-0secondary0"}
                               if "secondary" in name else {"publicIp": EIP, "allocationId": "eipalloc-0123456789"}),
            TLS_KEY: lambda: _tls_key(name, inputs),
            SSM_PARAMETER: lambda: {"arn": cloud_facts.ssm_parameter_arn(self.world.region, ACCOUNT, inputs["name"])},
            INSTANCE_PROFILE: lambda: {"name": f"{name}-4d5e6f",
                                       "arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{name}-4d5e6f"},
            KEY_PAIR: lambda: {"keyName": f"{name}-kp"},
            TOKEN: lambda: {"value": CF_TOKEN},
            SES_IDENTITY: lambda: _ses_identity(inputs),
            IAM_USER: lambda: {"name": f"{name}-7f3e2a1", "arn": f"arn:aws:iam::{ACCOUNT}:user/mailserver/{name}"},
            ROLE: lambda: {"name": f"{name}-1a2b3c", "arn": f"arn:aws:iam::{ACCOUNT}:role/{name}-1a2b3c"},
            ACCESS_KEY: lambda: {"secret": SES_SECRET_KEY, "sesSmtpPasswordV4": SES_PROVIDER_PASSWORD},
            # An instance that already runs reports the user-data it booted with (World).
            INSTANCE: lambda: ({} if self.world.instance_user_data is None
                               else {"userData": self.world.instance_user_data}),
        }
        return computed.get(args.typ, dict)()

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls.append(args)
        # A provider error (get_ami finding nothing) is raised, as the engine raises it.
        return self.world.answer(args.token, args.args), []


def _tls_key(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    if inputs.get("algorithm") == "RSA":
        return {"publicKeyPem": DKIM_PUBLIC_PEM, "privateKeyPem": DKIM_PRIVATE_PEM}
    if name.endswith("-ssh-host-key"):
        # The provider ends public_key_openssh with a newline.
        return {"publicKeyOpenssh": HOST_PUBLIC_KEY + "\n", "privateKeyOpenssh": HOST_PRIVATE_KEY}
    return {"publicKeyOpenssh": "ssh-ed25519 AAAAmock generated", "privateKeyOpenssh": PRIVATE_KEY}


def _ses_identity(inputs: dict[str, Any]) -> dict[str, Any]:
    domain = inputs["emailIdentity"]
    region = inputs.get("region", "eu-central-1")
    return {"arn": f"arn:aws:ses:{region}:{ACCOUNT}:identity/{domain}", "identityType": "DOMAIN",
            "dkimSigningAttributes": {**inputs.get("dkimSigningAttributes", {}), "tokens": easy_dkim_tokens(domain)}}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A mock monitor that keeps each registration request, and marks additionalSecretOutputs
    secret in the returned state as the real engine does (the mock monitor does not)."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.records: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
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

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> Any:
        return resolve(program.main())

    run()
    return Graph(monitor.records, exports, mocks)


def bundle_files(g: Graph) -> dict[str, str]:
    """The configuration bundle the config command sends to the host: path -> text."""
    stdin = g.one(COMMAND, "-config").inputs["stdin"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(stdin)))) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def graph_bundle() -> Any:
    """The bundle the default graph's settings render to."""
    from mailserver.core import render, settings

    s, _ = settings.parse({**settings.read_stack_file(ROOT / "Pulumi.dev.yaml"),
                           "mailboxPasswords": [f"{m}:{p}" for m, p in PASSWORDS.items()]})
    return render.render(s)


def run_refused(overrides: dict[str, Any],
                world: World | None = None) -> tuple[pulumi.RunError, Mocks, RecordingMonitor]:
    """Run the program on settings or an account it must refuse: the pulumi.RunError it
    raised (Pulumi prints that without a traceback), the mocks and the monitor. Fails when
    the program runs through."""
    mocks = Mocks(world)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="mailserver", stack="test", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(stack_config(overrides), secret_keys=["mailserver:mailboxPasswords"])
    raised: list[pulumi.RunError] = []

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> None:
        try:
            program.main()
        except pulumi.RunError as err:
            raised.append(err)
        else:
            raise AssertionError(f"the program accepted {overrides}; expected a pulumi.RunError")

    run()
    assert raised, "the program raised no pulumi.RunError"
    return raised[0], mocks, monitor


def refused_before_any_resource(overrides: dict[str, Any], world: World | None = None) -> str:
    """The message the program refuses settings or an account with. Nothing was created."""
    error, mocks, monitor = run_refused(overrides, world)
    assert mocks.new_resource_calls == 0 and not monitor.records
    return str(error)


def build_refused(overrides: dict[str, Any]) -> tuple[Any, Mocks, RecordingMonitor]:
    """Run the program with settings it must refuse; returns the SettingsError behind the
    pulumi.RunError it raised, and the mocks, which must have seen no resource and no invoke."""
    from mailserver.core.settings import SettingsError

    error, mocks, monitor = run_refused(overrides)
    # Pulumi prints a RunError's message alone: the list of problems, no traceback.
    cause = error.__context__
    assert isinstance(cause, SettingsError) and str(error) == str(cause)
    return cause, mocks, monitor
