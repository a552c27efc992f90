"""The optional Amazon SES relay (setting relay: ses): endpoint, DNS records, IAM policy and the
SMTP password. Pure: components/ses.py turns these into resources."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from mailserver.core import catalog
from mailserver.core.records import Record
from mailserver.core.settings import Settings


def ses_endpoint(s: Settings) -> str:
    return catalog.SES_SMTP_HOST.format(region=s.ses_region)


def ses_relayhost(s: Settings) -> str:
    """postfix's relayhost for SES. The brackets skip the MX lookup (the endpoint is a host,
    not a mail domain), and the credentials file must use this exact string as its key."""
    return f"[{ses_endpoint(s)}]:{catalog.SES_SMTP_PORT}"


def ses_mail_from_domain(domain: str) -> str:
    return f"{catalog.SES_MAIL_FROM_LABEL}.{domain}"


def dkim_token_placeholder(domain: str, index: int) -> str:
    """Stands for an Easy DKIM token until SES has generated it (see components/ses.py)."""
    return f"{{dkim-token-{index}:{domain}}}"


def ses_records(s: Settings, tokens: dict[str, list[str]] | None = None) -> tuple[Record, ...]:
    """Per mail domain: the three Easy DKIM CNAMEs SES signs with (d=<domain>, so DKIM aligns
    with the From domain), and the MX + SPF of the custom MAIL FROM subdomain (SES's bounce
    address, so SPF passes for a name that aligns with the From domain). `tokens` are the
    tokens SES generated per domain; without them, placeholders stand in."""
    out: list[Record] = []
    for d in s.domains:
        zone = s.zone_id(d)
        found = (tokens or {}).get(d) or [dkim_token_placeholder(d, i) for i in range(catalog.SES_DKIM_TOKENS)]
        for i, token in enumerate(found):
            out.append(Record(f"ses-dkim-{d}-{i}", zone, f"{token}._domainkey.{d}", "CNAME",
                              catalog.SES_DKIM_TARGET.format(token=token), check="dns-ses"))
        mail_from = ses_mail_from_domain(d)
        out.append(Record(f"ses-mail-from-mx-{d}", zone, mail_from, "MX",
                          catalog.SES_FEEDBACK_MX.format(region=s.ses_region), priority=10, check="dns-ses"))
        # Quoted: Cloudflare's API stores TXT as RFC 1035 strings and warns about bare ones.
        out.append(Record(f"ses-mail-from-spf-{d}", zone, mail_from, "TXT", f'"{catalog.SES_MAIL_FROM_SPF}"',
                          check="dns-ses"))
    return tuple(out)


def ses_send_policy(identity_arns: list[str]) -> str:
    """The IAM policy of the SMTP user: sending as the mail domains' identities, nothing else.
    A leaked SMTP password then cannot send as any other identity of the account, nor call
    any other AWS API."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SendAsTheMailDomainsOnly",
            "Effect": "Allow",
            "Action": "ses:SendRawEmail",
            "Resource": sorted(identity_arns),
        }],
    }, indent=2)


def ses_smtp_password(secret_access_key: str, region: str) -> str:
    """The SES SMTP password of an IAM secret access key (AWS's documented SigV4 conversion,
    "Obtaining Amazon SES SMTP credentials"). It depends on the region, and the provider's
    `ses_smtp_password_v4` is computed for the provider's region, so sesRegion could not
    use it; deriving it here serves any region."""
    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signature = sign(f"AWS4{secret_access_key}".encode(), "11111111")
    for part in (region, "ses", "aws4_request", "SendRawEmail"):
        signature = sign(signature, part)
    return base64.b64encode(bytes([0x04]) + signature).decode()


def ses_sandbox_note(s: Settings) -> str:
    return (
        f"Amazon SES ({s.ses_region}) starts every account in the sandbox: it delivers only to "
        "verified addresses, at most 200 messages a day, and refuses other recipients, so the "
        "sender gets a bounce. Leave it with a production access request: SES console, Account "
        "dashboard, Request production access (or aws sesv2 put-account-details "
        "--production-access-enabled), answered by AWS within a day or so. SES also refuses mail From "
        "a domain until its DKIM records are verified (usually minutes after pulumi up, at "
        "most 72 hours)."
    )
