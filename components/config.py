"""The stack's settings as the Pulumi SDK sees them (under `pulumi up`, or under mocks).

Pulumi wiring only: the raw values go to mailserver/core/settings.py, which validates them and
knows nothing of Pulumi.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from mailserver.core import settings


def raw_config() -> dict[str, Any]:
    """The stack's `mailserver:*` values that are set (secrets decrypted), plus aws:region."""
    cfg = pulumi.Config(settings.PROJECT)
    keys = settings.schema()
    present = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    raw: dict[str, Any] = {}
    for full in present:
        ns, _, name = full.partition(":")
        if ns == settings.PROJECT:
            key = keys.get(name)
            raw[name] = cfg.get_object(name) if key is not None and key.type == "array" else cfg.get(name)
    # The provider's region, for sesRegion's default.
    raw[settings.AWS_REGION_KEY] = pulumi.Config("aws").get("region")
    return raw


def from_pulumi_config() -> tuple[settings.Settings, settings.Secrets]:
    """The stack's settings and secrets; SettingsError lists every problem with them."""
    return settings.parse(raw_config())
