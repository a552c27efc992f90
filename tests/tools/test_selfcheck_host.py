"""The self-check as the host gets it: systemd's own verifier on the timer and its service, and
the shipped code, unpacked alone, importing and starting with nothing of this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mailserver.core import catalog, render
from tests.support import dev_settings
from tests.tools.support import run


def test_systemd_accepts_the_timer_and_its_service(tmp_path: Path) -> None:
    bundle = render.render(dev_settings()[0])
    units = []
    for path in (catalog.SELFCHECK_TIMER, catalog.SELFCHECK_SERVICE):
        unit = tmp_path / Path(path).name
        unit.write_text(bundle.file(path).content)
        units.append(str(unit))
    # verify names unknown keys and missing executables on stderr, some of them with exit 0.
    proc = run(["systemd-analyze", "verify", *units])
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stderr
    when = run(["systemd-analyze", "calendar", f"*-*-* {catalog.SELFCHECK_TIME_UTC}:00 UTC"])
    assert when.returncode == 0 and "Next elapse" in when.stdout, when.stderr


def unpack(tmp_path: Path) -> catalog.Layout:
    """The lab bundle's self-check files (code and configuration) under tmp_path, as apply.sh lays them."""
    layout = catalog.lab_layout(tmp_path / "lab")
    for f in render.render(dev_settings()[0], layout).files:
        if f.path.startswith(layout.code_dir + "/") or f.path == layout.selfcheck_config:
            Path(f.path).parent.mkdir(parents=True, exist_ok=True)
            Path(f.path).write_text(f.content)
    return layout


def test_the_shipped_code_runs_alone(tmp_path: Path) -> None:
    """What apply.sh installs under code_dir is all the self-check imports: its command starts
    there with this checkout out of reach (only the libraries come from the environment)."""
    layout = unpack(tmp_path)
    code = Path(layout.code_dir)
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run([sys.executable, "-m", "mailserver", "selfcheck", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0 and "postmaster" in proc.stdout, proc.stderr
    where = subprocess.run([sys.executable, "-c", "import mailserver.doctor.selfcheck as m; print(m.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert where.stdout.strip().startswith(str(code)), where.stderr
    lab = subprocess.run([sys.executable, "-c", "import mailserver.lab"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=False, timeout=60)
    assert lab.returncode != 0  # not shipped: the import above did not reach this checkout


def test_a_run_stopped_by_a_missing_library_is_told_by_the_next(tmp_path: Path) -> None:
    """An OS upgrade that takes python3-dns away stops the self-check at its imports; the
    failure lands in its state, where the next run that starts finds it."""
    from mailserver.doctor import selfcheck

    layout = unpack(tmp_path)
    gone = tmp_path / "gone" / "dns"
    gone.mkdir(parents=True)
    (gone / "__init__.py").write_text("raise ImportError('No module named dns (removed by the test)')\n")
    env = {**os.environ, "PYTHONPATH": f"{gone.parent}:{layout.code_dir}"}
    proc = subprocess.run([sys.executable, "-m", "mailserver", "selfcheck", "--config", layout.selfcheck_config],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode != 0 and "ImportError" in proc.stderr
    state = selfcheck.load_state(Path(layout.selfcheck_state))
    assert selfcheck.previous_failure(state) == \
        "the self-check could not start: No module named dns (removed by the test)"
