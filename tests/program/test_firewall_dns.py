"""The security group and the DNS records in the resource graph (mocks): exactly the
enabled ports, SSH only from the admin CIDRs, and the A and MX records as planned."""

from __future__ import annotations

from mailserver.core import catalog
from tests.program.harness import DNS, EGRESS, EIP, INGRESS, SG, Graph, build, plain

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


def test_the_self_check_may_reach_its_own_imap_pop3_and_sieve_ports_and_nothing_else(graph: Graph) -> None:
    """Its probes go out to the Elastic IP; the group's egress lets out only SMTP, DNS, HTTP(S)
    and NTP to the world, so the IMAP, POP3 and ManageSieve ports need a rule, to that address alone."""
    own = {(int(r.inputs["fromPort"]), r.inputs["cidrIpv4"]) for r in graph.of(EGRESS) if "out-self-" in r.name}
    assert own == {(p, f"{EIP}/32") for p in (110, 143, 993, 995, 4190)}
    off = build({"selfCheck": False})
    assert not [r for r in off.of(EGRESS) if "out-self-" in r.name]
    assert {r.urn for r in off.of(EGRESS)} < {r.urn for r in graph.of(EGRESS)}
