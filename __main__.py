"""Pulumi entry point: read the stack settings, render the bundle, build the mail server."""

from __future__ import annotations

from typing import Any

import pulumi

from components import config
from components import preflight as aws_lookup
from components.mailserver import MailServer, MailServerArgs
from mailserver.core import outputs, preflight, relay, render
from mailserver.core.settings import SettingsError, as_role


def main() -> dict[str, Any]:
    """Build the stack and return its exports (tests read them; Pulumi gets them via export)."""
    # Every problem with the settings, and with what the account offers for them, is found
    # before any resource exists, and shown as a Pulumi error: the list, without a traceback.
    try:
        settings, secrets = config.from_pulumi_config()
        placement = preflight.resolve(settings, aws_lookup.look_up(settings))
        bundle = render.render(settings)
        secondary_bundle = render.render(settings, role="secondary") if settings.secondary_mx else None
    except (SettingsError, render.UnsafeValue) as e:
        raise pulumi.RunError(str(e)) from None
    server = MailServer("mail", MailServerArgs(settings=settings, secrets=secrets, bundle=bundle,
                                               placement=placement, secondary_bundle=secondary_bundle))

    exports: dict[str, Any] = {
        "publicIp": server.public_ip,
        "hostname": settings.hostname,
        "domains": list(settings.domains),
        "dnsRecords": server.dns_records,
        "clientSettings": outputs.client_settings(settings),
        "sshCommand": server.public_ip.apply(lambda ip: outputs.ssh_command(settings, ip)),
        # The host key every pulumi-command connection insists on, as a known_hosts line.
        "sshKnownHosts": pulumi.Output.all(server.public_ip, server.host.host_key).apply(
            lambda v: outputs.known_hosts(settings, v[0], v[1])),
        "port25Warning": outputs.port25_warning(settings),
        "acmeServer": settings.acme_server,
        # Cloudflare creates these names' DNS records and certificates for the Worker that serves
        # the MTA-STS policy and the autoconfig document.
        "webHostnames": server.web.hostnames,
        # The mail volume (it outlives instances) and how to bring mail back from a snapshot.
        "dataVolumeId": server.storage.volume_id,
        "restoreInstructions": server.storage.restore_instructions,
    }
    if server.secondary is not None:
        # The backup MX: where it is, and how to reach it (its own key pair and host key).
        exports["secondaryMx"] = {
            "hostname": settings.secondary_hostname,
            "publicIp": server.secondary.public_ip,
            "availabilityZone": placement.secondary_zone,
            "primaryAvailabilityZone": placement.availability_zone,
            "sshKnownHosts": pulumi.Output.all(server.secondary.public_ip, server.secondary.host_key).apply(
                lambda v: outputs.known_hosts(as_role(settings, "secondary"), v[0], v[1])),
        }
        if server.secondary.private_key is not None:
            exports["secondarySshPrivateKey"] = pulumi.Output.secret(server.secondary.private_key)
    if server.ses is not None:
        exports["sesRelay"] = {
            "endpoint": relay.ses_relayhost(settings),
            "region": settings.ses_region,
            "identities": list(settings.domains),
            "mailFromDomains": [relay.ses_mail_from_domain(d) for d in settings.domains],
            "dnsRecords": server.ses.records,
            "sandbox": relay.ses_sandbox_note(settings),
        }
    if server.private_key is not None:
        exports["sshPrivateKey"] = pulumi.Output.secret(server.private_key)
    for key, value in exports.items():
        pulumi.export(key, value)
    return exports


# Pulumi runs this file with runpy as __main__; tests import it under another name and call main().
if __name__ == "__main__":
    main()
