"""Amazon SES as the outbound relay (setting relay: ses): an identity per mail domain with
Easy DKIM and a custom MAIL FROM, their records in Cloudflare, and an IAM user that may only
send as those domains. Its SMTP login goes to the host over SSH (components/provision.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare

from mailserver.core import catalog, relay, render
from mailserver.core.settings import Settings


def _tokens(attributes: Any) -> list[str]:
    tokens = list(attributes.tokens or []) if attributes is not None else []
    if len(tokens) != catalog.SES_DKIM_TOKENS:
        raise ValueError(f"SES returned {len(tokens)} Easy DKIM tokens, expected {catalog.SES_DKIM_TOKENS}")
    return tokens


def _fill(text: str, tokens: dict[str, list[str]]) -> str:
    """Put SES's Easy DKIM tokens where the plan left placeholders."""
    for domain, found in tokens.items():
        for i, token in enumerate(found):
            text = text.replace(relay.dkim_token_placeholder(domain, i), token)
    return text


@dataclasses.dataclass(frozen=True)
class SesRelayArgs:
    settings: Settings


class SesRelay(pulumi.ComponentResource):
    identity_arns: pulumi.Output[list[str]]
    # The stdin of set-relay-credentials.sh ("username<TAB>password"), secret.
    credentials: pulumi.Output[str]
    records: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, args: SesRelayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:SesRelay", name, None, opts)
        s = args.settings
        identities = self._identities(name, s)
        created = self._dns_records(name, s, identities)
        self.identity_arns = pulumi.Output.all(*(ident.arn for ident in identities.values()))
        self.credentials = self._smtp_login(name, s)
        self.records = pulumi.Output.from_input(
            [{"name": r.name, "type": r.type, "content": r.content} for r in created])
        self.register_outputs({"identity_arns": self.identity_arns, "records": self.records})

    def _identities(self, name: str, s: Settings) -> dict[str, aws.sesv2.EmailIdentity]:
        """An identity per mail domain, with its custom MAIL FROM, in the SES region (sesRegion
        or the stack's aws:region, settings_checks.ses_region)."""
        child = pulumi.ResourceOptions(parent=self)
        identities: dict[str, aws.sesv2.EmailIdentity] = {}
        for d in s.domains:
            # Easy DKIM: SES keeps the key and signs with d=<domain>, aligned with the From domain.
            identities[d] = aws.sesv2.EmailIdentity(
                f"{name}-identity-{d}",
                email_identity=d,
                dkim_signing_attributes={"next_signing_key_length": "RSA_2048_BIT"},
                region=s.ses_region,
                opts=child,
            )
            # SES's bounce address under the domain: SPF then passes for a name that aligns
            # with the From domain. USE_DEFAULT_VALUE: while the MX is missing SES falls back
            # to amazonses.com instead of refusing to send.
            aws.sesv2.EmailIdentityMailFromAttributes(
                f"{name}-mail-from-{d}",
                email_identity=identities[d].email_identity,
                mail_from_domain=relay.ses_mail_from_domain(d),
                behavior_on_mx_failure="USE_DEFAULT_VALUE",
                region=s.ses_region,
                opts=child,
            )
        return identities

    def _dns_records(self, name: str, s: Settings,
                     identities: dict[str, aws.sesv2.EmailIdentity]) -> list[cloudflare.DnsRecord]:
        """The Easy DKIM CNAMEs and the MAIL FROM records, once SES has named the DKIM tokens."""
        tokens: pulumi.Output[dict[str, list[str]]] = pulumi.Output.all(
            **{d: ident.dkim_signing_attributes.apply(_tokens) for d, ident in identities.items()})
        return [cloudflare.DnsRecord(
            f"{name}-{rec.name}",
            zone_id=rec.zone_id,
            name=tokens.apply(functools.partial(_fill, rec.fqdn)),
            type=rec.type,
            content=tokens.apply(functools.partial(_fill, rec.content)),
            priority=rec.priority,
            ttl=rec.ttl,
            proxied=rec.proxied,
            opts=pulumi.ResourceOptions(parent=self),
        ) for rec in relay.ses_records(s)]

    def _smtp_login(self, name: str, s: Settings) -> pulumi.Output[str]:
        """An IAM user that may only send as the mail domains, and its SMTP login (the stdin of
        set-relay-credentials.sh), secret."""
        child = pulumi.ResourceOptions(parent=self)
        user = aws.iam.User(f"{name}-smtp-user", path="/mailserver/",
                            tags={"Purpose": f"SES SMTP relay of {s.hostname}"}, opts=child)
        policy = aws.iam.UserPolicy(f"{name}-send-only", user=user.name,
                                    policy=self.identity_arns.apply(relay.ses_send_policy), opts=child)
        key = aws.iam.AccessKey(
            f"{name}-smtp-key",
            user=user.name,
            # The provider marks them secret already; said again so it never depends on that.
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["secret", "ses_smtp_password_v4"]),
        )
        region = s.ses_region

        # SMTP username: the access key id. Password: derived from the secret key for the SES
        # region (the provider's ses_smtp_password_v4 is for the provider's region only).
        # The policy id rides along: the login reaches the host only once the key may send,
        # because SES refuses an unauthorised sender with a permanent 554 that bounces mail.
        def login(values: list[Any]) -> str:
            key_id, secret, _policy_id = values
            return render.relay_credentials_stdin(key_id, relay.ses_smtp_password(secret, region))

        return pulumi.Output.secret(pulumi.Output.all(key.id, key.secret, policy.id).apply(login))
