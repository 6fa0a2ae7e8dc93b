"""The sympy derivations run and every closed form they check holds exactly."""

import subprocess
import sys

from lozo_core.provenance import REPO_ROOT


def test_estimator_moments_script_passes():
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "theory" / "estimator_moments.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 failed" in out.stdout
    general = [line for line in out.stdout.splitlines() if "LGE general rank" in line]
    assert general and general[0].startswith("[ok]")
    assert general[0].endswith("(m*n*r + 2*m + 2*n + 2*r + 2)/r")
    for check in (
        "LGE entry-wise second moment m=2 n=3 r=2",
        "lazy split and refresh, n=3 r=2",
        "bias of LGE r=2 on a cubic in 2x2",
    ):
        assert f"[ok] {check}" in out.stdout, check
