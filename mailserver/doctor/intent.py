"""What the stack intends, as the doctor compares it: the records the program plans (each
names the check that covers it), the DKIM names, the fail2ban jails the bundle enables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mailserver.core import catalog, records, relay
from mailserver.core.settings import Settings


def expected_records(s: Settings, ip: str, dkim: Mapping[str, str | None],
                     ses_dkim: Sequence[tuple[str, str]] = (),
                     secondary_ip: str | None = None) -> list[tuple[records.Record, str | None]]:
    """(record, content) pairs the stack intends; content None means "present and well-formed"
    (DKIM keys the doctor does not know: pass an outputs file to compare them; the secondary
    MX's address, unless the outputs or --secondary-ip give it)."""
    out: list[tuple[records.Record, str | None]] = [
        (r, None if r.name == "a-secondary" and not secondary_ip else r.content)
        for r in records.planned_records(s, ip, secondary_ip or "")]
    for name, content in sorted(dkim.items()):
        selector, domain = name.split("._domainkey.", 1)
        out.append((records.dkim_txt_record(s, domain, selector, content or ""), content))
    if s.relay == "ses":
        # The Easy DKIM tokens exist only once SES made them: compared when the outputs name them.
        for rec in relay.ses_records(s):
            if rec.type != "CNAME":
                out.append((rec, rec.content))
        for name, target in ses_dkim:
            out.append((records.Record(f"ses-dkim-{name}", "", name, "CNAME", target, check="dns-ses"), target))
    return out


def dkim_names(s: Settings) -> list[str]:
    return [records.dkim_name(sel, d) for sel in (s.dkim_selector, *s.dkim_retired_selectors) for d in s.domains]


def expected_jails(s: Settings) -> list[str]:
    """The jails the VM's rendered jail.local enables: the bundle is the one source."""
    from mailserver.core import render  # the renderer pulls in Jinja2 and the templates; only inside checks need it

    jail = next(f for f in render.render(s).files if f.path == catalog.VM_LAYOUT.fail2ban_jail)
    return render.enabled_jails(jail.content)
