"""Where a number came from: machine, software, run size, and the run's own settings.

Notebooks print :func:`banner` before each result; recorded runs store :func:`machine` in
their JSON. ``LOZO_SMOKE=1`` in the environment selects the smoke size used by the tests.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

SMOKE_ENV = "LOZO_SMOKE"
REPO_ROOT = Path(__file__).resolve().parent.parent
CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def is_smoke() -> bool:
    """True when ``LOZO_SMOKE`` is set to a non-empty value other than ``0``."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")


def pick(full, smoke):
    """``smoke`` under ``LOZO_SMOKE=1``, else ``full``: the one switch between run sizes."""
    return smoke if is_smoke() else full


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model_and_flags() -> tuple[str | None, dict[str, bool] | None]:
    """The CPU's model name and which of ``CPU_FLAGS`` it has (from ``/proc/cpuinfo``).

    ``(None, None)`` where ``/proc/cpuinfo`` does not exist. bf16 matrix products are fast only
    with ``amx_bf16`` or ``avx512_bf16``; on AVX2-only CPUs they are emulated and slower than fp32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, None
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in text.splitlines())
        if key.strip() in ("model name", "flags")
    )
    flags = set(fields.get("flags", "").split())
    return fields.get("model name"), {flag: flag in flags for flag in CPU_FLAGS}


def machine() -> dict:
    """A plain description of this machine and software stack."""
    cpu_model, cpu_flags = cpu_model_and_flags()
    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model,
        "cpu_flags": cpu_flags,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return info


def banner(**fields) -> None:
    """Print one provenance line: the given fields, then size, machine and software."""
    m = machine()
    where = m["gpu"] or f"{m['processor']} x{m['cpu_count']} ({m['torch_threads']} threads)"
    parts = [f"{k}={v}" for k, v in fields.items()]
    parts += [
        f"size={'smoke' if is_smoke() else 'full'}",
        f"machine={where}",
        f"torch={m['torch']}",
        f"commit={m['git_commit']}",
    ]
    print("[provenance] " + " | ".join(parts))
