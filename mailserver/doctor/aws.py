"""The snapshots check, through the AWS CLI on the machine the doctor runs on (not the host)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from typing import Any

from mailserver.core import catalog
from mailserver.doctor.checks import SNAPSHOT_WARNING_HOURS
from mailserver.doctor.target import Target
from mailserver.doctor.verdicts import Result, result, snapshot_status


def _aws_json(t: Target, aws: str, args: list[str]) -> tuple[Any, str]:
    """(parsed JSON output, error) of one AWS CLI call."""
    argv = [aws, *args, "--output", "json"] + (["--region", t.aws_region] if t.aws_region else [])
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except subprocess.TimeoutExpired:
        return None, "aws timed out"
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["aws failed"])[-1][:100]
    try:
        return json.loads(proc.stdout or "null"), ""
    except json.JSONDecodeError:
        return None, f"aws printed no JSON: {proc.stdout.strip()[:60]}"


def check_snapshots(t: Target) -> list[Result]:
    aws = shutil.which("aws")
    if aws is None:
        return [result("snapshots", "unknown", "data volume", "recent snapshot", "the AWS CLI is not installed")]
    if not t.volume_id:
        return [result("snapshots", "unknown", "data volume", "recent snapshot",
                       "no data volume id (the outputs name none; give --volume-id)")]
    expected = f"< {SNAPSHOT_WARNING_HOURS} h old"
    # Only completed snapshots: a pending one (started, still copying) restores nothing yet,
    # and a failed ("error") one never will.
    times, error = _aws_json(t, aws, ["ec2", "describe-snapshots", "--owner-ids", "self", "--filters",
                                      f"Name=volume-id,Values={t.volume_id}", "Name=status,Values=completed",
                                      "--query", "Snapshots[].StartTime"])
    if error:
        return [result("snapshots", "unknown", t.volume_id, expected, error)]
    try:
        newest = max((dt.datetime.fromisoformat(str(x)) for x in times or []), default=None)
    except ValueError as e:
        return [result("snapshots", "unknown", t.volume_id, expected, f"unreadable StartTime: {e}")]
    created = None
    if newest is None:
        found, error = _aws_json(t, aws, ["ec2", "describe-volumes", "--volume-ids", t.volume_id,
                                          "--query", "Volumes[0].CreateTime"])
        try:
            created = dt.datetime.fromisoformat(str(found)) if found and not error else None
        except ValueError:
            created = None
    status, text = snapshot_status(newest, t.now(), created)
    if newest is None and created is None and error:
        text += f" (volume age unknown: {error})"
    # Snapshots missing or old: the lifecycle policy is not doing its job (disabled, its role
    # gone, or the volume lost the tag the policy selects).
    fix = (f"check the Data Lifecycle Manager policy (aws dlm get-lifecycle-policies: ENABLED?) and that the "
           f"volume still carries the {catalog.SNAPSHOT_TAG_KEY} tag; pulumi up restores both")
    return [result("snapshots", status, t.volume_id, expected, text, fix)]
