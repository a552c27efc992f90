"""The SSH host key's plan and the first-boot fetch's pure parts, run as user-data ships them:
the script is taken out of the rendered user-data and executed by python3 in a subprocess.

Its SigV4 signer is checked against AWS's published examples: the Signature Version 4 test
suite of the AWS General Reference ("Signature Version 4 test suite", aws-sig-v4-test-suite:
get-vanilla, post-vanilla, post-x-www-form-urlencoded, post-sts-token/post-sts-header-before;
all with the suite's credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
us-east-1, service "service", 20150830T123600Z) and the IAM ListUsers request of its signing
walkthrough ("Examples of the complete Signature Version 4 signing process", GET
https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08). The fetch against loopback
stand-ins of IMDS and SSM: tests/tools/test_host_key_fetch.py.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailserver.core import hostkey, render
from tests.support import dev_settings, host_key_fetch_script

SUITE = {"key_id": "AKIDEXAMPLE", "secret": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "region": "us-east-1",
         "amz_date": "20150830T123600Z"}
SUITE_HEADERS = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
# The suite's example session token (post-sts-token/readme.txt).
SUITE_TOKEN = ("AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIe"
               "oIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5V"
               "SXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9"
               "Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==")
# (name, request, service, signed headers, signature), each as the suite publishes it.
VECTORS: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("get-vanilla", {"method": "GET", "headers": SUITE_HEADERS}, "service", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("post-vanilla", {"method": "POST", "headers": SUITE_HEADERS}, "service", "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    # A body: its SHA-256 ends the canonical request (the suite's .authz; its .creq file is
    # known to disagree with its own .sts and .authz).
    ("post-x-www-form-urlencoded", {"method": "POST", "body": "Param1=value1", "headers": {
        **SUITE_HEADERS, "Content-Type": "application/x-www-form-urlencoded"}}, "service",
     "content-type;host;x-amz-date", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    # A session token signed as a header, as the fetch sends the role's.
    ("post-sts-header-before", {"method": "POST", "headers": {**SUITE_HEADERS, "X-Amz-Security-Token": SUITE_TOKEN}},
     "service", "host;x-amz-date;x-amz-security-token",
     "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"),
    ("iam-list-users", {"method": "GET", "query": "Action=ListUsers&Version=2010-05-08", "headers": {
        "Host": "iam.amazonaws.com", "X-Amz-Date": "20150830T123600Z",
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}}, "iam",
     "content-type;host;x-amz-date", "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"),
]

# Loads the script as a module (not __main__: main() does not run) and calls one function
# with the JSON arguments on stdin; prints its JSON result, or the exception's type.
DRIVER = """
import json, sys
ns = {"__name__": "fetch_host_key"}
exec(compile(open(sys.argv[1]).read(), "fetch-host-key", "exec"), ns)
call = json.load(sys.stdin)
args = call["args"]
if call["function"] == "authorization":
    args["body"] = args["body"].encode()
try:
    print(json.dumps(ns[call["function"]](**args)))
except ValueError as e:
    print(json.dumps({"ValueError": str(e)}))
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fetch") / "fetch-host-key.py"
    path.write_text(host_key_fetch_script(render.render(dev_settings()[0]).user_data))
    return path


def call(script: Path, function: str, **args: Any) -> Any:
    # /usr/bin/python3, the interpreter a host has, not this virtual environment's.
    proc = subprocess.run(["/usr/bin/python3", "-c", DRIVER, str(script)], input=json.dumps(
        {"function": function, "args": args}), capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize(("name", "request_", "service", "signed", "signature"), VECTORS, ids=[v[0] for v in VECTORS])
def test_sigv4_reproduces_awss_published_signatures(script: Path, name: str, request_: dict[str, Any], service: str,
                                                    signed: str, signature: str) -> None:
    args = {"method": request_["method"], "path": "/", "query": request_.get("query", ""),
            "headers": request_["headers"], "body": request_.get("body", ""), "key_id": SUITE["key_id"],
            "secret": SUITE["secret"], "region": SUITE["region"], "service": service, "amz_date": SUITE["amz_date"]}
    assert call(script, "authorization", **args) == (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/{service}/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}")


def test_the_public_key_is_read_from_the_private_key(script: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert call(script, "public_key", private=private) == public.decode()
    # Only an unencrypted ED25519 key is installed as ssh_host_ed25519_key.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    assert call(script, "public_key", private=other) == {"ValueError": "not an unencrypted ED25519 key"}
    assert call(script, "public_key", private="-----BEGIN X-----\nbm90IGEga2V5\n-----END X-----\n") == \
        {"ValueError": "not an OpenSSH private key"}


def test_the_script_is_what_the_template_says_and_runs_on_el9s_python(script: Path) -> None:
    text = script.read_text()
    # CentOS Stream 9's python3 is 3.9: nothing newer in the grammar.
    ast.parse(text, feature_version=(3, 9))
    assert 'PARAMETER = "/mailserver/mail.example.com/ssh-host-ed25519-key"' in text
    assert 'DIR = os.environ.get("HOST_KEY_DIR", "/etc/ssh")' in text and 'NAME = "ssh_host_ed25519_key"' in text
    assert "\n#" not in text and "\n\n" not in text  # compacted for the 16 KB of user-data
    assert sys.version_info >= (3, 9)


def test_the_role_policy_reads_one_parameter() -> None:
    arn = "arn:aws:ssm:eu-central-1:123456789012:parameter/mailserver/mail.example.com/ssh-host-ed25519-key"
    assert hostkey.read_policy(arn) == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": arn}]}
    (trust,) = hostkey.EC2_ASSUME_ROLE_POLICY["Statement"]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert hostkey.parameter_name(dev_settings(hostname="mx.example.com")[0]) == \
        "/mailserver/mx.example.com/ssh-host-ed25519-key"


def test_only_user_data_with_the_fetch_pins_the_host_key() -> None:
    new = render.render(dev_settings()[0]).user_data
    assert hostkey.fetches_host_key(new)
    assert not hostkey.fetches_host_key(new.split("ssh_deletekeys:")[0])  # user-data from before
    assert not hostkey.fetches_host_key(None) and not hostkey.fetches_host_key("")
    # pulumi-aws 6 kept a hash of user-data in its state: no marker, so not pinned either.
    assert not hostkey.fetches_host_key("8a5c3e1f0b2d4c6e8a5c3e1f0b2d4c6e8a5c3e1f")
