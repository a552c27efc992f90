"""The first-boot fetch of the SSH host key, run as cloud-init runs it (its bootcmd step, the
heredoc, by /bin/sh and the system's python3) against loopback stand-ins for what only EC2 has:
- IMDSv2: PUT /latest/api/token, then GETs that must carry the token; the role's name under
  meta-data/iam/security-credentials/, its credentials (AccessKeyId, SecretAccessKey, Token) as
  JSON under that name, the region under meta-data/placement/region (EC2 User Guide, "Use
  IMDSv2" and "Retrieve security credentials from instance metadata");
- SSM: the JSON protocol of GetParameter, POST / with X-Amz-Target AmazonSSM.GetParameter and
  Content-Type application/x-amz-json-1.1, answering {"Parameter": {..., "Value": ...}} or an
  error such as {"__type": "AccessDeniedException", "message": ...} with status 400 (AWS
  Systems Manager API Reference, GetParameter and Common Errors). It checks the SigV4
  signature over what it received, with its own reading of the signing steps: the script
  signs what it sends, token included (its signer alone is checked against AWS's examples in
  tests/unit/test_host_key.py);
- `restorecon`, which records what it is asked to relabel.
The key files land in a temporary directory (HOST_KEY_DIR) instead of /etc/ssh; ssh-keygen
reads the installed key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.server
import json
import os
import re
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailserver.core import hostkey, render
from tests.support import dev_settings

SETTINGS = dev_settings()[0]
PARAMETER = hostkey.parameter_name(SETTINGS)
REGION = "eu-central-1"
ROLE = "mail-host-role-1a2b3c"
IMDS_TOKEN = "AQAEAImdsV2-token-stand-in=="
CREDENTIALS = {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAEXAMPLEHOSTKEY01",
               "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY-HOST-KEY-ROLE", "Token": "IQoJb3JpZ2luX2VjEXAMPLE/+=",
               "Expiration": "2026-12-02T18:00:00Z", "LastUpdated": "2026-12-02T12:00:00Z"}


def openssh_private(key: Any) -> str:
    return str(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption()).decode())


@dataclasses.dataclass
class Ssm:
    """What the SSM stand-in answers, and what it saw."""

    value: str = ""
    failures: int = 0  # answer AccessDenied to this many requests first (IAM not propagated yet)
    requests: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def expected_signature(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """(signature sent, signature computed) for a received request, by the SigV4 steps: canonical
    request over the headers SignedHeaders names, string to sign over the credential scope,
    signing key derived from the secret, date, region and service."""
    auth = headers["authorization"]
    found = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", auth)
    assert found, auth
    key_id, date, region, service, signed, signature = found.groups()
    assert (key_id, region, service) == (CREDENTIALS["AccessKeyId"], REGION, "ssm")
    names = signed.split(";")
    canonical = "\n".join([method, path, "", "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names), signed,
                           hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{headers['x-amz-date']}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{CREDENTIALS['SecretAccessKey']}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return signature, hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, code: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Imds(_Handler):
    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self.reply(200, IMDS_TOKEN)
        else:
            self.reply(400, "")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
            self.reply(401, "")  # IMDSv2 required: no token, no answer
            return
        answers = {
            "/latest/meta-data/iam/security-credentials/": ROLE,
            f"/latest/meta-data/iam/security-credentials/{ROLE}": json.dumps(CREDENTIALS),
            "/latest/meta-data/placement/region": REGION,
        }
        self.reply(200, answers[self.path]) if self.path in answers else self.reply(404, "")


class _Ssm(_Handler):
    def do_POST(self) -> None:
        ssm: Ssm = self.server.ssm
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        sent, computed = expected_signature("POST", self.path, headers, body)
        ssm.requests.append({"headers": headers, "body": json.loads(body), "signature_ok": sent == computed})
        if headers.get("x-amz-target") != "AmazonSSM.GetParameter" or sent != computed:
            self.reply(400, json.dumps({"__type": "InvalidSignatureException"}), "application/x-amz-json-1.1")
        elif len(ssm.requests) <= ssm.failures:
            self.reply(400, json.dumps({"__type": "AccessDeniedException", "message": f"not authorized to perform: "
                                        f"ssm:GetParameter on resource: {PARAMETER}"}), "application/x-amz-json-1.1")
        else:
            self.reply(200, json.dumps({"Parameter": {"Name": PARAMETER, "Type": "SecureString", "Value": ssm.value,
                                                      "Version": 1, "DataType": "text"}}), "application/x-amz-json-1.1")


@dataclasses.dataclass
class Boot:
    """A host at first boot: the stand-ins' addresses, /etc/ssh, and PATH with restorecon."""

    root: Path
    imds: str
    ssm_url: str
    ssm: Ssm

    @property
    def etc_ssh(self) -> Path:
        return self.root / "etc-ssh"

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        """The bootcmd step, as cloud-init runs it: written into a shell script, run by /bin/sh."""
        (step,) = [c for c in yaml.safe_load(render.render(SETTINGS).user_data)["bootcmd"] if isinstance(c, str)]
        environ = {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "HOST_KEY_IMDS": self.imds,
                   "HOST_KEY_SSM": self.ssm_url, "HOST_KEY_DIR": str(self.etc_ssh), "HOST_KEY_PAUSE": "0.05", **env}
        return subprocess.run(["/bin/sh", "-c", step], env=environ, capture_output=True, text=True, timeout=60,
                              check=False)

    def relabelled(self) -> list[str]:
        log = self.root / "restorecon.log"
        return log.read_text().split() if log.exists() else []


def _serve(handler: type[_Handler], **attrs: Any) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for k, v in attrs.items():
        setattr(server, k, v)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def boot(tmp_path: Path) -> Iterator[Boot]:
    (tmp_path / "bin").mkdir()
    (tmp_path / "etc-ssh").mkdir()
    restorecon = tmp_path / "bin" / "restorecon"
    restorecon.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/restorecon.log\n')
    restorecon.chmod(0o755)
    ssm = Ssm()
    imds_server, ssm_server = _serve(_Imds), _serve(_Ssm, ssm=ssm)
    try:
        yield Boot(tmp_path, f"http://127.0.0.1:{imds_server.server_port}",
                   f"http://127.0.0.1:{ssm_server.server_port}/", ssm)
    finally:
        for s in (imds_server, ssm_server):
            s.shutdown()
            s.server_close()


def sshds_own_keys(etc_ssh: Path) -> dict[str, bytes]:
    """Keys sshd-keygen or cloud-init's ssh module would have made (a fetch that fails leaves them)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = etc_ssh / "ssh_host_ed25519_key"
    private.write_text(openssh_private(key))
    private.chmod(0o640)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (etc_ssh / "ssh_host_ed25519_key.pub").write_bytes(pub + b"\n")
    return {p.name: p.read_bytes() for p in etc_ssh.iterdir()}


def test_the_pinned_key_is_installed_before_sshd(boot: Boot) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    boot.ssm.value = openssh_private(key)
    sshds_own_keys(boot.etc_ssh)  # an image's or an earlier boot's: replaced
    proc = boot.run()
    assert proc.returncode == 0, proc.stderr
    assert f"ssh host key: installed from SSM parameter {PARAMETER}" in proc.stderr
    private, public = boot.etc_ssh / "ssh_host_ed25519_key", boot.etc_ssh / "ssh_host_ed25519_key.pub"
    assert private.read_text() == boot.ssm.value
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644
    expected = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert public.read_bytes() == expected + b"\n"
    # OpenSSH reads the installed key, and its public half is the .pub written next to it.
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(private)], capture_output=True, text=True, check=False)
    assert derived.returncode == 0 and derived.stdout.split()[:2] == public.read_text().split()[:2], derived.stderr
    assert sorted(p.name for p in boot.etc_ssh.iterdir()) == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    assert boot.relabelled() == [str(private), str(public)]
    # One signed GetParameter, with decryption, by the role's temporary credentials.
    (request,) = boot.ssm.requests
    assert request["signature_ok"] and request["body"] == {"Name": PARAMETER, "WithDecryption": True}
    assert request["headers"]["x-amz-security-token"] == CREDENTIALS["Token"]
    assert request["headers"]["content-type"] == "application/x-amz-json-1.1"
    assert "x-amz-security-token" in request["headers"]["authorization"]  # the token is signed too
    assert boot.ssm.value not in proc.stderr + proc.stdout


def test_a_role_not_yet_usable_is_waited_for(boot: Boot) -> None:
    # IAM is eventually consistent: right after the role's policy is written, GetParameter may
    # be refused for a few seconds.
    boot.ssm.value = openssh_private(ed25519.Ed25519PrivateKey.generate())
    boot.ssm.failures = 2
    proc = boot.run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("failed: HTTPError: HTTP Error 400") == 2 and "AccessDeniedException" in proc.stderr
    assert (boot.etc_ssh / "ssh_host_ed25519_key").read_text() == boot.ssm.value
    assert len(boot.ssm.requests) == 3


def test_a_failing_ssm_leaves_sshds_own_keys_and_never_fails_the_boot(boot: Boot) -> None:
    before = sshds_own_keys(boot.etc_ssh)
    boot.ssm.failures = 100
    started = time.monotonic()
    proc = boot.run()
    assert proc.returncode == 0, proc.stderr  # bootcmd's last command: the boot goes on
    assert f"try {hostkey.FETCH_TRIES}/{hostkey.FETCH_TRIES} failed" in proc.stderr
    assert "ssh host key: NOT installed" in proc.stderr and "host key mismatch" in proc.stderr
    assert len(boot.ssm.requests) == hostkey.FETCH_TRIES
    assert {p.name: p.read_bytes() for p in boot.etc_ssh.iterdir()} == before  # untouched, no .new left
    assert boot.relabelled() == []
    assert time.monotonic() - started < 10


def test_no_metadata_service_is_a_quick_failure(boot: Boot) -> None:
    before = sshds_own_keys(boot.etc_ssh)
    proc = boot.run(HOST_KEY_IMDS="http://127.0.0.1:9")  # the discard port: nothing listens
    assert proc.returncode == 0, proc.stderr
    assert "Connection refused" in proc.stderr and "NOT installed" in proc.stderr
    assert {p.name: p.read_bytes() for p in boot.etc_ssh.iterdir()} == before and not boot.ssm.requests


def test_a_parameter_that_is_not_an_ed25519_key_is_not_installed(boot: Boot) -> None:
    before = sshds_own_keys(boot.etc_ssh)
    boot.ssm.value = openssh_private(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    proc = boot.run()
    assert proc.returncode == 0 and "not an unencrypted ED25519 key" in proc.stderr, proc.stderr
    assert {p.name: p.read_bytes() for p in boot.etc_ssh.iterdir()} == before


def test_the_stand_in_refuses_a_wrong_signature() -> None:
    # The SSM stand-in's check is a real one: a signature over other headers does not pass.
    headers = {"host": "127.0.0.1:1", "x-amz-date": "20261202T120000Z", "x-amz-target": "AmazonSSM.GetParameter",
               "authorization": "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEHOSTKEY01/20261202/eu-central-1/ssm/"
                                "aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64}
    sent, computed = expected_signature("POST", "/", headers, b"{}")
    assert sent != computed and re.fullmatch("[0-9a-f]{64}", computed)
    assert os.path.exists("/usr/bin/python3")  # the interpreter the bootcmd step finds on PATH
