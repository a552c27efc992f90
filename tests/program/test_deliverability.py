"""Deliverability in the resource graph (mocks): every planned record becomes a Cloudflare
record as planned, DKIM keys are generated per domain and only their public halves are
visible, and the PTR is set only after the A record exists."""

from __future__ import annotations

from mailserver.core import records
from tests.program.harness import (
    COMMAND,
    DKIM_PRIVATE_PEM,
    DKIM_PUBLIC_PEM,
    DNS,
    EIP,
    PTR,
    TLS_KEY,
    WORKER_DOMAIN,
    Graph,
    build,
    plain,
    visible_strings,
)
from tests.support import dev_settings


def by_name(g: Graph) -> dict[tuple[str, str], list[dict[str, object]]]:
    out: dict[tuple[str, str], list[dict[str, object]]] = {}
    for r in g.of(DNS):
        i = plain(r.inputs)
        out.setdefault((i["name"], i["type"]), []).append(i)
    return out


def test_every_planned_record_is_created_as_planned(graph: Graph) -> None:
    settings, _ = dev_settings()
    created = by_name(graph)
    planned = [*records.dns_records(settings, EIP), *records.deliverability_records(settings),
               *records.srv_records(settings)]
    for rec in planned:
        matches = created[(rec.fqdn, rec.type)]
        if rec.data:
            assert {k: v for k, v in dict(rec.data).items()} in [
                {k: (int(v) if isinstance(v, float) else v) for k, v in m["data"].items()} for m in matches  # type: ignore[attr-defined]
            ]
        else:
            assert rec.content in [m["content"] for m in matches]
        for m in matches:
            assert m["zoneId"] == rec.zone_id
            assert m["ttl"] == records.DNS_TTL
            assert m["proxied"] is False
    assert not any(name == "@" or name.endswith(".") for name, _ in created)


def test_mx_and_srv_priorities(graph: Graph) -> None:
    created = by_name(graph)
    for d in ("example.com", "example.net"):
        [mx] = created[(d, "MX")]
        assert mx["priority"] == 10 and mx["content"] == "mail.example.com"
        [imaps] = created[(f"_imaps._tcp.{d}", "SRV")]
        assert imaps["data"] == {"priority": 0, "weight": 1, "port": 993, "target": "mail.example.com"}


def test_dkim_record_per_domain_publishes_the_generated_public_key(graph: Graph) -> None:
    created = by_name(graph)
    want = records.txt(records.dkim(DKIM_PUBLIC_PEM))
    for d in ("example.com", "example.net"):
        [rec] = created[(f"mail._domainkey.{d}", "TXT")]
        assert rec["content"] == want
    keys = [r for r in graph.of(TLS_KEY) if plain(r.inputs).get("algorithm") == "RSA"]
    assert len(keys) == 2 and all(plain(k.inputs)["rsaBits"] == 2048 for k in keys)


def test_retired_selector_stays_published_but_does_not_sign() -> None:
    g = build({"dkimSelector": "mail2027", "dkimRetiredSelectors": ["mail"]})
    created = by_name(g)
    for d in ("example.com", "example.net"):
        assert (f"mail2027._domainkey.{d}", "TXT") in created
        assert (f"mail._domainkey.{d}", "TXT") in created
    [dkim_cmd] = [c for c in g.of(COMMAND) if c.name.endswith("-dkim")]
    stdin = plain(dkim_cmd.inputs["stdin"])
    assert stdin.count("-----BEGIN") == 2 and " mail2027\n" in stdin and " mail\n" not in stdin


def test_private_keys_travel_only_as_secrets(graph: Graph) -> None:
    body = DKIM_PRIVATE_PEM.splitlines()[1]
    for r in graph.resources:
        assert not any(body in s for s in visible_strings(r.inputs)), r.name
    [dkim_cmd] = [c for c in graph.of(COMMAND) if c.name.endswith("-dkim")]
    assert body in plain(dkim_cmd.inputs["stdin"])
    assert {"stdout", "stderr"} <= set(dkim_cmd.additional_secret_outputs)
    [wait] = [c for c in graph.of(COMMAND) if c.name.endswith("-wait")]
    assert wait.urn in dkim_cmd.dependencies


def test_ptr_names_the_host_and_waits_for_the_a_record(graph: Graph) -> None:
    [ptr] = graph.of(PTR)
    assert plain(ptr.inputs)["domainName"] == "mail.example.com"
    assert plain(ptr.inputs)["allocationId"] == "eipalloc-0123456789"
    [a] = [r for r in graph.of(DNS) if plain(r.inputs)["type"] == "A"]
    assert a.urn in ptr.dependencies


def test_worker_hostnames_are_exported_and_attached(graph: Graph) -> None:
    names = {f"{label}.{d}" for d in ("example.com", "example.net") for label in ("mta-sts", "autoconfig")}
    assert set(graph.exports["webHostnames"].value) == names
    attached = {plain(r.inputs)["hostname"] for r in graph.of(WORKER_DOMAIN)}
    assert attached == names
