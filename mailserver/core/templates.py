"""The Jinja2 environment every template is rendered with: StrictUndefined, so a name the
context lacks is an error, never an empty string in a config file."""

from __future__ import annotations

import jinja2

from mailserver.core.settings import ROOT

TEMPLATE_DIRS = (ROOT / "templates", ROOT / "cloud-init")


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in TEMPLATE_DIRS]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
