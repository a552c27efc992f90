"""The Cloudflare Worker that serves MTA-STS policies and autoconfig documents."""

from __future__ import annotations

import dataclasses

import pulumi
import pulumi_cloudflare as cloudflare

from mailserver.core import web
from mailserver.core.settings import Settings


@dataclasses.dataclass(frozen=True)
class MailWebArgs:
    settings: Settings


class MailWeb(pulumi.ComponentResource):
    """One Worker, attached as a custom domain to mta-sts.<domain> and autoconfig.<domain>
    of every mail domain; Cloudflare creates their DNS records and certificates."""

    hostnames: list[str]

    def __init__(self, name: str, args: MailWebArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:MailWeb", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        script_name = f"{pulumi.get_project()}-{pulumi.get_stack()}-mail-web"
        script = cloudflare.WorkersScript(
            f"{name}-worker",
            account_id=s.cloudflare_account_id,
            script_name=script_name,
            content=web.worker_script(s),
            main_module=web.WORKER_MODULE,
            compatibility_date=web.WORKER_COMPATIBILITY_DATE,
            opts=child,
        )
        self.hostnames = []
        for domain, hostname in web.web_hostnames(s):
            cloudflare.WorkersCustomDomain(
                f"{name}-{hostname}",
                account_id=s.cloudflare_account_id,
                zone_id=s.zone_id(domain),
                hostname=hostname,
                service=script_name,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[script]),
            )
            self.hostnames.append(hostname)
        self.register_outputs({"hostnames": self.hostnames})
