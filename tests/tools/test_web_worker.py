"""The Worker that serves the MTA-STS policy and the autoconfig document, run under Node (its
standard Request/Response are the same Fetch API the Workers runtime provides), and what it
serves validated: RFC 8461 policy syntax, well-formed XML naming the right host and ports."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from mailserver.core import catalog, records, web
from mailserver.core.settings import Settings
from tests.support import dev_settings

RUNNER = """
const worker = (await import(process.argv[1])).default;
const out = [];
for (const [method, url] of JSON.parse(process.argv[2])) {
  const response = await worker.fetch(new Request(url, { method }));
  out.push({ status: response.status, type: response.headers.get("content-type"), body: await response.text() });
}
console.log(JSON.stringify(out));
"""


def serve(settings: Settings, tmp_path: Path, requests: list[tuple[str, str]]) -> list[dict[str, Any]]:
    script = tmp_path / web.WORKER_MODULE.replace(".js", ".mjs")
    script.write_text(web.worker_script(settings))
    proc = subprocess.run(["node", "--input-type=module", "-e", RUNNER, str(script), json.dumps(requests)],
                          capture_output=True, text=True, check=True, timeout=60)
    return list(json.loads(proc.stdout))


def parse_policy(text: str) -> dict[str, list[str]]:
    """RFC 8461 section 3.2: key: value lines, CRLF (LF tolerated), mx may repeat."""
    fields: dict[str, list[str]] = {}
    for line in text.split("\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(": ")
        assert sep and key and value == value.strip(), f"bad policy line {line!r}"
        fields.setdefault(key, []).append(value)
    return fields


@pytest.mark.parametrize("mode", ["testing", "enforce"])
def test_policy_is_served_for_every_domain_and_matches_the_mx(tmp_path: Path, mode: str) -> None:
    settings, _ = dev_settings(mtaStsMode=mode)
    urls = [("GET", f"https://mta-sts.{d}/.well-known/mta-sts.txt") for d in settings.domains]
    for reply in serve(settings, tmp_path, urls):
        assert reply["status"] == 200 and reply["type"].startswith("text/plain")
        policy = parse_policy(reply["body"])
        assert policy["version"] == ["STSv1"]
        assert policy["mode"] == [mode]
        assert 86400 <= int(policy["max_age"][0]) <= 31557600
        # The policy's MX list covers exactly the MX records we publish.
        mx = {r.content for r in records.dns_records(settings, "198.51.100.7") if r.type == "MX"}
        assert set(policy["mx"]) == mx


def test_autoconfig_lists_every_client_port(tmp_path: Path) -> None:
    settings, _ = dev_settings()
    [reply] = serve(settings, tmp_path, [("GET", "https://autoconfig.example.net/mail/config-v1.1.xml")])
    assert reply["status"] == 200 and "xml" in reply["type"]
    root = ET.fromstring(reply["body"])
    provider = root.find("emailProvider")
    assert provider is not None
    assert {d.text for d in provider.findall("domain")} == set(settings.domains)
    servers = {(e.get("type"), int(e.findtext("port", "0")), e.findtext("socketType"), e.findtext("hostname"))
               for e in [*provider.findall("incomingServer"), *provider.findall("outgoingServer")]}
    # Every port users log in on but ManageSieve's, which the format has no element for.
    want = {(svc.protocol, svc.port, "SSL" if svc.tls == "implicit" else "STARTTLS", settings.hostname)
            for svc in catalog.SERVICES if svc.auth and not svc.admin_only and svc.protocol != "sieve"}
    assert servers == want


def test_worker_answers_nothing_else(tmp_path: Path) -> None:
    settings, _ = dev_settings()
    replies = serve(settings, tmp_path, [
        ("GET", "https://mta-sts.other.example/.well-known/mta-sts.txt"),
        ("GET", "https://mta-sts.example.com/"),
        ("POST", "https://mta-sts.example.com/.well-known/mta-sts.txt"),
    ])
    assert [r["status"] for r in replies] == [404, 404, 405]
