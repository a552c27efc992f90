"""The resource graph's structure (mocks): every resource inside a component of ours, and
invalid settings stop the program before any resource or lookup."""

from __future__ import annotations

from tests.program.harness import Graph, build_refused


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


def test_invalid_settings_fail_before_any_resource() -> None:
    error, mocks, monitor = build_refused({"hostname": "mail.example.org"})
    assert "hostname" in error.keys
    assert mocks.new_resource_calls == 0 and not monitor.records and not mocks.calls
