"""What the stack tells its operator: client settings, the SSH command and the host's known_hosts
line, the port-25 note."""

from __future__ import annotations

from mailserver.core.settings import Settings


def client_settings(s: Settings) -> dict[str, dict[str, object]]:
    """What a mail client needs, per protocol, from the port table."""
    out: dict[str, dict[str, object]] = {}
    for svc in s.services:
        if svc.admin_only or not svc.auth:
            continue
        security = "SSL/TLS" if svc.tls == "implicit" else "STARTTLS"
        out[svc.name] = {"host": s.hostname, "port": svc.port, "security": security,
                         "username": "your full e-mail address", "auth": "normal password"}
    return out


def ssh_command(s: Settings, ip: str) -> str:
    return f"ssh {s.ssh_user}@{ip}"


def known_hosts(s: Settings, ip: str, host_key: str | None) -> str | None:
    """The ~/.ssh/known_hosts line of the host (its address and name), for the operator's own ssh
    and the doctor's --ssh: the key pulumi-command pins. None while the instance predates
    pinning (its key was never known in advance)."""
    return f"{ip},{s.hostname} {host_key}" if host_key else None


PORT25_WARNING = (
    "AWS blocks outbound port 25 on new accounts: this server receives mail but cannot deliver "
    "to other servers until AWS approves the 'Request to remove email sending limitations' form "
    "(it also sets the reverse DNS). Until then outgoing mail waits in the queue."
)
PORT25_SES_NOTE = (
    "AWS blocks outbound port 25 on new accounts; with relay ses that does not stop sending: "
    "outgoing mail leaves through Amazon SES on port 587. Port 25 serves incoming mail only."
)


PORT25_SECONDARY_NOTE = (
    " The secondary MX hands its queue to the primary on port 25, whatever the relay: until AWS lifts "
    "the limit for the account, mail it accepts while the primary is down waits there (8 days at most)."
)


def port25_warning(s: Settings) -> str:
    note = PORT25_SES_NOTE if s.relay == "ses" else PORT25_WARNING
    return note + (PORT25_SECONDARY_NOTE if s.secondary_mx else "")
