"""The stack's settings as the Pulumi SDK sees them (under `pulumi up`, or under mocks).

Pulumi wiring only: the raw values go to mailserver/core/settings.py, which validates them and
knows nothing of Pulumi.

Every value is read as the raw text Pulumi holds (arrays as JSON text), never through the
typed getters (get_object, get_int...): those raise Pulumi's own ConfigTypeError, whose message
prints the value, secret or not, and stops at the first problem. settings checks each value's
shape and type, lists every problem, and never shows a secret.
"""

from __future__ import annotations

from typing import Any

from pulumi.runtime import config as runtime_config

from mailserver.core import settings


def raw_config() -> dict[str, Any]:
    """Every config key of the stack: the `mailserver:*` ones by their key alone, with their
    raw value (secrets decrypted, not yet checked); aws:region with its value; every other key
    under its full name with no value, so that settings can name a key nobody reads
    (mailsrever:domains, aws:regoin) without ever holding a provider's credential."""
    present = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    raw: dict[str, Any] = {}
    for full in sorted(present):
        ns, sep, name = full.partition(":")
        if ns == settings.PROJECT and sep:
            raw[name] = runtime_config.get_config(full)
        elif full == settings.AWS_REGION_KEY:
            raw[full] = runtime_config.get_config(full)  # sesRegion's default
        else:
            raw[full if sep else f":{full}"] = None
    return raw


def from_pulumi_config() -> tuple[settings.Settings, settings.Secrets]:
    """The stack's settings and secrets; SettingsError lists every problem with them."""
    return settings.parse(raw_config())
