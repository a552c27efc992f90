"""DKIM keys: one RSA key per mail domain and selector, generated and kept by Pulumi."""

from __future__ import annotations

import dataclasses

import pulumi
import pulumi_tls as tls

from mailserver.core import catalog
from mailserver.core.settings import Settings


@dataclasses.dataclass(frozen=True)
class DkimKeysArgs:
    settings: Settings


class DkimKeys(pulumi.ComponentResource):
    """Keys of the current selector sign; keys of retired selectors only stay published, so
    mail signed before a rotation still verifies while it is in flight."""

    private_keys: dict[str, pulumi.Output[str]]  # domain -> PEM, current selector, secret
    public_keys: dict[tuple[str, str], pulumi.Output[str]]  # (domain, selector) -> PEM

    def __init__(self, name: str, args: DkimKeysArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:DkimKeys", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        self.private_keys = {}
        self.public_keys = {}
        for selector in (s.dkim_selector, *s.dkim_retired_selectors):
            for domain in s.domains:
                key = tls.PrivateKey(f"{name}-{selector}-{domain}", algorithm="RSA",
                                     rsa_bits=catalog.DKIM_KEY_BITS, opts=child)
                self.public_keys[(domain, selector)] = key.public_key_pem
                if selector == s.dkim_selector:
                    self.private_keys[domain] = pulumi.Output.secret(key.private_key_pem)
        self.register_outputs({"selectors": [s.dkim_selector, *s.dkim_retired_selectors]})
